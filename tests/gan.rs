//! The multi-task GAN on tiny models: gradient checks of the generator's
//! layers and of both players' combined losses, each player's step changing
//! its own state and nothing of the other's, checkpoints, sample grid files
//! and mixing generated faces into a batch.

use mtaffect::data::BatchTransform;
use mtaffect::gradcheck::check_gradients;
use mtaffect::model::{Generator, MtlOutput, Upsample};
use mtaffect::nn::{Buffers, Ctx};
use mtaffect::ops::batch_norm::BatchNormParams;
use mtaffect::ops::conv::Conv2dParams;
use mtaffect::ops::loss::GanLoss;
use mtaffect::train::gan::loss::{discriminator_loss, generator_loss};
use mtaffect::train::gan::{
    write_grid, ConditionBank, GanConfig, GanMixConfig, GanMixer, GanSettings, GanTrainer, GridKind,
};
use mtaffect::train::{LossConfig, MtlLoss, MtlTargets};
use mtaffect::{ops, DType, Params, Rng, Tape, Tensor};
use std::path::{Path, PathBuf};

#[path = "common/gan_fixtures.rs"]
mod gan_fixtures;
use gan_fixtures::{batch, samples, tiny_config, N, SIZE};

fn snapshot(p: &Params) -> Vec<Vec<f64>> {
    p.ids().map(|id| p.get(id).to_f64_vec()).collect()
}

fn changed(before: &[Vec<f64>], after: &Params) -> Vec<bool> {
    before
        .iter()
        .zip(after.ids())
        .map(|(b, id)| *b != after.get(id).to_f64_vec())
        .collect()
}

#[test]
fn generator_blocks_gradcheck_in_f64() {
    let mut rng = Rng::new(3);
    let x = Tensor::randn([2, 3, 3, 3], 1.0, DType::F64, &mut rng);
    let w_t = Tensor::randn([3, 4, 4, 2], 0.5, DType::F64, &mut rng);
    let w_c = Tensor::randn([2, 3, 3, 3], 0.5, DType::F64, &mut rng);
    let gamma = Tensor::uniform([2], 0.5, 1.5, DType::F64, &mut rng);
    let beta = Tensor::randn([2], 0.5, DType::F64, &mut rng);
    let bn = |t: &Tape, h: &mtaffect::Var, g: &mtaffect::Var, b: &mtaffect::Var| {
        let (mut rm, mut rv) = (
            Tensor::zeros([2], DType::F64),
            Tensor::ones([2], DType::F64),
        );
        let prm = BatchNormParams {
            momentum: 0.1,
            eps: 1e-5,
            training: true,
        };
        ops::relu(t, &ops::batch_norm2d(t, h, g, b, &mut rm, &mut rv, prm)?)
    };
    // Transposed-conv block: 4x4 stride 2 padding 1 (3x3 -> 6x6), BN, ReLU.
    let up = Conv2dParams::new().stride(2).padding(1);
    check_gradients(
        &[x.clone(), w_t, gamma.clone(), beta.clone()],
        1e-5,
        |t, v| {
            let h = ops::conv_transpose2d(t, &v[0], &v[1], None, up, [0, 0])?;
            assert_eq!(h.dims(), &[2, 6, 6, 2]);
            bn(t, &h, &v[2], &v[3])
        },
    )
    .unwrap();
    // Nearest x2 + 3x3 conv block, BN, ReLU.
    check_gradients(&[x, w_c, gamma, beta], 1e-5, |t, v| {
        let u = ops::upsample_nearest2d(t, &v[0], 2)?;
        let h = ops::conv2d(t, &u, &v[1], None, Conv2dParams::new().padding(1))?;
        bn(t, &h, &v[2], &v[3])
    })
    .unwrap();
}

/// The whole generator in f64 (parameters cast, entering frozen), checked
/// with respect to noise and condition: linear, reshape, BN, every block, to-RGB and tanh.
#[test]
fn whole_generator_gradcheck_in_f64() {
    for upsample in [Upsample::ConvTranspose, Upsample::NearestConv] {
        let cfg = tiny_config(upsample, GanLoss::NonSaturating).generator;
        let mut rng = Rng::new(11);
        let (mut p, mut b) = (Params::new(), Buffers::new());
        let g = Generator::new(&cfg, &mut p, &mut b, &mut rng).unwrap();
        let cast = |r: &Params| {
            let mut out = Params::new();
            for id in r.ids() {
                out.add(r.name(id), r.get(id).to_dtype(DType::F64)).unwrap();
            }
            out
        };
        let (p64, b64) = (cast(&p), cast(&b));
        let z = Tensor::randn([3, cfg.z_dim], 1.0, DType::F64, &mut rng);
        let c = Tensor::uniform([3, cfg.cond_dim()], 0.0, 1.0, DType::F64, &mut rng);
        check_gradients(&[z, c], 1e-5, |t, v| {
            let mut buffers = b64.clone();
            let mut r = Rng::new(0);
            let mut cx = Ctx {
                tape: t,
                params: &p64,
                buffers: &mut buffers,
                training: true,
                rng: &mut r,
                frozen: true,
            };
            let y = g.forward(&mut cx, &v[0], &v[1])?;
            assert_eq!(y.dims(), &[3, SIZE, SIZE, 3]);
            Ok(y)
        })
        .unwrap();
    }
}

/// Both players' losses as functions of the discriminator's head outputs.
#[test]
fn combined_losses_gradcheck_and_weights() {
    let mut rng = Rng::new(5);
    let va = Tensor::from_f64s(&[0.2, -0.3, -5.0, -5.0, 0.5, 0.4], [3, 2], DType::F64).unwrap();
    let au = Tensor::from_f64s(
        &(0..36).map(|i| [0.0, 1.0, -1.0][i % 3]).collect::<Vec<_>>(),
        [3, 12],
        DType::F64,
    )
    .unwrap();
    let expr = vec![2i64, -1, 7];
    let heads = |rng: &mut Rng| {
        vec![
            Tensor::uniform([3, 2], -0.9, 0.9, DType::F64, rng),
            Tensor::randn([3, 12], 1.0, DType::F64, rng),
            Tensor::randn([3, 8], 1.0, DType::F64, rng),
            // Real/fake logits away from the hinge's kinks at ±1.
            Tensor::from_f64s(&[0.3, -0.4, 0.1], [3, 1], DType::F64).unwrap(),
            Tensor::from_f64s(&[-0.2, 0.5, -0.6], [3, 1], DType::F64).unwrap(),
        ]
    };
    let inputs = heads(&mut rng);
    let out = |t: &Tape, v: &[mtaffect::Var], rf: usize| MtlOutput {
        va: v[0].clone(),
        au: v[1].clone(),
        expr: v[2].clone(),
        features: t.constant(Tensor::zeros([3, 1], DType::F64)),
        real_fake: Some(v[rf].clone()),
    };
    for kind in [GanLoss::NonSaturating, GanLoss::Hinge] {
        let s = GanSettings {
            loss: kind,
            d_adv_weight: 0.7,
            d_mtl_weight: 1.3,
            g_adv_weight: 0.4,
            g_mtl_weight: 2.0,
            ..GanSettings::default()
        };
        let mut p = Params::new();
        let mtl = MtlLoss::new(
            &LossConfig {
                w_va: 0.5,
                w_au: 1.5,
                ..LossConfig::default()
            },
            &mut p,
        )
        .unwrap();
        let targets = MtlTargets {
            va: &va,
            au: &au,
            expr: &expr,
        };
        check_gradients(&inputs, 1e-5, |t, v| {
            let (real, fake) = (out(t, v, 3), out(t, v, 4));
            let d = discriminator_loss(t, &s, &mtl, &p, &real, &fake, &targets)?;
            let g = generator_loss(t, &s, &mtl, &p, &fake, &targets, None)?;
            ops::add(t, &d.total, &g.total)
        })
        .unwrap();
        // The totals are the configured weighted sums of their parts.
        let t = Tape::no_grad();
        let v: Vec<_> = inputs.iter().map(|x| t.constant(x.clone())).collect();
        let (real, fake) = (out(&t, &v, 3), out(&t, &v, 4));
        let d = discriminator_loss(&t, &s, &mtl, &p, &real, &fake, &targets).unwrap();
        let g = generator_loss(&t, &s, &mtl, &p, &fake, &targets, None).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12 * a.abs().max(1.0);
        assert!(close(
            d.total.value().item().unwrap(),
            0.7 * d.adv + 1.3 * d.mtl
        ));
        assert!(close(
            g.total.value().item().unwrap(),
            0.4 * g.adv + 2.0 * g.mtl
        ));
        assert!(close(d.mtl, 0.5 * d.va + 1.5 * d.au + d.expr));
        assert!(d.adv > 0.0 && g.adv != 0.0 && d.va > 0.0 && d.au > 0.0 && d.expr > 0.0);
        // A discriminator without the real/fake head is a clear error.
        let mut no_head = out(&t, &v, 3);
        no_head.real_fake = None;
        let e = generator_loss(&t, &s, &mtl, &p, &no_head, &targets, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("real/fake"), "{e}");
    }
}

#[test]
fn each_step_changes_its_own_player_only() {
    for (upsample, loss) in [
        (Upsample::ConvTranspose, GanLoss::NonSaturating),
        (Upsample::NearestConv, GanLoss::Hinge),
    ] {
        let cfg = tiny_config(upsample, loss);
        let mut gan = GanTrainer::new(&cfg).unwrap();
        let bank = ConditionBank::from_samples(&samples(16), 12, 8).unwrap();
        let mut rng = Rng::new(9);
        let real = batch(&mut rng);

        let (g0, gb0) = (snapshot(&gan.g_params), snapshot(&gan.g_buffers));
        let (d0, db0) = (snapshot(&gan.d_params), snapshot(&gan.d_buffers));
        let d = gan.d_step(&real, &bank).unwrap();
        assert!(d.loss.is_finite() && d.adv > 0.0 && d.mtl > 0.0);
        assert!(
            !changed(&g0, &gan.g_params).contains(&true),
            "D step moved G"
        );
        assert!(
            !changed(&gb0, &gan.g_buffers).contains(&true),
            "D step moved G's BN stats"
        );
        let moved = changed(&d0, &gan.d_params);
        for (id, m) in gan.d_params.ids().zip(&moved) {
            let name = gan.d_params.name(id);
            // Hinge with every logit inside (-1, 1): the real/fake bias gets
            // -1/N from each real and +1/N from each generated image, exactly 0.
            let zero_grad = loss == GanLoss::Hinge && name == "head.real_fake.bias";
            assert!(*m != zero_grad, "D step: {name} moved {m}");
        }
        assert!(changed(&db0, &gan.d_buffers).iter().all(|&m| m));
        assert_eq!(gan.progress.step, 0, "steps count generator updates");

        let (d1, db1) = (snapshot(&gan.d_params), snapshot(&gan.d_buffers));
        let g = gan.g_step(&real.images, &bank).unwrap();
        assert!(g.loss.is_finite() && g.mtl > 0.0);
        assert!(
            !changed(&d1, &gan.d_params).contains(&true),
            "G step moved D"
        );
        assert!(
            !changed(&db1, &gan.d_buffers).contains(&true),
            "G step moved D's BN stats"
        );
        let moved = changed(&g0, &gan.g_params);
        for (id, m) in gan.g_params.ids().zip(&moved) {
            assert!(m, "G step left {} unchanged", gan.g_params.name(id));
        }
        assert!(changed(&gb0, &gan.g_buffers).iter().all(|&m| m));
        assert_eq!(gan.progress.step, 1);
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mtaffect-gan-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    let info = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let i = info.info();
    (i.width, i.height)
}

#[test]
fn checkpoint_restores_both_players_and_grids_have_their_size() {
    let cfg = tiny_config(Upsample::ConvTranspose, GanLoss::NonSaturating);
    let mut gan = GanTrainer::new(&cfg).unwrap();
    let bank = ConditionBank::from_samples(&samples(16), 12, 8).unwrap();
    gan.prototypes = bank.prototypes();
    let mut rng = Rng::new(2);
    let real = batch(&mut rng);
    gan.d_step(&real, &bank).unwrap();
    gan.g_step(&real.images, &bank).unwrap();
    let path = tmp("gan.safetensors");
    gan.save_checkpoint(&path).unwrap();

    let mut back = GanTrainer::from_checkpoint(&path).unwrap();
    for (a, b) in [
        (&gan.g_params, &back.g_params),
        (&gan.d_params, &back.d_params),
        (&gan.g_buffers, &back.g_buffers),
        (&gan.d_buffers, &back.d_buffers),
    ] {
        assert_eq!(snapshot(a), snapshot(b));
    }
    assert_eq!(
        snapshot(gan.g_ema.as_ref().unwrap()),
        snapshot(back.g_ema.as_ref().unwrap())
    );
    assert_eq!(back.prototypes, gan.prototypes);
    assert_eq!(back.progress.step, gan.progress.step);
    // Optimizer state and RNG came back too: the next steps match exactly.
    let (sa, sb) = (
        gan.d_step(&real, &bank).unwrap(),
        back.d_step(&real, &bank).unwrap(),
    );
    assert_eq!(sa, sb);
    let (sa, sb) = (
        gan.g_step(&real.images, &bank).unwrap(),
        back.g_step(&real.images, &bank).unwrap(),
    );
    assert_eq!(sa, sb);
    assert_eq!(snapshot(&gan.g_params), snapshot(&back.g_params));

    // Grid sizes: cells of SIZE px with 2 px gutters.
    let cell = |n: u32| n * (SIZE as u32 + 2) + 2;
    for (kind, cols, rows) in [
        (GridKind::Expr, 8, 4),
        (GridKind::Au, 6, 12),
        (GridKind::Va, 5, 5),
    ] {
        let out = tmp(&format!("grid-{kind:?}.png"));
        let wh = write_grid(&mut back, kind, 1, &out).unwrap();
        assert_eq!(wh, (cell(cols), cell(rows)));
        assert_eq!(png_size(&out), (cell(cols), cell(rows)));
    }

    // Mixing: 4 rows, 2 of them fully labelled; ratio 0.5 adds 2 faces
    // carrying exactly those rows' labels.
    let mix_cfg = GanMixConfig {
        checkpoint: path.clone(),
        ratio: 0.5,
    };
    let mut mixer = GanMixer::load(&mix_cfg, SIZE, 12, 8).unwrap().unwrap();
    let mixed = mixer.apply(&real, &mut rng).unwrap();
    assert_eq!(mixed.len(), N + 2);
    assert_eq!(mixed.images.dims(), &[N + 2, SIZE, SIZE, 3]);
    for k in N..N + 2 {
        let src = mixed.indices[k];
        assert!(src == 0 || src == 3, "row {src} is not fully labelled");
        assert_eq!(mixed.expr_class[k], real.expr_class[src]);
        let va = mixed.va.to_f64_vec();
        assert_eq!(
            &va[2 * k..2 * k + 2],
            &real.va.to_f64_vec()[2 * src..2 * src + 2]
        );
        let aus = mixed.aus.to_f64_vec();
        assert_eq!(
            &aus[12 * k..12 * k + 12],
            &real.aus.to_f64_vec()[12 * src..12 * src + 12]
        );
    }
    assert!(GanMixer::load(&GanMixConfig::default(), SIZE, 12, 8)
        .unwrap()
        .is_none());
    let e = GanMixer::load(&mix_cfg, 64, 12, 8)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("64 px"), "{e}");
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

/// A fresh generator's tanh must not start saturated (it then passes almost
/// no gradient and the generator never leaves its initial noise).
#[test]
fn fresh_generator_output_is_not_saturated() {
    for cfg in [
        GanConfig::default().generator,
        tiny_config(Upsample::ConvTranspose, GanLoss::Hinge).generator,
    ] {
        let mut rng = Rng::new(1);
        let (mut p, mut b) = (Params::new(), Buffers::new());
        let g = Generator::new(&cfg, &mut p, &mut b, &mut rng).unwrap();
        let tape = Tape::no_grad();
        let z = tape.constant(Tensor::randn([4, cfg.z_dim], 1.0, DType::F32, &mut rng));
        let c = tape.constant(Tensor::uniform(
            [4, cfg.cond_dim()],
            0.0,
            1.0,
            DType::F32,
            &mut rng,
        ));
        let mut cx = Ctx {
            tape: &tape,
            params: &p,
            buffers: &mut b,
            training: true,
            rng: &mut rng,
            frozen: false,
        };
        let y = g.forward(&mut cx, &z, &c).unwrap().value().to_f64_vec();
        let std = (y.iter().map(|v| v * v).sum::<f64>() / y.len() as f64).sqrt();
        let saturated = y.iter().filter(|v| v.abs() > 0.99).count() as f64 / y.len() as f64;
        assert!(
            (0.05..0.8).contains(&std) && saturated < 0.01,
            "{}px: output rms {std:.3}, {:.1}% saturated",
            cfg.image_size,
            100.0 * saturated
        );
    }
}

/// The generator step's path: the discriminator in training mode with frozen
/// parameters passes the right gradient back to its input image (f64).
#[test]
fn frozen_discriminator_passes_input_gradients() {
    let cfg = tiny_config(Upsample::ConvTranspose, GanLoss::NonSaturating).discriminator;
    let mut rng = Rng::new(4);
    let (mut p, mut b) = (Params::new(), Buffers::new());
    let net = mtaffect::model::MtlNet::new(&cfg, &mut p, &mut b, &mut rng).unwrap();
    let cast = |r: &Params| {
        let mut out = Params::new();
        for id in r.ids() {
            out.add(r.name(id), r.get(id).to_dtype(DType::F64)).unwrap();
        }
        out
    };
    let (p64, b64) = (cast(&p), cast(&b));
    let x = Tensor::uniform([3, 8, 8, 3], -1.0, 1.0, DType::F64, &mut rng);
    check_gradients(&[x], 1e-4, |t, v| {
        let mut buffers = b64.clone();
        let mut r = Rng::new(0);
        let mut cx = Ctx {
            tape: t,
            params: &p64,
            buffers: &mut buffers,
            training: true,
            rng: &mut r,
            frozen: true,
        };
        let out = net.forward(&mut cx, &v[0])?;
        ops::concat(t, &[&out.real_fake.unwrap(), &out.expr, &out.va], -1)
    })
    .unwrap();
}

#[test]
fn the_generator_average_follows_the_live_weights_and_samples_with_them() {
    let cfg = tiny_config(Upsample::NearestConv, GanLoss::NonSaturating);
    let d = cfg.gan.g_ema_decay;
    assert!(d > 0.0 && d < 1.0, "the default keeps an average");
    let mut gan = GanTrainer::new(&cfg).unwrap();
    let bank = ConditionBank::from_samples(&samples(16), 12, 8).unwrap();
    let real = batch(&mut Rng::new(6));
    let start = snapshot(&gan.g_params);
    assert_eq!(snapshot(gan.g_ema.as_ref().unwrap()), start);
    gan.g_step(&real.images, &bank).unwrap();
    let live = snapshot(&gan.g_params);
    let avg = snapshot(gan.g_ema.as_ref().unwrap());
    for ((a, l), s0) in avg.iter().zip(&live).zip(&start) {
        for ((a, l), s0) in a.iter().zip(l).zip(s0) {
            assert!(
                (a - (d * s0 + (1.0 - d) * l)).abs() <= 1e-6,
                "{a} vs {d}*{s0} + (1-{d})*{l}"
            );
        }
    }
    assert_ne!(
        avg, live,
        "a step moved the live weights away from the average"
    );
    // Eval-mode samples come from the average: swapping it in as the live
    // weights of a second trainer gives the same images.
    let z = gan.noise(2);
    let cond = bank.sample(2, &mut Rng::new(7)).unwrap();
    let sampled = gan.generate(&z, &cond.input, false).unwrap().to_f64_vec();
    let mut plain = GanTrainer::new(&GanConfig {
        gan: GanSettings {
            g_ema_decay: 0.0,
            ..cfg.gan.clone()
        },
        ..cfg.clone()
    })
    .unwrap();
    assert!(plain.g_ema.is_none());
    plain.g_params = gan.g_ema.clone().unwrap();
    plain.g_buffers = gan.g_buffers.clone();
    assert_eq!(
        plain.generate(&z, &cond.input, false).unwrap().to_f64_vec(),
        sampled
    );
}
