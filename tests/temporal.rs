//! Temporal models end to end on the CPU in f64: padding never changes an
//! output at a real frame (every encoder kind), a whole Transformer encoder
//! layer and a whole temporal network pass the gradient check, and feature
//! feedback is detached.

use mtaffect::gradcheck::check_gradients;
use mtaffect::model::temporal::{
    Carry, EncoderKind, Feedback, Task, TemporalNet, TemporalNetConfig, TransformerLayer,
};
use mtaffect::model::MtlOutput;
use mtaffect::nn::{Buffers, Ctx, Scope};
use mtaffect::{DType, Params, Result, Rng, Tape, Tensor, Var};

/// `p`'s tensors in f64 under the same names, so the same ParamIds.
fn to_f64(p: &Params) -> Params {
    let mut out = Params::new();
    for id in p.ids() {
        out.add(p.name(id), p.get(id).to_dtype(DType::F64)).unwrap();
    }
    out
}

fn config(encoder: EncoderKind) -> TemporalNetConfig {
    TemporalNetConfig {
        encoder,
        d_model: 6,
        shared_layers: 2,
        task_layers: 1,
        heads: 2,
        d_ff: 5,
        dropout: 0.2,
        head_hidden: 3,
        feedback: vec![
            Feedback {
                source: Task::Valence,
                target: Task::Arousal,
            },
            Feedback {
                source: Task::Au,
                target: Task::Arousal,
            },
        ],
        n_aus: 3,
        n_expr: 4,
    }
}

fn forward(
    net: &TemporalNet,
    tape: &Tape,
    p: &Params,
    x: &Tensor,
    mask: &[bool],
    carry: &mut Carry,
    train: bool,
) -> Result<MtlOutput> {
    let mut buffers = Buffers::new();
    let mut rng = Rng::new(17);
    let mut cx = Ctx {
        tape,
        params: p,
        buffers: &mut buffers,
        training: train,
        rng: &mut rng,
        frozen: false,
    };
    net.forward(&mut cx, &tape.constant(x.clone()), mask, carry)
}

/// Rows of a [N·T, w] output at the real frames, in (n, t) order.
fn real_rows(v: &Var, mask: &[bool]) -> Vec<f64> {
    let w = v.dims()[1];
    let d = v.value().to_f64_vec();
    mask.iter()
        .enumerate()
        .filter(|(_, &m)| m)
        .flat_map(|(r, _)| d[r * w..(r + 1) * w].to_vec())
        .collect()
}

#[test]
fn padding_changes_no_output_at_a_real_frame_for_any_encoder() {
    let (n, t, f, pad) = (2, 5, 4, 3);
    for kind in [
        EncoderKind::Gru,
        EncoderKind::Lstm,
        EncoderKind::Transformer,
    ] {
        let mut p = Params::new();
        let net = TemporalNet::new(&config(kind), f, &mut p, &mut Rng::new(1)).unwrap();
        let p = to_f64(&p);
        let mut rng = Rng::new(2);
        let x = Tensor::randn([n, t, f], 1.0, DType::F64, &mut rng);
        // Sample 1 has gaps at frames 1 and 3 (masks may mark padding anywhere).
        let mask: Vec<bool> = (0..n * t)
            .map(|r| r < t || (r % t != 1 && r % t != 3))
            .collect();
        // The same sequences padded to t + pad with garbage, which also
        // fills sample 1's gaps.
        let garbage = Tensor::randn([n, t + pad, f], 1e3, DType::F64, &mut rng).to_f64_vec();
        let xd = x.to_f64_vec();
        let mut big = garbage.clone();
        let mut big_mask = vec![false; n * (t + pad)];
        for (r, &m) in mask.iter().enumerate() {
            if m {
                let (s, i) = (r / t, r % t);
                let br = s * (t + pad) + i;
                big[br * f..(br + 1) * f].copy_from_slice(&xd[r * f..(r + 1) * f]);
                big_mask[br] = true;
            }
        }
        let big = Tensor::from_f64s(&big, [n, t + pad, f], DType::F64).unwrap();
        let tape = Tape::no_grad();
        let (mut c1, mut c2) = (Carry::default(), Carry::default());
        let a = forward(&net, &tape, &p, &x, &mask, &mut c1, false).unwrap();
        let b = forward(&net, &tape, &p, &big, &big_mask, &mut c2, false).unwrap();
        for (name, u, v) in [
            ("va", &a.va, &b.va),
            ("au", &a.au, &b.au),
            ("expr", &a.expr, &b.expr),
        ] {
            let (u, v) = (real_rows(u, &mask), real_rows(v, &big_mask));
            assert_eq!(u.len(), v.len());
            let diff = u
                .iter()
                .zip(&v)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(
                diff < 1e-12,
                "{kind:?} {name}: padded outputs differ by {diff}"
            );
            assert!(u.iter().all(|x| x.is_finite()));
        }
        // The check can fail: read as real frames, the garbage changes the outputs.
        let all = vec![true; big_mask.len()];
        let c = forward(&net, &tape, &p, &big, &all, &mut Carry::default(), false).unwrap();
        let (u, v) = (real_rows(&a.au, &mask), real_rows(&c.au, &big_mask));
        assert!(
            u.iter().zip(&v).any(|(x, y)| (x - y).abs() > 1e-3),
            "{kind:?}"
        );
        // The LSTM's carried state ignores padding too.
        assert_eq!(c1.output.len(), c2.output.len());
        for (s1, s2) in c1.output.iter().zip(&c2.output) {
            let d =
                s1.c.to_f64_vec()
                    .iter()
                    .zip(s2.c.to_f64_vec())
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
            assert!(d < 1e-12, "{kind:?} carried state differs by {d}");
        }
    }
}

#[test]
fn transformer_encoder_layer_gradients_match_central_differences() {
    let (n, t, e) = (2, 5, 4);
    let mut p = Params::new();
    let x_id = p.add("x", Tensor::zeros([n, t, e], DType::F32)).unwrap();
    let layer = TransformerLayer::new(
        &mut p,
        &Scope::root().pp("layer"),
        e,
        2,
        3,
        0.25,
        &mut Rng::new(4),
    )
    .unwrap();
    let pf = to_f64(&p);
    let mut inputs: Vec<Tensor> = pf.ids().map(|id| pf.get(id).clone()).collect();
    inputs[x_id.index()] = Tensor::randn([n, t, e], 1.0, DType::F64, &mut Rng::new(5));
    let mask = [
        true, true, true, false, true, true, true, true, false, false,
    ];
    // Seeded dropout inside f keeps every evaluation on the same masks.
    let report = check_gradients(&inputs, 1e-6, |tape, v| {
        let mut q = Params::new();
        for (i, x) in v.iter().enumerate() {
            q.add(p.name(p.ids().nth(i).unwrap()), x.value().clone())?;
        }
        let mut buffers = Buffers::new();
        let mut rng = Rng::new(9);
        let mut cx = Ctx {
            tape,
            params: &q,
            buffers: &mut buffers,
            training: true,
            rng: &mut rng,
            frozen: false,
        };
        let x = cx.param(x_id);
        layer.forward(&mut cx, &x, &mask)
    })
    .unwrap();
    assert!(report.max_rel_error <= 1e-6, "{report:?}");
}

/// Gradient check of a whole network (inputs: its parameters, in order).
fn check_net(cfg: &TemporalNetConfig) {
    let (n, t, f) = (2, 3, 3);
    let mut p = Params::new();
    let net = TemporalNet::new(cfg, f, &mut p, &mut Rng::new(6)).unwrap();
    let p = to_f64(&p);
    let inputs: Vec<Tensor> = p.ids().map(|id| p.get(id).clone()).collect();
    let x = Tensor::randn([n, t, f], 1.0, DType::F64, &mut Rng::new(7));
    let mask = [true, true, true, true, false, true];
    check_gradients(&inputs, 1e-6, |tape, v| {
        let mut q = Params::new();
        for (i, x) in v.iter().enumerate() {
            q.add(format!("p{i}"), x.value().clone())?;
        }
        let o = forward(&net, tape, &q, &x, &mask, &mut Carry::default(), true)?;
        mtaffect::ops::concat(tape, &[&o.va, &o.au, &o.expr], -1)
    })
    .unwrap_or_else(|e| panic!("{:?}: {e}", cfg.encoder));
}

#[test]
fn whole_networks_pass_the_gradient_check_without_feedback() {
    // Feedback is detached on purpose, so the analytic gradient leaves that
    // path out and cannot match finite differences; it is tested below.
    for kind in [
        EncoderKind::Gru,
        EncoderKind::Lstm,
        EncoderKind::Transformer,
    ] {
        let cfg = TemporalNetConfig {
            d_model: 4,
            shared_layers: 1,
            feedback: vec![],
            ..config(kind)
        };
        check_net(&cfg);
    }
}

#[test]
fn feedback_features_reach_the_target_but_pass_no_gradient_back() {
    let mut p = Params::new();
    let cfg = config(EncoderKind::Gru);
    let net = TemporalNet::new(&cfg, 3, &mut p, &mut Rng::new(8)).unwrap();
    let p = to_f64(&p);
    let x = Tensor::randn([1, 4, 3], 1.0, DType::F64, &mut Rng::new(9));
    let mask = [true; 4];
    let arousal = |p: &Params, tape: &Tape| {
        let o = forward(&net, tape, p, &x, &mask, &mut Carry::default(), false).unwrap();
        mtaffect::ops::narrow(tape, &o.va, -1, 1, 1).unwrap()
    };
    let valence_fc1 = p.find("head.valence.fc1.weight").unwrap();
    // Forward: changing the valence head changes arousal (the features flow)...
    let before = arousal(&p, &Tape::no_grad()).into_value().to_f64_vec();
    let mut q = p.clone();
    let w = q
        .get(valence_fc1)
        .to_f64_vec()
        .iter()
        .map(|v| v + 0.3)
        .collect::<Vec<_>>();
    q.set(
        valence_fc1,
        Tensor::from_f64s(&w, q.get(valence_fc1).shape().clone(), DType::F64).unwrap(),
    )
    .unwrap();
    let after = arousal(&q, &Tape::no_grad()).into_value().to_f64_vec();
    assert!(before.iter().zip(&after).any(|(a, b)| (a - b).abs() > 1e-6));
    // ...but arousal's gradient reaches neither the valence nor the AU head.
    let tape = Tape::new();
    let a = arousal(&p, &tape);
    let g = tape
        .backward_with_seed(&a, Tensor::ones([4, 1], DType::F64))
        .unwrap();
    for name in [
        "head.valence.fc1.weight",
        "head.au.fc1.weight",
        "head.arousal.fc1.weight",
    ] {
        let got = g
            .get(p.find(name).unwrap())
            .map_or(0.0, |t| t.to_f64_vec().iter().map(|v| v.abs()).sum());
        if name.contains("arousal") {
            assert!(got > 0.0, "{name} must train");
        } else {
            assert_eq!(got, 0.0, "{name} got a gradient through feedback");
        }
    }
}
