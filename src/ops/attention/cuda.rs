//! CUDA path of the attention op (kernels/attention.cu): masked softmax of
//! the scaled scores per (sample, head, query) row, then weighted sums for
//! the output; backward is the row-wise softmax backward and three more
//! weighted sums (dq, dk, dv).

use super::Dims;
use crate::backend::cuda::launcher::{empty, ptr};
use crate::backend::cuda::CudaDevice;
use crate::ops::recurrent::cuda::mask_on;
use crate::{Result, Shape, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

const OP: &str = "attention";

/// Mirrors `AttnParams` in kernels/attention.cu.
#[repr(C)]
struct AttnParams {
    n: u64,
    t: u64,
    s: u64,
    h: u64,
    d: u64,
    scale: f32,
    transposed: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for AttnParams {}

fn params(dm: &Dims, transposed: bool) -> AttnParams {
    AttnParams {
        n: dm.n as u64,
        t: dm.t as u64,
        s: dm.s as u64,
        h: dm.h as u64,
        d: dm.d as u64,
        scale: (1.0 / (dm.d as f64).sqrt()) as f32,
        transposed: transposed as i32,
    }
}

/// What backward reads: the attention weights [N, H, T, S] and the mask flags.
pub(super) struct Saved {
    probs: Tensor,
    mask: Tensor,
}

/// A warp-per-row kernel over the N·H·T (sample, head, query) rows.
fn launch_rows(dev: &Arc<CudaDevice>, kernel: &str, dm: &Dims, ptrs: &[u64]) -> Result<()> {
    let cfg = dev.warp_rows_config(dm.n * dm.h * dm.t);
    // SAFETY: AttnParams mirrors the kernel's struct; the callers pass the
    // kernel's pointers, each buffer as large as dm says.
    unsafe { dev.launch(kernel, cfg, &params(dm, false), ptrs) }
}

/// `attention_mix`: sums of `x` rows weighted by `w` [N, H, T, S], over keys
/// into a [N, T, H, D] result, or (`transposed`) over queries into [N, S, H, D].
fn mix(
    dev: &Arc<CudaDevice>,
    dm: &Dims,
    w: &Tensor,
    x: &Tensor,
    mask: &Tensor,
    transposed: bool,
) -> Result<Tensor> {
    let rows = if transposed { dm.s } else { dm.t };
    let out = empty(dev, Shape::new(vec![dm.n, rows, dm.h, dm.d]))?;
    let ptrs = [ptr(w, OP)?, ptr(x, OP)?, ptr(mask, OP)?, ptr(&out, OP)?];
    let cfg = dev.elementwise_config(out.numel());
    // SAFETY: AttnParams mirrors the kernel's struct; w is [N, H, T, S], x
    // [N, S or T, H, D] as `transposed` says, out new.
    unsafe { dev.launch("attention_mix", cfg, &params(dm, transposed), &ptrs)? };
    Ok(out)
}

/// The output [N, T, H, D] and what backward needs.
pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    [q, k, v]: [&Tensor; 3],
    mask: &[bool],
    dm: &Dims,
) -> Result<(Tensor, Saved)> {
    let mask = mask_on(dev, mask)?;
    let probs = empty(dev, [dm.n, dm.h, dm.t, dm.s])?;
    let ptrs = [ptr(q, OP)?, ptr(k, OP)?, ptr(&mask, OP)?, ptr(&probs, OP)?];
    launch_rows(dev, "attention_probs", dm, &ptrs)?;
    let y = mix(dev, dm, &probs, v, &mask, false)?;
    Ok((y, Saved { probs, mask }))
}

/// Gradients of (q, k, v) from the output gradient g.
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    g: &Tensor,
    [q, k, v]: [&Tensor; 3],
    s: &Saved,
    dm: &Dims,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let ds = empty(dev, [dm.n, dm.h, dm.t, dm.s])?;
    let ptrs = [
        ptr(g, OP)?,
        ptr(v, OP)?,
        ptr(&s.mask, OP)?,
        ptr(&s.probs, OP)?,
        ptr(&ds, OP)?,
    ];
    launch_rows(dev, "attention_grad_scores", dm, &ptrs)?;
    Ok(vec![
        needs[0]
            .then(|| mix(dev, dm, &ds, k, &s.mask, false))
            .transpose()?,
        needs[1]
            .then(|| mix(dev, dm, &ds, q, &s.mask, true))
            .transpose()?,
        needs[2]
            .then(|| mix(dev, dm, &s.probs, g, &s.mask, true))
            .transpose()?,
    ])
}
