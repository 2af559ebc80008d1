//! `train.precision = "bf16"` on the CPU reference: what a bf16 tape changes
//! (the conv2d forward products read bf16-rounded operands) and what it
//! leaves alone (backward, grouped convolutions, the other trainers). The
//! GPU twins are in tests/cuda_train.rs and tests/cuda_parity_bf16.rs.

use mtaffect::autograd::Precision;
use mtaffect::ops::conv::bf16::{round_to_bf16, round_to_tf32};
use mtaffect::ops::conv::{dgrad_t, wgrad_t, Conv2dGeom};
use mtaffect::ops::{conv2d, Conv2dParams};
use mtaffect::train::gan::GanConfig;
use mtaffect::train::temporal::TemporalConfig;
use mtaffect::train::{ConfigFile, TrainConfig, Trainer};
use mtaffect::{DType, Params, Rng, Tape, Tensor};

#[path = "common/frame_fixtures.rs"]
mod frame_fixtures;
use frame_fixtures::{batches, config};

#[test]
fn rounding_to_bf16_is_to_nearest_with_ties_to_even() {
    let u = (-8f32).exp2(); // half an ulp of bf16 at 1
    let x = Tensor::from_vec(
        vec![
            1.0f32,
            1.0 + u,
            1.0 + 3.0 * u,
            1.0 + 1.5 * u,
            -2.0 - u,
            3.0e38,
        ],
        [6],
    )
    .unwrap();
    let r = round_to_bf16(&x).unwrap().to_vec::<f32>().unwrap();
    // A tie goes to the even mantissa (down from 1 + u, up from 1 + 3u);
    // above half an ulp rounds up; 3e38 = 225.7 ulps of 2^120 stays finite.
    let want = [
        1.0,
        1.0,
        1.0 + 4.0 * u,
        1.0 + 2.0 * u,
        -2.0,
        226.0 * 2f32.powi(120),
    ];
    assert_eq!(r, want);
}

#[test]
fn rounding_to_tf32_is_to_nearest_with_ties_away_from_zero() {
    let u = (-11f32).exp2(); // half an ulp of TF32 at 1
    let x = Tensor::from_vec(
        vec![
            1.0f32,
            1.0 + u,
            -1.0 - u,
            1.0 + 0.5 * u,
            1.0 + 3.0 * u,
            f32::INFINITY,
        ],
        [6],
    )
    .unwrap();
    let r = round_to_tf32(&x).unwrap().to_vec::<f32>().unwrap();
    // Ties go away from zero (both signs), below half an ulp rounds down, 1 + 3u
    // (a tie between 1 + 2u and 1 + 4u) rounds up; infinity stays.
    let want = [
        1.0,
        1.0 + 2.0 * u,
        -1.0 - 2.0 * u,
        1.0,
        1.0 + 4.0 * u,
        f32::INFINITY,
    ];
    assert_eq!(r, want);
}

/// conv2d's output and its (x, w) gradients with x and w as parameters.
fn conv_with_grads(
    x: &Tensor,
    w: &Tensor,
    prm: Conv2dParams,
    precision: Precision,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut p = Params::new();
    let (xi, wi) = (
        p.add("x", x.clone()).unwrap(),
        p.add("w", w.clone()).unwrap(),
    );
    let tape = Tape::new();
    tape.set_precision(precision);
    let y = conv2d(&tape, &tape.param(&p, xi), &tape.param(&p, wi), None, prm).unwrap();
    let out = y.value().to_vec::<f32>().unwrap();
    // A loss whose gradient is not uniform: sum of y * y has dy = 2y.
    let sq = mtaffect::ops::mul(&tape, &y, &y).unwrap();
    let loss = mtaffect::ops::sum(&tape, &sq, &[0, 1, 2, 3], false).unwrap();
    let g = tape.backward(&loss).unwrap();
    let grad = |id| g.get(id).unwrap().to_vec::<f32>().unwrap();
    (out, grad(xi), grad(wi))
}

/// Checks conv2d under a bf16 tape against f32 convs of rounded operands:
/// the forward reads bf16-rounded x and w, the input gradient bf16-rounded
/// dy and w, the weight gradient bf16-rounded x and dy.
fn check_bf16_conv(xd: [usize; 4], wd: [usize; 4], prm: Conv2dParams) {
    let mut rng = Rng::new(3);
    let x = Tensor::randn(xd, 1.0, DType::F32, &mut rng);
    let w = Tensor::randn(wd, 0.3, DType::F32, &mut rng);
    let (y16, dx16, dw16) = conv_with_grads(&x, &w, prm, Precision::Bf16);
    let (y32, _, _) = conv_with_grads(&x, &w, prm, Precision::F32);
    let r = |t: &Tensor| round_to_bf16(t).unwrap();
    let (y_rounded, _, _) = conv_with_grads(&r(&x), &r(&w), prm, Precision::F32);
    // The forward is exactly the f32 conv of the rounded operands ...
    assert_eq!(y16, y_rounded);
    // ... which is not the f32 conv of the originals.
    let diff = y16
        .iter()
        .zip(&y32)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff > 1e-4 && diff < 0.1,
        "bf16 vs f32 forward differ by {diff}"
    );
    // Backward, fed the bf16 forward's output gradient (dy = 2 y16 here).
    let g = Conv2dGeom::new("test", x.dims(), w.dims(), prm).unwrap();
    let dy: Vec<f32> = y16.iter().map(|v| 2.0 * v).collect();
    let dy = Tensor::from_vec(dy, g.out_dims()).unwrap();
    let dx = dgrad_t("test", &g, &r(&dy), &r(&w), None).unwrap();
    assert_eq!(dx16, dx.to_vec::<f32>().unwrap(), "dx");
    let dx32 = dgrad_t("test", &g, &dy, &w, None).unwrap();
    assert_ne!(dx16, dx32.to_vec::<f32>().unwrap(), "dx is the f32 one");
    let dw = wgrad_t("test", &g, &r(&x), &r(&dy), w.shape()).unwrap();
    assert_eq!(dw16, dw.to_vec::<f32>().unwrap(), "dw");
    let dw32 = wgrad_t("test", &g, &x, &dy, w.shape()).unwrap();
    assert_ne!(dw16, dw32.to_vec::<f32>().unwrap(), "dw is the f32 one");
}

#[test]
fn a_bf16_tape_rounds_the_operands_of_the_forward_and_both_gradients() {
    let p = Conv2dParams::new;
    // Stride 1 with symmetric, asymmetric and no padding; few input
    // channels; padding beyond the kernel's reach.
    check_bf16_conv([2, 6, 5, 24], [8, 3, 3, 24], p().padding(1));
    check_bf16_conv([1, 6, 7, 20], [4, 3, 3, 20], p().padding_tblr(2, 0, 1, 2));
    check_bf16_conv([2, 4, 4, 32], [16, 1, 1, 32], p());
    check_bf16_conv([2, 7, 6, 5], [4, 3, 3, 5], p().padding(1));
    check_bf16_conv([1, 4, 4, 24], [8, 1, 1, 24], p().padding(1));
    // Strided: by stride phase, for any channel count.
    check_bf16_conv([2, 7, 6, 24], [4, 3, 3, 24], p().stride(2).padding(1));
    check_bf16_conv([2, 8, 7, 5], [6, 1, 1, 5], p().stride(2));
}

#[test]
fn grouped_convolutions_keep_an_f32_forward_and_dgrad_and_a_tf32_wgrad_under_a_bf16_tape() {
    let mut rng = Rng::new(4);
    let x = Tensor::randn([1, 5, 5, 4], 1.0, DType::F32, &mut rng);
    let w = Tensor::randn([6, 3, 3, 2], 0.3, DType::F32, &mut rng);
    let prm = Conv2dParams::new().padding(1).groups(2);
    let (y16, dx16, dw16) = conv_with_grads(&x, &w, prm, Precision::Bf16);
    let (y32, dx32, _) = conv_with_grads(&x, &w, prm, Precision::F32);
    assert_eq!((y16, dx16), (y32.clone(), dx32));
    // Their weight gradient reads TF32-rounded x and dy.
    let g = Conv2dGeom::new("test", x.dims(), w.dims(), prm).unwrap();
    let dy: Vec<f32> = y32.iter().map(|v| 2.0 * v).collect();
    let dy = round_to_tf32(&Tensor::from_vec(dy, g.out_dims()).unwrap()).unwrap();
    let dw = wgrad_t("test", &g, &round_to_tf32(&x).unwrap(), &dy, w.shape()).unwrap();
    assert_eq!(dw16, dw.to_vec::<f32>().unwrap());
}

#[test]
fn bf16_training_steps_stay_near_the_f32_steps() {
    let data = batches(4, 6, 24);
    let losses = |p| {
        let mut c = config("cpu");
        c.train.precision = p;
        let mut t = Trainer::new(&c).unwrap();
        data.iter()
            .map(|b| t.step(b).unwrap().loss)
            .collect::<Vec<_>>()
    };
    let (l16, l32) = (losses(Precision::Bf16), losses(Precision::F32));
    for (a, b) in l16.iter().zip(&l32) {
        assert!(a.is_finite());
        assert!(
            (a - b).abs() <= 0.05 * b.abs(),
            "bf16 {l16:?} vs f32 {l32:?}"
        );
    }
    assert_ne!(l16, l32, "the bf16 steps are the f32 steps");
}

#[test]
fn precision_is_a_train_key_that_only_the_frame_trainer_takes() {
    let sets = ["train.precision=\"bf16\"".to_string()];
    let c = TrainConfig::default().with_overrides(&sets).unwrap();
    assert_eq!(c.train.precision, Precision::Bf16);
    let bad = TrainConfig::default()
        .with_overrides(&["train.precision=\"fp8\"".to_string()])
        .unwrap_err()
        .to_string();
    assert!(bad.contains("fp8"), "{bad}");
    for e in [
        GanConfig::default().with_overrides(&sets).unwrap_err(),
        TemporalConfig::default().with_overrides(&sets).unwrap_err(),
    ] {
        let e = e.to_string();
        assert!(
            e.contains("train.precision = bf16") && e.contains("f32 only"),
            "{e}"
        );
    }
}
