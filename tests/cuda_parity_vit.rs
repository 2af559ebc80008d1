//! CUDA parity of the ops the Vision Transformer and masked-autoencoder
//! pretraining add (per-sample token gather, drop path), and of a whole
//! tiny ViT's forward and every parameter gradient, on poisoned buffers
//! against the f64 CPU reference (see tests/cuda_parity.rs for the method).
//! Without a GPU every test here is reported as ignored, never as passed.

mod common;

use common::{check, check_backbone, gpu, randn, Report, Tol};
use mtaffect::model::{Pooling, Vit, VitConfig, VitPreset};
use mtaffect::nn::{Buffers, Scope};
use mtaffect::ops::{add, concat, drop_path, gather_tokens, TokenIndex};
use mtaffect::{Params, Rng, Tape, Tensor};

#[test]
#[ignore = "needs a CUDA GPU"]
fn gather_tokens_and_mae_unshuffle() {
    let dev = gpu();
    // Copies, and sums of at most a few gradients: rounding of f32 adds only.
    let tol = Tol {
        atol: 1e-6,
        rtol: 1e-6,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(23);
    // Odd sizes; random indices with repeats and unpicked tokens.
    for (n, t, k, d) in [(3, 7, 5, 9), (2, 50, 13, 33), (1, 5, 11, 1)] {
        let idx: Vec<i64> = (0..n * k).map(|_| rng.below(t) as i64).collect();
        let idx = TokenIndex::new(&idx, n, t).unwrap();
        let x = randn(&[n, t, d], &mut rng);
        check(&dev, &mut rep, "gather_tokens", &[x], tol, |tp, v, _| {
            gather_tokens(tp, &v[0], &idx)
        });
    }
    // MAE: visible tokens and mask tokens back into patch order.
    let (n, t, k, d) = (4, 49, 12, 17);
    let perm = TokenIndex::shuffle(n, t, &mut rng).unwrap();
    let (keep, restore) = (perm.first(k).unwrap(), perm.inverse().unwrap());
    let x = randn(&[n, t, d], &mut rng);
    let mask = randn(&[1, 1, d], &mut rng);
    check(
        &dev,
        &mut rep,
        "gather_tokens (MAE un-shuffle)",
        &[x, mask],
        tol,
        |tp: &Tape, v, ctx| {
            let visible = gather_tokens(tp, &v[0], &keep)?;
            let blanks = tp.constant(ctx.put(&Tensor::zeros([n, t - k, d], mtaffect::DType::F32)));
            let masked = add(tp, &blanks, &v[1])?;
            gather_tokens(tp, &concat(tp, &[&visible, &masked], 1)?, &restore)
        },
    );
    rep.print("gather_tokens");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn drop_path_draws_the_cpu_mask() {
    let dev = gpu();
    // One multiply per element: the GPU must match the same mask exactly.
    let tol = Tol {
        atol: 1e-6,
        rtol: 1e-6,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(24);
    for (shape, p) in [(&[7, 5, 9][..], 0.3), (&[33, 49, 17], 0.1), (&[5, 1], 0.5)] {
        let x = randn(shape, &mut rng);
        check(&dev, &mut rep, "drop_path", &[x], tol, |tp, v, _| {
            drop_path(tp, &v[0], p, true, &mut Rng::new(7))
        });
    }
    rep.print("drop_path");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_tiny_vit_forward_and_backward_match_the_cpu() {
    let dev = gpu();
    // Two blocks of f32 GEMMs, attention and layer norms, as the temporal
    // Transformer's whole-model check allows.
    let tol = Tol {
        atol: 5e-4,
        rtol: 5e-4,
    };
    let mut rep = Report::default();
    for pooling in [Pooling::Cls, Pooling::Mean] {
        let cfg = VitConfig {
            preset: VitPreset::Tiny,
            depth: Some(2),
            width: Some(36),
            heads: Some(3),
            patch: 8,
            pooling,
            drop_path: 0.3,
            mlp_ratio: 4.0,
        };
        let mut rng = Rng::new(31);
        let mut p = Params::new();
        let vit = Vit::new(&mut p, &Scope::root(), &cfg, &mut rng).unwrap();
        // A 3 x 2 grid of patches: 7 tokens with the class token.
        let x = randn(&[5, 24, 16, 3], &mut rng);
        let what = format!("ViT {pooling:?}");
        check_backbone(&dev, &mut rep, &what, &vit, &p, &Buffers::new(), &x, tol);
    }
    rep.print("ViT forward and backward");
}
