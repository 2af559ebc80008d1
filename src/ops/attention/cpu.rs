//! The CPU attention, generic over f32 and f64 (the gradient checks): per
//! sample (one rayon task each) and head, GEMMs over that sample's
//! unmasked keys, whose rows of k and v are first gathered into contiguous
//! [S', D] matrices. Gathering, rather than multiplying every key and
//! masking after, keeps padded keys out of every product, so whatever a
//! padded frame holds (even NaN) cannot reach an output or a gradient.
//!
//! Per (sample, head), with Q [T, D], K and V [S', D] and P [T, S']:
//! - forward:  `P = softmax(Q·Kᵀ/√D)` by rows, `O = P·V`;
//! - backward: `dP = dO·Vᵀ`, `dS = P ∘ (dP − rowsum(P ∘ dP)) / √D`,
//!   `dQ = dS·K`, `dK = dSᵀ·Q`, `dV = Pᵀ·dO`.

use super::Dims;
use crate::backend::cpu::{gemm, gemm_strided, Float, MatRef};
use crate::{Result, Tensor};
use rayon::prelude::*;

/// The unmasked keys of sample `nn`, in order.
fn keys_of(mask: &[bool], nn: usize, s: usize) -> Vec<usize> {
    (0..s).filter(|&j| mask[nn * s + j]).collect()
}

/// Head `hh`'s rows `rows` of one sample's [L, H, D] block, as a
/// contiguous [rows.len(), D] matrix in `out` (reused across heads).
fn gather<T: Float>(x: &[T], rows: &[usize], hh: usize, dm: &Dims, out: &mut Vec<T>) {
    let (h, d) = (dm.h, dm.d);
    out.clear();
    out.extend(rows.iter().flat_map(|&j| &x[(j * h + hh) * d..][..d]));
}

/// Writes the rows of `src` [rows.len(), D] into head `hh`'s rows `rows` of one
/// sample's [L, H, D] block.
fn scatter<T: Float>(src: &[T], rows: &[usize], hh: usize, dm: &Dims, x: &mut [T]) {
    let (h, d) = (dm.h, dm.d);
    for (r, &j) in src.chunks(d).zip(rows) {
        x[(j * h + hh) * d..][..d].copy_from_slice(r);
    }
}

/// Head `hh` of one sample's [L, H, D] block as an [L, D] view.
fn head<'a, T>(x: &'a [T], len: usize, hh: usize, dm: &Dims) -> MatRef<'a, T> {
    MatRef {
        data: &x[hh * dm.d..],
        rows: len,
        cols: dm.d,
        rs: dm.h * dm.d,
        cs: 1,
    }
}

/// Output [N, T, H, D] and the attention weights [N, H, T, S] (zero at
/// padded keys).
pub(super) fn forward<T: Float>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &[bool],
    dm: &Dims,
) -> Result<(Tensor, Tensor)> {
    let (qd, kd, vd) = (q.data::<T>()?, k.data::<T>()?, v.data::<T>()?);
    let Dims { n, t, s, h, d } = *dm;
    let scale = T::from_f64(1.0 / (d as f64).sqrt());
    let mut out = vec![T::ZERO; n * t * h * d];
    let mut probs = vec![T::ZERO; n * h * t * s];
    out.par_chunks_mut(t * h * d)
        .zip(probs.par_chunks_mut(h * t * s))
        .enumerate()
        .for_each(|(nn, (o, p))| {
            let keys = keys_of(mask, nn, s);
            if keys.is_empty() {
                return;
            }
            let (qn, kn, vn) = (
                &qd[nn * t * h * d..][..t * h * d],
                &kd[nn * s * h * d..][..s * h * d],
                &vd[nn * s * h * d..][..s * h * d],
            );
            let sk = keys.len();
            let mut w = vec![T::ZERO; t * sk];
            let (mut kc, mut vc) = (Vec::new(), Vec::new());
            for hh in 0..h {
                gather(kn, &keys, hh, dm, &mut kc);
                gather(vn, &keys, hh, dm, &mut vc);
                gemm(
                    scale,
                    head(qn, t, hh, dm),
                    MatRef::new(&kc, sk, d).t(),
                    T::ZERO,
                    &mut w,
                );
                for (row, prow) in w.chunks_mut(sk).zip(p[hh * t * s..].chunks_mut(s)) {
                    let m = row.iter().copied().fold(row[0], T::max);
                    let mut z = T::ZERO;
                    for x in row.iter_mut() {
                        *x = (*x - m).exp();
                        z += *x;
                    }
                    for (x, &j) in row.iter_mut().zip(&keys) {
                        *x /= z;
                        prow[j] = *x;
                    }
                }
                let ov = &mut o[hh * d..];
                gemm_strided(
                    T::ONE,
                    MatRef::new(&w, t, sk),
                    MatRef::new(&vc, sk, d),
                    T::ZERO,
                    ov,
                    h * d,
                );
            }
        });
    Ok((
        Tensor::from_vec(out, q.shape().clone())?,
        Tensor::from_vec(probs, [n, h, t, s])?,
    ))
}

/// Gradients of q, k and v (those `needs` asks for) from the output's
/// gradient `g` and the saved weights.
pub(super) fn backward<T: Float>(
    g: &Tensor,
    [q, k, v]: [&Tensor; 3],
    probs: &Tensor,
    mask: &[bool],
    dm: &Dims,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (gd, qd, kd, vd, pd) = (
        g.data::<T>()?,
        q.data::<T>()?,
        k.data::<T>()?,
        v.data::<T>()?,
        probs.data::<T>()?,
    );
    let Dims { t, s, h, d, .. } = *dm;
    let scale = T::from_f64(1.0 / (d as f64).sqrt());
    let (tl, sl) = (t * h * d, s * h * d);
    let (mut dq, mut dk, mut dv) = (
        vec![T::ZERO; qd.len()],
        vec![T::ZERO; kd.len()],
        vec![T::ZERO; vd.len()],
    );
    let need_ds = needs[0] || needs[1];
    dq.par_chunks_mut(tl)
        .zip(dk.par_chunks_mut(sl))
        .zip(dv.par_chunks_mut(sl))
        .enumerate()
        .for_each(|(nn, ((dqn, dkn), dvn))| {
            let keys = keys_of(mask, nn, s);
            if keys.is_empty() {
                return;
            }
            let (gn, qn, kn, vn) = (
                &gd[nn * tl..][..tl],
                &qd[nn * tl..][..tl],
                &kd[nn * sl..][..sl],
                &vd[nn * sl..][..sl],
            );
            let sk = keys.len();
            let mut dkv = vec![T::ZERO; sk * d];
            let mut ds = vec![T::ZERO; t * sk];
            let (mut kc, mut vc, mut pc) = (Vec::new(), Vec::new(), Vec::with_capacity(t * sk));
            for hh in 0..h {
                let (gh, qh) = (head(gn, t, hh, dm), head(qn, t, hh, dm));
                pc.clear();
                pc.extend(
                    pd[(nn * h + hh) * t * s..][..t * s]
                        .chunks(s)
                        .flat_map(|row| keys.iter().map(|&j| row[j])),
                );
                let pm = MatRef::new(&pc, t, sk);
                if needs[2] {
                    gemm(T::ONE, pm.t(), gh, T::ZERO, &mut dkv);
                    scatter(&dkv, &keys, hh, dm, dvn);
                }
                if !need_ds {
                    continue;
                }
                gather(kn, &keys, hh, dm, &mut kc);
                gather(vn, &keys, hh, dm, &mut vc);
                gemm(T::ONE, gh, MatRef::new(&vc, sk, d).t(), T::ZERO, &mut ds);
                for (row, prow) in ds.chunks_mut(sk).zip(pc.chunks(sk)) {
                    let mean = row.iter().zip(prow).fold(T::ZERO, |a, (&x, &p)| a + x * p);
                    for (x, &p) in row.iter_mut().zip(prow) {
                        *x = p * (*x - mean) * scale;
                    }
                }
                let dsm = MatRef::new(&ds, t, sk);
                if needs[0] {
                    let dqv = &mut dqn[hh * d..];
                    gemm_strided(T::ONE, dsm, MatRef::new(&kc, sk, d), T::ZERO, dqv, h * d);
                }
                if needs[1] {
                    gemm(T::ONE, dsm.t(), qh, T::ZERO, &mut dkv);
                    scatter(&dkv, &keys, hh, dm, dkn);
                }
            }
        });
    let wrap = |need: bool, v: Vec<T>, like: &Tensor| {
        need.then(|| Tensor::from_vec(v, like.shape().clone()))
            .transpose()
    };
    Ok(vec![
        wrap(needs[0], dq, q)?,
        wrap(needs[1], dk, k)?,
        wrap(needs[2], dv, v)?,
    ])
}
