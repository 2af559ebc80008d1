//! The GAN's stabilising and diversity levers on tiny models: the
//! mode-seeking term (gradient check in f64, its value recomputed by hand,
//! paired conditions in the generator step), the generator's own expression
//! weight and the decaying instance noise on the discriminator's inputs.

use mtaffect::gradcheck::check_gradients;
use mtaffect::model::Upsample;
use mtaffect::ops::loss::GanLoss;
use mtaffect::train::gan::loss::mode_seeking_loss;
use mtaffect::train::gan::{ConditionBank, GanConfig, GanTrainer};
use mtaffect::{DType, Rng, Tape, Tensor};

#[path = "common/gan_fixtures.rs"]
mod gan_fixtures;
use gan_fixtures::{batch, samples, tiny_config};

/// Rows 0..2 against rows 2..4 (the fifth, odd row is left out).
#[test]
fn mode_seeking_term_gradcheck_and_value() {
    let mut rng = Rng::new(21);
    let images = Tensor::uniform([5, 2, 3, 3], -1.0, 1.0, DType::F64, &mut rng);
    let z = Tensor::randn([5, 4], 1.0, DType::F32, &mut rng);
    check_gradients(std::slice::from_ref(&images), 1e-5, |t, v| {
        mode_seeking_loss(t, &v[0], &z)
    })
    .unwrap();

    let (x, zv) = (images.to_f64_vec(), z.to_f64_vec());
    let msd = |v: &[f64], width: usize| {
        let (a, b) = (&v[..2 * width], &v[2 * width..4 * width]);
        a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>() / (2 * width) as f64
    };
    let want = 1.0 / (msd(&x, 18) / msd(&zv, 4) + 1e-10).sqrt();
    let tape = Tape::no_grad();
    let got = mode_seeking_loss(&tape, &tape.constant(images.clone()), &z)
        .unwrap()
        .value()
        .item()
        .unwrap();
    assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");

    // Identical pairs: the loss is 1/eps, large but finite.
    let same = Tensor::concat(&[&images.narrow(0, 0, 2).unwrap(); 2], 0).unwrap();
    let got = mode_seeking_loss(&tape, &tape.constant(same), &z.narrow(0, 0, 4).unwrap())
        .unwrap()
        .value()
        .item()
        .unwrap();
    assert!((got - 1e5).abs() < 1e-6 * 1e5, "{got}");

    let e = mode_seeking_loss(&tape, &tape.constant(images), &z.narrow(0, 0, 3).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("mode_seeking") && e.contains("[N, z_dim]"),
        "{e}"
    );
}

fn config(f: impl Fn(&mut GanConfig)) -> GanConfig {
    let mut c = tiny_config(Upsample::NearestConv, GanLoss::NonSaturating);
    f(&mut c);
    c
}

/// The generator step with the term on: conditions come in pairs, the term
/// is reported and joins the total; off, it is 0 and the step is unchanged.
#[test]
fn mode_seeking_step_pairs_conditions_and_adds_the_term() {
    let bank = ConditionBank::from_samples(&samples(16), 12, 8).unwrap();
    let real = batch(&mut Rng::new(8));
    let mut on = GanTrainer::new(&config(|c| c.gan.mode_seeking_weight = 0.5)).unwrap();
    let g = on.g_step(&real.images, &bank).unwrap();
    assert!(g.mode_seeking > 0.0 && g.mode_seeking.is_finite(), "{g:?}");
    let off_cfg = config(|c| c.gan.mode_seeking_weight = 0.0);
    let mut off = GanTrainer::new(&off_cfg).unwrap();
    let g0 = off.g_step(&real.images, &bank).unwrap();
    assert_eq!(g0.mode_seeking, 0.0);
    // The same players, noise and conditions with and without the term: the
    // totals differ by exactly its weighted value.
    let cond = bank.sample_paired(4, &mut Rng::new(1)).unwrap();
    let z = Tensor::randn([4, 4], 1.0, DType::F32, &mut Rng::new(2));
    let mut a = GanTrainer::new(&config(|c| c.gan.mode_seeking_weight = 0.5)).unwrap();
    let mut b = GanTrainer::new(&off_cfg).unwrap();
    let (sa, sb) = (
        a.g_step_on(&real.images, &z, &cond).unwrap(),
        b.g_step_on(&real.images, &z, &cond).unwrap(),
    );
    assert_eq!((sa.adv, sa.mtl), (sb.adv, sb.mtl));
    let want = sb.loss + 0.5 * sa.mode_seeking;
    assert!(
        (sa.loss - want).abs() <= 1e-5 * want.abs(),
        "{sa:?} vs {sb:?}"
    );
}

/// `g_expr_weight` scales the generator's expression term only.
#[test]
fn generator_expression_weight_scales_its_expression_term() {
    let bank = ConditionBank::from_samples(&samples(16), 12, 8).unwrap();
    let real = batch(&mut Rng::new(8));
    let mut t = GanTrainer::new(&config(|c| c.gan.g_expr_weight = 3.0)).unwrap();
    let d = t.d_step(&real, &bank).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * a.abs().max(1.0);
    assert!(close(d.mtl, d.va + d.au + d.expr), "{d:?}");
    let g = t.g_step(&real.images, &bank).unwrap();
    assert!(close(g.mtl, g.va + g.au + 3.0 * g.expr), "{g:?}");
}

/// The noise's std decays linearly to 0 at the last step, and it reaches
/// the discriminator: the same step on the same state differs with it.
#[test]
fn instance_noise_decays_and_reaches_the_discriminator() {
    let cfg = config(|c| {
        c.gan.instance_noise = 0.2;
        c.train.steps = 4;
    });
    let mut t = GanTrainer::new(&cfg).unwrap();
    let bank = ConditionBank::from_samples(&samples(16), 12, 8).unwrap();
    let real = batch(&mut Rng::new(8));
    let mut stds = Vec::new();
    for _ in 0..4 {
        stds.push(t.instance_noise_std());
        t.g_step(&real.images, &bank).unwrap();
    }
    stds.push(t.instance_noise_std());
    let want = [0.2, 0.15, 0.1, 0.05, 0.0];
    for (s, w) in stds.iter().zip(want) {
        assert!((s - w).abs() < 1e-12, "{stds:?}");
    }
    let plain = config(|c| c.train.steps = 4);
    let (mut a, mut b) = (
        GanTrainer::new(&cfg).unwrap(),
        GanTrainer::new(&plain).unwrap(),
    );
    let (sa, sb) = (
        a.d_step(&real, &bank).unwrap(),
        b.d_step(&real, &bank).unwrap(),
    );
    assert_ne!(
        sa.adv, sb.adv,
        "instance noise left the discriminator's loss unchanged"
    );
}
