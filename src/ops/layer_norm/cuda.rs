//! CUDA launchers for kernels/layer_norm.cu.

use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::ops::elementwise::cuda::{empty, ptr};
use crate::{Result, Shape, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::Arc;

const OP: &str = "layer_norm";
/// `LN_WARPS`: rows per block, one warp each.
const ROWS_PER_BLOCK: usize = 8;

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
        let want = (dev.sm_count() as u64 * 8).div_ceil(d.div_ceil(32) as u64);
        LayerNormParams {
            rows: rows as u64,
            d: d as u64,
            splits: want.min((rows as u64).div_ceil(8 * 16)).clamp(1, 65_535),
            eps: eps as f32,
            pad: 0,
        }
    }

    fn row_config(&self, dev: &CudaDevice) -> LaunchConfig {
        let blocks = (self.rows as usize)
            .div_ceil(ROWS_PER_BLOCK)
            .clamp(1, dev.sm_count() as usize * 32);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (32 * ROWS_PER_BLOCK as u32, 1, 1),
            shared_mem_bytes: 0,
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
    unsafe { dev.launch("ln_forward", p.row_config(dev), p, &ptrs)? };
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
    unsafe { dev.launch("ln_backward_dx", p.row_config(dev), p, &ptrs)? };
    let d = p.d as usize;
    let vec_d = || -> Result<Tensor> {
        Tensor::from_cuda(CudaStorage::zeros(dev, d)?, Shape::new(vec![d]))
    };
    let (dw, db) = (vec_d()?, vec_d()?);
    let cfg = LaunchConfig {
        grid_dim: (d.div_ceil(32) as u32, p.splits as u32, 1),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
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
