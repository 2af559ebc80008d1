//! CUDA launchers for kernels/batch_norm.cu.

use super::BatchNormParams;
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::ops::elementwise::cuda::{empty, ptr};
use crate::{Result, Shape, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::Arc;

const OP: &str = "batch_norm2d";

/// Mirrors `BnParams` in kernels/batch_norm.cu.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct BnParams {
    m: u64,
    c: u64,
    splits: u64,
    eps: f32,
    momentum: f32,
    training: i32,
    pad: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for BnParams {}

impl BnParams {
    pub(super) fn new(dev: &CudaDevice, m: usize, c: usize, prm: &BatchNormParams) -> BnParams {
        BnParams {
            m: m as u64,
            c: c as u64,
            splits: dev.column_splits(c, m),
            eps: prm.eps as f32,
            momentum: prm.momentum as f32,
            training: prm.training as i32,
            pad: 0,
        }
    }
}

/// y and the per-channel [mean; inv_std] ([2, C]) that backward reuses;
/// in training the running estimates are updated in place.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    p: &BnParams,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &mut Tensor,
    running_var: &mut Tensor,
) -> Result<(Tensor, Tensor)> {
    let c = p.c as usize;
    let stats = empty(dev, [2, c])?;
    let ws = CudaStorage::alloc(dev, p.splits as usize * c * 3)?;
    if p.training != 0 {
        // SAFETY: BnParams mirrors the kernel's struct; ws holds splits*c*3.
        unsafe {
            dev.launch(
                "bn_stats",
                dev.column_reduce_config(p.c as usize, p.splits),
                p,
                &[ptr(x, OP)?, ws.ptr()],
            )?
        };
    }
    let (rm, rv) = (
        running_mean.cuda_mut(OP)?.ptr(),
        running_var.cuda_mut(OP)?.ptr(),
    );
    let per_channel = LaunchConfig {
        grid_dim: (c.div_ceil(256) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the running buffers and stats hold c and 2c values.
    unsafe {
        dev.launch(
            "bn_finalize",
            per_channel,
            p,
            &[ws.ptr(), rm, rv, ptr(&stats, OP)?],
        )?
    };
    let y = empty(dev, x.shape().clone())?;
    let ptrs = [
        ptr(x, OP)?,
        ptr(&stats, OP)?,
        ptr(gamma, OP)?,
        ptr(beta, OP)?,
        ptr(&y, OP)?,
    ];
    // SAFETY: x and y hold m*c values; stats, gamma and beta per channel.
    unsafe { dev.launch("bn_apply", dev.elementwise_config(x.numel()), p, &ptrs)? };
    Ok((y, stats))
}

/// (dx, dweight, dbias).
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    p: &BnParams,
    g: &Tensor,
    x: &Tensor,
    stats: &Tensor,
    gamma: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = p.c as usize;
    let cs = Shape::new(vec![c]);
    let dw = Tensor::from_cuda(CudaStorage::zeros(dev, c)?, cs.clone())?;
    let db = Tensor::from_cuda(CudaStorage::zeros(dev, c)?, cs)?;
    let ptrs = [
        ptr(g, OP)?,
        ptr(x, OP)?,
        ptr(stats, OP)?,
        ptr(&dw, OP)?,
        ptr(&db, OP)?,
    ];
    // SAFETY: BnParams mirrors the kernel's struct; g and x hold m*c values.
    unsafe {
        dev.launch(
            "bn_backward_reduce",
            dev.column_reduce_config(p.c as usize, p.splits),
            p,
            &ptrs,
        )?
    };
    let dx = empty(dev, g.shape().clone())?;
    let ptrs = [
        ptr(g, OP)?,
        ptr(x, OP)?,
        ptr(stats, OP)?,
        ptr(gamma, OP)?,
        ptr(&dw, OP)?,
        ptr(&db, OP)?,
        ptr(&dx, OP)?,
    ];
    // SAFETY: as above; dx holds m*c values.
    unsafe {
        dev.launch(
            "bn_backward_dx",
            dev.elementwise_config(g.numel()),
            p,
            &ptrs,
        )?
    };
    Ok((dx, dw, db))
}
