//! CUDA launchers for kernels/layer_norm.cu.

use crate::backend::cuda::launcher::{empty, ptr, zeros};
use crate::backend::cuda::CudaDevice;
use crate::{Result, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

const OP: &str = "layer_norm";

/// Mirrors `LayerNormParams` in kernels/layer_norm.cu.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct LayerNormParams {
    rows: u64,
    d: u64,
    splits: u64,
    eps: f32,
    pad: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for LayerNormParams {}

impl LayerNormParams {
    pub(super) fn new(dev: &CudaDevice, rows: usize, d: usize, eps: f64) -> LayerNormParams {
        LayerNormParams {
            rows: rows as u64,
            d: d as u64,
            splits: dev.column_splits(d, rows),
            eps: eps as f32,
            pad: 0,
        }
    }
}

/// y and the per-row [mean; inv_std] ([2, rows]) for backward.
pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    p: &LayerNormParams,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let y = empty(dev, x.shape().clone())?;
    let stats = empty(dev, [2, p.rows as usize])?;
    let ptrs = [
        ptr(x, OP)?,
        ptr(w, OP)?,
        ptr(b, OP)?,
        ptr(&y, OP)?,
        ptr(&stats, OP)?,
    ];
    // SAFETY: LayerNormParams mirrors the kernel's struct and describes every buffer.
    unsafe {
        dev.launch(
            "ln_forward",
            dev.warp_rows_config(p.rows as usize),
            p,
            &ptrs,
        )?
    };
    Ok((y, stats))
}

/// (dx, dweight, dbias).
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    p: &LayerNormParams,
    g: &Tensor,
    x: &Tensor,
    w: &Tensor,
    stats: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dx = empty(dev, g.shape().clone())?;
    let ptrs = [
        ptr(g, OP)?,
        ptr(x, OP)?,
        ptr(w, OP)?,
        ptr(stats, OP)?,
        ptr(&dx, OP)?,
    ];
    // SAFETY: as in forward.
    unsafe {
        dev.launch(
            "ln_backward_dx",
            dev.warp_rows_config(p.rows as usize),
            p,
            &ptrs,
        )?
    };
    let d = p.d as usize;
    let vec_d = || -> Result<Tensor> { zeros(dev, [d]) };
    let (dw, db) = (vec_d()?, vec_d()?);
    let cfg = dev.column_reduce_config(d, p.splits);
    let ptrs = [
        ptr(g, OP)?,
        ptr(x, OP)?,
        ptr(stats, OP)?,
        ptr(&dw, OP)?,
        ptr(&db, OP)?,
    ];
    // SAFETY: as in forward; dw and db are zeroed for the atomics.
    unsafe { dev.launch("ln_backward_params", cfg, p, &ptrs)? };
    Ok((dx, dw, db))
}
