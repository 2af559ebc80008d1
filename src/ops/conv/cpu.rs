//! The CPU reference of conv2d, generic over f32 and f64 (the gradient
//! checks): GEMM over patches. With M = N·P·Q output rows:
//! - forward: `Y[M, K] = patches[M, R·S·C] · Wᵀ`,
//! - dgrad:   `dpatches = dY · W`, scattered back into dX (col2im),
//! - wgrad:   `dW = dYᵀ · patches`,
//!
//! each per group.
//!
//! Memory bound: the patch (im2col) buffer never holds the whole batch. It
//! is built for at most [`Conv2dGeom::chunk_rows`] output rows at a time, so
//! one buffer holds at most `max(PATCH_BUDGET_ELEMS, R·S·C/groups)` elements
//! (2^21: 8 MiB of f32 for any layer with R·S·C/groups <= 2^21), and at most
//! one buffer per rayon worker is alive. The forward and dgrad use
//! cache-sized chunks ([`Conv2dGeom::cache_chunk_rows`]) instead: their GEMMs
//! have the patch width or K as inner dimension, so short chunks cost them
//! nothing, while wgrad's inner dimension is the chunk's rows and wants them
//! long. wgrad also keeps at most
//! `max(1, min(8, PATCH_BUDGET_ELEMS / (K·R·S·C/groups)))` partial weight
//! gradients. 1x1, stride-1, unpadded convolutions build no patch buffer at
//! all: an NHWC activation already is the [N·H·W, C] matrix they multiply.

use super::geom::{Conv2dGeom, PATCH_BUDGET_ELEMS};
use crate::backend::cpu::{gemm_strided, Float, MatRef};
use rayon::prelude::*;

/// wgrad sums per-range partial weight gradients in a fixed order, so the
/// result does not depend on the thread count or scheduling; at most this
/// many, fewer where the weight is large.
const WGRAD_PARTIALS: usize = 8;

/// Fewest rows in a wgrad chunk: each chunk's GEMM reads and writes the
/// whole K x R·S·C/groups accumulator once, against 2·rows multiply-adds
/// per accumulator element.
const WGRAD_MIN_ROWS: usize = 256;

/// Visits the patch of output row `row` (rows count (n, p, q) from the start
/// of `x`) for one group as spans of whole taps, in order:
/// `f(col, offset, len)` covers patch columns `col..col + len`, copied from
/// the input at `offset` (the tap's first channel of the group), or None
/// where they fall into the padding. Taps adjacent in both the patch and
/// the input (one group, no column dilation: a kernel row's taps are one
/// contiguous run of an NHWC input row) form one span, so a kernel row costs
/// one copy instead of S small ones; the stem's 3-channel taps gain most.
fn for_each_span(
    g: &Conv2dGeom,
    grp: usize,
    row: usize,
    mut f: impl FnMut(usize, Option<usize>, usize),
) {
    let [sh, sw] = g.prm.stride;
    let [dh, dw] = g.prm.dilation;
    let (pt, pl) = (g.prm.padding[0], g.prm.padding[2]);
    let cg = g.cg();
    let (n, p, q) = (row / (g.p * g.q), (row / g.q) % g.p, row % g.q);
    let merge = g.prm.groups == 1 && dw == 1;
    for r in 0..g.r {
        let col0 = r * g.s * cg;
        let Some(hi) = (p * sh + r * dh).checked_sub(pt).filter(|&v| v < g.h) else {
            f(col0, None, g.s * cg);
            continue;
        };
        let input = |wi: usize| ((n * g.h + hi) * g.w + wi) * g.c + grp * cg;
        if merge {
            // Valid taps: 0 <= q·sw + s - pl < W.
            let lo = pl.saturating_sub(q * sw).min(g.s);
            let hi_s = (g.w + pl).saturating_sub(q * sw).clamp(lo, g.s);
            if lo > 0 {
                f(col0, None, lo * cg);
            }
            if hi_s > lo {
                f(
                    col0 + lo * cg,
                    Some(input(q * sw + lo - pl)),
                    (hi_s - lo) * cg,
                );
            }
            if hi_s < g.s {
                f(col0 + hi_s * cg, None, (g.s - hi_s) * cg);
            }
        } else {
            for s in 0..g.s {
                let wi = (q * sw + s * dw).checked_sub(pl).filter(|&v| v < g.w);
                f(col0 + s * cg, wi.map(input), cg);
            }
        }
    }
}

/// Fills `buf` (rows x R·S·C/groups, columns ordered (r, s, c)) with the
/// patches of output rows `row0..` for group `grp`; taps in the padding are
/// 0. Every element is written, so `buf` may hold anything before.
fn im2col<T: Float>(g: &Conv2dGeom, x: &[T], grp: usize, row0: usize, buf: &mut [T]) {
    let cols = g.patch_cols();
    for (i, dst) in buf.chunks_exact_mut(cols).enumerate() {
        for_each_span(g, grp, row0 + i, |col, off, len| {
            let d = &mut dst[col..col + len];
            match off {
                Some(o) => d.copy_from_slice(&x[o..o + len]),
                None => d.fill(T::ZERO),
            }
        });
    }
}

/// The adjoint of [`im2col`]: adds each patch entry back onto the input
/// element it was copied from.
fn col2im<T: Float>(g: &Conv2dGeom, dx: &mut [T], grp: usize, row0: usize, buf: &[T]) {
    let cols = g.patch_cols();
    for (i, src) in buf.chunks_exact(cols).enumerate() {
        for_each_span(g, grp, row0 + i, |col, off, len| {
            if let Some(o) = off {
                let s = &src[col..col + len];
                dx[o..o + len].iter_mut().zip(s).for_each(|(d, &v)| *d += v);
            }
        });
    }
}

/// Group `grp`'s [rows, cols] column block of a row-major matrix with `ld`
/// columns, starting at row `row0`.
fn block<T>(
    data: &[T],
    row0: usize,
    rows: usize,
    ld: usize,
    grp: usize,
    cols: usize,
) -> MatRef<'_, T> {
    MatRef {
        data: &data[row0 * ld + grp * cols..],
        rows,
        cols,
        rs: ld,
        cs: 1,
    }
}

/// Group `grp`'s weights as a [K/groups, R·S·C/groups] row-major matrix.
fn weight_block<'a, T>(g: &Conv2dGeom, w: &'a [T], grp: usize) -> MatRef<'a, T> {
    let (kg, cols) = (g.kg(), g.patch_cols());
    MatRef::new(&w[grp * kg * cols..(grp + 1) * kg * cols], kg, cols)
}

/// `y[n, p, q, k]` from input `x` [n, h, w, c] and weight `w` [k, r, s, c/groups].
pub fn forward<T: Float>(g: &Conv2dGeom, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let (k, kg, cg, cols) = (g.k, g.kg(), g.cg(), g.patch_cols());
    let rows = g.n * g.p * g.q;
    let mut y = vec![T::ZERO; rows * k];
    if g.is_pointwise() {
        for grp in 0..g.prm.groups {
            let a = block(x, 0, rows, g.c, grp, cg);
            gemm_strided(
                T::ONE,
                a,
                weight_block(g, w, grp).t(),
                T::ZERO,
                &mut y[grp * kg..],
                k,
            );
        }
    } else {
        // Chunks sized to stay in cache: the GEMM packs the patches while
        // they are still there, and the many chunks are the parallel tasks.
        // Each task's buffer is reused across its chunks, unzeroed (im2col
        // writes every element).
        let chunk = g.cache_chunk_rows();
        y.par_chunks_mut(chunk * k)
            .enumerate()
            .for_each_init(Vec::new, |buf, (ci, yc)| {
                let len = yc.len() / k;
                buf.resize(len * cols, T::ZERO);
                let buf = &mut buf[..len * cols];
                for grp in 0..g.prm.groups {
                    im2col(g, x, grp, ci * chunk, buf);
                    let a = MatRef::new(buf, len, cols);
                    gemm_strided(
                        T::ONE,
                        a,
                        weight_block(g, w, grp).t(),
                        T::ZERO,
                        &mut yc[grp * kg..],
                        k,
                    );
                }
            });
    }
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(k) {
            row.iter_mut().zip(b).for_each(|(v, &bb)| *v += bb);
        }
    }
    y
}

/// Input gradient `dx` [n, h, w, c] from `dy` [n, p, q, k].
pub fn dgrad<T: Float>(g: &Conv2dGeom, dy: &[T], w: &[T]) -> Vec<T> {
    let (k, kg, cg, cols) = (g.k, g.kg(), g.cg(), g.patch_cols());
    let (pq, hwc) = (g.p * g.q, g.h * g.w * g.c);
    let mut dx = vec![T::ZERO; g.n * hwc];
    if g.is_pointwise() {
        for grp in 0..g.prm.groups {
            let a = block(dy, 0, g.n * pq, k, grp, kg);
            gemm_strided(
                T::ONE,
                a,
                weight_block(g, w, grp),
                T::ZERO,
                &mut dx[grp * cg..],
                g.c,
            );
        }
        return dx;
    }
    // col2im scatters across an image, so parallel tasks own whole images
    // (disjoint dx slices) and walk their rows in cache-sized chunks.
    let chunk = g.cache_chunk_rows();
    let images = (chunk / pq).max(1);
    // The GEMM overwrites the buffer (beta 0), so a task's buffer is reused
    // unzeroed across its images.
    dx.par_chunks_mut(images * hwc)
        .enumerate()
        .for_each_init(Vec::new, |buf, (bi, dxb)| {
            let rows = dxb.len() / hwc * pq;
            let dyb = &dy[bi * images * pq * k..];
            buf.resize(chunk.min(rows) * cols, T::ZERO);
            for row0 in (0..rows).step_by(chunk) {
                let len = chunk.min(rows - row0);
                let buf = &mut buf[..len * cols];
                for grp in 0..g.prm.groups {
                    let a = block(dyb, row0, len, k, grp, kg);
                    gemm_strided(T::ONE, a, weight_block(g, w, grp), T::ZERO, buf, cols);
                    col2im(g, dxb, grp, row0, buf);
                }
            }
        });
    dx
}

/// Weight gradient `dw` [k, r, s, c/groups] from input `x` and `dy`.
pub fn wgrad<T: Float>(g: &Conv2dGeom, x: &[T], dy: &[T]) -> Vec<T> {
    let (k, kg, cg, cols) = (g.k, g.kg(), g.cg(), g.patch_cols());
    let rows = g.n * g.p * g.q;
    let mut dw = vec![T::ZERO; k * cols];
    if g.is_pointwise() {
        for grp in 0..g.prm.groups {
            let (dyg, xg) = (
                block(dy, 0, rows, k, grp, kg),
                block(x, 0, rows, g.c, grp, cg),
            );
            gemm_strided(
                T::ONE,
                dyg.t(),
                xg,
                T::ZERO,
                &mut dw[grp * kg * cols..],
                cols,
            );
        }
        return dw;
    }
    // Cache-sized chunks, but long enough that the GEMM's inner dimension
    // (the chunk's rows) outweighs reading and writing the accumulator.
    let chunk = g.cache_chunk_rows().max(WGRAD_MIN_ROWS).min(g.chunk_rows());
    // The partition depends only on the shape, never on the thread count.
    let parts = rows
        .div_ceil(chunk)
        .min(WGRAD_PARTIALS)
        .min((PATCH_BUDGET_ELEMS / (k * cols)).max(1));
    let partials: Vec<Vec<T>> = (0..parts)
        .into_par_iter()
        .map(|pi| {
            let (start, end) = (pi * rows / parts, (pi + 1) * rows / parts);
            let mut acc = vec![T::ZERO; k * cols];
            let mut buf = vec![T::ZERO; chunk.min(end - start) * cols];
            for row0 in (start..end).step_by(chunk) {
                let len = chunk.min(end - row0);
                let buf = &mut buf[..len * cols];
                for grp in 0..g.prm.groups {
                    im2col(g, x, grp, row0, buf);
                    let dyg = block(dy, row0, len, k, grp, kg);
                    let patches = MatRef::new(buf, len, cols);
                    gemm_strided(
                        T::ONE,
                        dyg.t(),
                        patches,
                        T::ONE,
                        &mut acc[grp * kg * cols..],
                        cols,
                    );
                }
            }
            acc
        })
        .collect();
    for part in partials {
        dw.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    dw
}
