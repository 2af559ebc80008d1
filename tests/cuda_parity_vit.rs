//! CUDA parity of the ops the Vision Transformer and masked-autoencoder
//! pretraining add (per-sample token gather, drop path), forward and
//! backward, on poisoned buffers against the f64 CPU reference (see
//! tests/cuda_parity.rs for the method). Without a GPU every test here is
//! reported as ignored, never as passed.

mod common;

use common::{check, gpu, randn, Report, Tol};
use mtaffect::ops::{add, concat, drop_path, gather_tokens, TokenIndex};
use mtaffect::{Rng, Tape, Tensor};

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
