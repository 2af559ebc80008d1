//! CUDA parity of the ops the Vision Transformer and masked-autoencoder
//! pretraining add (per-sample token gather, drop path), of attention at
//! ViT shapes (no mask, 50 to 197 tokens, heads of 32 to 128), and of a whole
//! tiny ViT's forward and every parameter gradient, on poisoned buffers
//! against the f64 CPU reference (see tests/cuda_parity.rs for the method).
//! Without a GPU every test here is reported as ignored, never as passed.

mod common;

use common::{check, check_backbone, gpu, randn, Report, Tol};
use mtaffect::model::{Pooling, Vit, VitConfig, VitPreset};
use mtaffect::nn::{Buffers, Scope};
use mtaffect::ops::{add, attention, concat, drop_path, gather_tokens, TokenIndex};
use mtaffect::{Device, Params, Rng, Tape, Tensor};

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
fn attention_at_vit_shapes() {
    let dev = gpu();
    // The flash kernels sum f32 products over every key in tiles of 32, as
    // the temporal cases (tests/cuda_parity_temporal.rs) at 1e-4.
    let tol = Tol {
        atol: 1e-4,
        rtol: 1e-4,
    };
    let mut rep = Report::default();
    let mut rng = Rng::new(29);
    // (N, T = S, heads, D): a 7x7 grid plus the class token, 8x8 + 1 and
    // 14x14 + 1 (ViT/16 at 224 pixels), heads of 32 and 64; then a head of
    // 128 (eight threads per row) with T != S.
    for (n, t, s, heads, d) in [
        (3, 50, 50, 2, 32),
        (2, 65, 65, 3, 64),
        (1, 197, 197, 2, 64),
        (2, 17, 40, 1, 128),
    ] {
        let inputs = vec![
            randn(&[n, t, heads, d], &mut rng),
            randn(&[n, s, heads, d], &mut rng),
            randn(&[n, s, heads, d], &mut rng),
        ];
        check(&dev, &mut rep, "attention", &inputs, tol, |tape, v, _| {
            attention(tape, &v[0], &v[1], &v[2], None)
        });
    }
    rep.print("attention (ViT shapes, no mask)");
    // Past 128 dims a head is refused with the limit named.
    let gpu = Device::Cuda(dev.clone());
    let x = randn(&[1, 3, 1, 129], &mut rng).to_device(&gpu).unwrap();
    let tape = Tape::no_grad();
    let x = tape.constant(x);
    let e = attention(&tape, &x, &x, &x, None).unwrap_err().to_string();
    assert!(e.contains("head dim 129") && e.contains("128"), "{e}");
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
