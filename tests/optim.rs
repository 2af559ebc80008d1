//! Optimizer and schedule values checked against hand-computed updates.

use mtaffect::optim::{
    checked_grad_norm, clip_grad_norm, Adam, AdamConfig, LrMults, LrSchedule, Optimizer,
    ScheduleKind, Sgd, SgdConfig,
};
use mtaffect::{DType, Gradients, ParamId, Params, Rng, Tensor};

fn scalar_param(v: f64) -> (Params, ParamId) {
    let mut p = Params::new();
    let id = p
        .add("w", Tensor::from_f64s(&[v], [1], DType::F64).unwrap())
        .unwrap();
    (p, id)
}

fn grad(id: ParamId, g: f64) -> Gradients {
    let mut gr = Gradients::new();
    gr.accumulate(id, Tensor::from_f64s(&[g], [1], DType::F64).unwrap())
        .unwrap();
    gr
}

fn value(p: &Params, id: ParamId) -> f64 {
    p.get(id).item().unwrap()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
}

#[test]
fn sgd_momentum_nesterov_and_weight_decay() {
    // p=1, g=1 twice, lr=0.1, momentum 0.9: buf 1 -> 1.9; p 0.9 -> 0.71.
    let (mut p, id) = scalar_param(1.0);
    let mut o = Sgd::new(SgdConfig::default());
    o.step(&mut p, &grad(id, 1.0), 0.1).unwrap();
    close(value(&p, id), 0.9);
    o.step(&mut p, &grad(id, 1.0), 0.1).unwrap();
    close(value(&p, id), 0.71);

    // Nesterov: d = g + 0.9 buf: 1.9 then 2.71 -> p 0.81, 0.539.
    let (mut p, id) = scalar_param(1.0);
    let mut o = Sgd::new(SgdConfig {
        nesterov: true,
        ..SgdConfig::default()
    });
    o.step(&mut p, &grad(id, 1.0), 0.1).unwrap();
    close(value(&p, id), 0.81);
    o.step(&mut p, &grad(id, 1.0), 0.1).unwrap();
    close(value(&p, id), 0.539);

    // Plain SGD with L2: g' = 0.5 + 0.1*2 = 0.7 -> p = 2 - 0.07.
    let (mut p, id) = scalar_param(2.0);
    let mut o = Sgd::new(SgdConfig {
        momentum: 0.0,
        weight_decay: 0.1,
        ..SgdConfig::default()
    });
    o.step(&mut p, &grad(id, 0.5), 0.1).unwrap();
    close(value(&p, id), 1.93);
}

#[test]
fn adam_bias_correction_and_adamw_decoupled_decay() {
    // Step 1 moves by lr*sign(g); step 2 with g=-1: m=-0.01, v=0.001999,
    // mhat=-0.01/0.19, vhat=1 -> p += 0.1*0.01/0.19.
    let (mut p, id) = scalar_param(1.0);
    let mut o = Adam::new(AdamConfig {
        eps: 0.0,
        ..AdamConfig::default()
    });
    o.step(&mut p, &grad(id, 1.0), 0.1).unwrap();
    close(value(&p, id), 0.9);
    o.step(&mut p, &grad(id, -1.0), 0.1).unwrap();
    close(value(&p, id), 0.9 + 0.1 * 0.01 / 0.19);

    // AdamW: p -= lr*wd*p first (1 -> 0.99), then the Adam step of size lr.
    let (mut p, id) = scalar_param(1.0);
    let mut o = Adam::new(AdamConfig {
        eps: 0.0,
        weight_decay: 0.1,
        decoupled: true,
        ..AdamConfig::default()
    });
    o.step(&mut p, &grad(id, 0.5), 0.1).unwrap();
    close(value(&p, id), 0.89);

    // Adam + L2 adds wd*p to g: same sign, so still a step of lr.
    let (mut p, id) = scalar_param(1.0);
    let mut o = Adam::new(AdamConfig {
        eps: 0.0,
        weight_decay: 0.1,
        ..AdamConfig::default()
    });
    o.step(&mut p, &grad(id, -0.05), 0.1).unwrap();
    close(value(&p, id), 0.9); // g' = -0.05 + 0.1 = 0.05 > 0
}

#[test]
fn a_decay_multiplier_scales_weight_decay_per_parameter() {
    // AdamW as above with the parameter's decay switched off: only the
    // Adam step of size lr remains (1 -> 0.9); at 0.5 half the decay.
    for (decay, want) in [(0.0, 0.9), (0.5, 1.0 - 0.1 * 0.05 - 0.1), (1.0, 0.89)] {
        let (mut p, id) = scalar_param(1.0);
        let mut o = Adam::new(AdamConfig {
            eps: 0.0,
            weight_decay: 0.1,
            decoupled: true,
            ..AdamConfig::default()
        });
        o.set_lr_mults(LrMults::new(vec![1.0]).with_decay(vec![decay]));
        o.step(&mut p, &grad(id, 0.5), 0.1).unwrap();
        close(value(&p, id), want);
    }
    // SGD's L2 term: g' = g + decay·wd·p = 0.5 + 0 -> p = 1 - 0.1·0.5.
    let (mut p, id) = scalar_param(1.0);
    let mut o = Sgd::new(SgdConfig {
        momentum: 0.0,
        weight_decay: 0.1,
        ..SgdConfig::default()
    });
    o.set_lr_mults(LrMults::new(vec![1.0]).with_decay(vec![0.0]));
    o.step(&mut p, &grad(id, 0.5), 0.1).unwrap();
    close(value(&p, id), 0.95);
}

#[test]
fn optimizer_state_roundtrip_continues_exactly() {
    let mut rng = Rng::new(3);
    let grads: Vec<Tensor> = (0..5)
        .map(|_| Tensor::randn([3, 2], 1.0, DType::F32, &mut rng))
        .collect();
    let run = |split: Option<usize>| -> Vec<f64> {
        let mut p = Params::new();
        let id = p.add("w", Tensor::ones([3, 2], DType::F32)).unwrap();
        let mut adam = Adam::new(AdamConfig {
            weight_decay: 0.01,
            decoupled: true,
            ..AdamConfig::default()
        });
        for (i, g) in grads.iter().enumerate() {
            if Some(i) == split {
                let state = adam.state_dict();
                adam = Adam::new(adam.config.clone());
                adam.load_state_dict(&state).unwrap();
            }
            let mut gr = Gradients::new();
            gr.accumulate(id, g.clone()).unwrap();
            adam.step(&mut p, &gr, 0.01).unwrap();
        }
        p.get(id).to_f64_vec()
    };
    assert_eq!(run(None), run(Some(3)));
}

#[test]
fn schedules_hit_their_defining_points() {
    let s = |warmup, kind| LrSchedule {
        base_lr: 1.0,
        warmup_steps: warmup,
        decay: kind,
    };
    let c = s(4, ScheduleKind::Constant);
    close(c.lr_at(0), 0.25);
    close(c.lr_at(3), 1.0);
    close(c.lr_at(100), 1.0);
    let st = s(
        0,
        ScheduleKind::Step {
            step_size: 10,
            gamma: 0.1,
        },
    );
    close(st.lr_at(9), 1.0);
    close(st.lr_at(10), 0.1);
    close(st.lr_at(25), 0.01);
    let cos = s(
        0,
        ScheduleKind::Cosine {
            total_steps: 100,
            min_lr: 0.2,
        },
    );
    close(cos.lr_at(0), 1.0);
    close(cos.lr_at(50), 0.6);
    close(cos.lr_at(100), 0.2);
    close(cos.lr_at(1000), 0.2);
    let poly = s(
        0,
        ScheduleKind::Poly {
            total_steps: 100,
            power: 2.0,
        },
    );
    close(poly.lr_at(50), 0.25);
    let lin = s(10, ScheduleKind::Linear { total_steps: 100 });
    close(lin.lr_at(9), 1.0);
    close(lin.lr_at(60), 0.5);
    close(lin.lr_at(110), 0.0);
    assert!(s(
        0,
        ScheduleKind::Cosine {
            total_steps: 0,
            min_lr: 0.0
        }
    )
    .validate()
    .is_err());
    assert!(LrSchedule::constant(-1.0).validate().is_err());
}

#[test]
fn clipping_scales_to_the_global_norm_and_rejects_nan() {
    let mut p = Params::new();
    let a = p.add("a", Tensor::zeros([2], DType::F32)).unwrap();
    let b = p.add("b", Tensor::zeros([1], DType::F32)).unwrap();
    let mut g = Gradients::new();
    g.accumulate(a, Tensor::from_f64s(&[3.0, 0.0], [2], DType::F32).unwrap())
        .unwrap();
    g.accumulate(b, Tensor::from_f64s(&[4.0], [1], DType::F32).unwrap())
        .unwrap();
    let norm = clip_grad_norm(&mut g, 1.0).unwrap();
    close(norm, 5.0);
    assert!((g.global_norm() - 1.0).abs() < 1e-5);
    assert!((g.get(a).unwrap().to_f64_vec()[0] - 0.6).abs() < 1e-5);
    g.accumulate(b, Tensor::from_f64s(&[f64::NAN], [1], DType::F32).unwrap())
        .unwrap();
    assert!(clip_grad_norm(&mut g, 1.0)
        .unwrap_err()
        .to_string()
        .contains("non-finite"));
}

#[test]
fn checked_norm_without_clipping_keeps_gradients_and_rejects_nan() {
    let mut p = Params::new();
    let a = p.add("a", Tensor::zeros([2], DType::F32)).unwrap();
    let mut g = Gradients::new();
    g.accumulate(a, Tensor::from_f64s(&[3.0, 4.0], [2], DType::F32).unwrap())
        .unwrap();
    // max_norm 0 means "no clipping": the norm is reported, nothing scaled.
    close(checked_grad_norm(&mut g, 0.0).unwrap(), 5.0);
    assert_eq!(g.get(a).unwrap().to_f64_vec(), vec![3.0, 4.0]);
    // A positive max_norm clips as clip_grad_norm does.
    close(checked_grad_norm(&mut g, 1.0).unwrap(), 5.0);
    assert!((g.global_norm() - 1.0).abs() < 1e-5);
    g.accumulate(
        a,
        Tensor::from_f64s(&[f64::NAN, 0.0], [2], DType::F32).unwrap(),
    )
    .unwrap();
    for max_norm in [0.0, 1.0] {
        let e = checked_grad_norm(&mut g, max_norm).unwrap_err().to_string();
        assert!(e.contains("non-finite"), "{e}");
    }
}
