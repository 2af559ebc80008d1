//! CUDA launchers for kernels/batch_norm.cu (batch norm and batch norm +
//! ReLU): row-parallel passes (`RowsLayout`) with per-block-row partials
//! merged in double by one block per channel.

use super::BatchNormParams;
use crate::backend::cuda::launcher::{bf16_copy_room, empty, ptr, with_bf16_room};
use crate::backend::cuda::{block_per_channel_config, CudaDevice, CudaStorage, RowsLayout};
use crate::{Result, Shape, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

/// Mirrors `BnParams` in kernels/batch_norm.cu.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct BnParams {
    m: u64,
    c: u64,
    chunk: u64,
    splits: u64,
    eps: f32,
    momentum: f32,
    training: i32,
    relu: i32,
    vec: i32,
    reverse: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for BnParams {}

impl BnParams {
    pub(super) fn new(m: usize, c: usize, prm: &BatchNormParams, relu: bool) -> BnParams {
        BnParams {
            m: m as u64,
            c: c as u64,
            chunk: 0,
            splits: 0,
            eps: prm.eps as f32,
            momentum: prm.momentum as f32,
            training: prm.training as i32,
            relu: relu as i32,
            vec: 1,
            reverse: 0,
        }
    }

    /// These parameters for a launch of `kernel` in its own layout; `reverse`
    /// for a pass that follows a reduction over the same data (L2 reuse).
    fn laid_out(
        &self,
        dev: &CudaDevice,
        kernel: &str,
        reverse: bool,
    ) -> Result<(BnParams, RowsLayout)> {
        let l = dev.rows_layout(kernel, self.m as usize, self.c as usize)?;
        let p = BnParams {
            chunk: l.chunk,
            splits: l.splits,
            vec: l.vec as i32,
            reverse: reverse as i32,
            ..*self
        };
        Ok((p, l))
    }
}

const OP: &str = "batch_norm2d";

/// y and the per-channel [mean; inv_std] ([2, C]) that backward reuses;
/// in training the running estimates are updated in place. `bf16_copy`:
/// y also carries its bf16 copy ([`Tensor::with_bf16_copy`]) where C allows.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    p: &BnParams,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &mut Tensor,
    running_var: &mut Tensor,
    bf16_copy: bool,
) -> Result<(Tensor, Tensor)> {
    let c = p.c as usize;
    let stats = empty(dev, [2, c])?;
    let (ps, ls) = p.laid_out(dev, "bn_stats", false)?;
    let ws = CudaStorage::alloc(dev, ls.splits as usize * c * 3)?;
    if p.training != 0 {
        // SAFETY: BnParams mirrors the kernel's struct; ws holds splits*c*3.
        unsafe { dev.launch("bn_stats", ls.config(), &ps, &[ptr(x, OP)?, ws.ptr()])? };
    }
    let (rm, rv) = (
        running_mean.cuda_mut(OP)?.ptr(),
        running_var.cuda_mut(OP)?.ptr(),
    );
    // SAFETY: the running buffers and stats hold c and 2c values, ws the stats' partials.
    unsafe {
        dev.launch(
            "bn_finalize",
            block_per_channel_config(c),
            &ps,
            &[ws.ptr(), rm, rv, ptr(&stats, OP)?],
        )?
    };
    let y = empty(dev, x.shape().clone())?;
    let y16 = bf16_copy_room(dev, x.shape(), bf16_copy)?;
    let (pa, la) = p.laid_out(dev, "bn_apply", p.training != 0)?;
    let ptrs = [
        ptr(x, OP)?,
        ptr(&stats, OP)?,
        ptr(gamma, OP)?,
        ptr(beta, OP)?,
        ptr(&y, OP)?,
        y16.as_ref().map_or(0, |s| s.ptr()),
    ];
    // SAFETY: x and y hold m*c values, y16 (or null) m*c bf16; stats, gamma
    // and beta per channel.
    unsafe { dev.launch("bn_apply", la.config(), &pa, &ptrs)? };
    Ok((with_bf16_room(y, y16)?, stats))
}

/// (dx, dweight, dbias); with `p.relu` the incoming gradient is first
/// masked where the forward's output was zero. `bf16_copy`: dx also
/// carries its bf16 copy where C allows.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    p: &BnParams,
    g: &Tensor,
    x: &Tensor,
    stats: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    bf16_copy: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = p.c as usize;
    let (pr, lr) = p.laid_out(dev, "bn_backward_reduce", false)?;
    let ws = CudaStorage::alloc(dev, lr.splits as usize * c * 2)?;
    let (gp, xp, sp, gmp, bp) = (
        ptr(g, OP)?,
        ptr(x, OP)?,
        ptr(stats, OP)?,
        ptr(gamma, OP)?,
        ptr(beta, OP)?,
    );
    // SAFETY: BnParams mirrors the kernel's struct; g and x hold m*c values,
    // ws splits*c*2.
    unsafe {
        dev.launch(
            "bn_backward_reduce",
            lr.config(),
            &pr,
            &[gp, xp, sp, gmp, bp, ws.ptr()],
        )?
    };
    let dw = empty(dev, Shape::new(vec![c]))?;
    let db = empty(dev, Shape::new(vec![c]))?;
    // SAFETY: as above; dw and db hold c values.
    unsafe {
        dev.launch(
            "bn_backward_finalize",
            block_per_channel_config(c),
            &pr,
            &[ws.ptr(), ptr(&dw, OP)?, ptr(&db, OP)?],
        )?
    };
    let dx = empty(dev, g.shape().clone())?;
    let dx16 = bf16_copy_room(dev, g.shape(), bf16_copy)?;
    let (pd, ld) = p.laid_out(dev, "bn_backward_dx", true)?;
    let ptrs = [
        gp,
        xp,
        sp,
        gmp,
        bp,
        ptr(&dw, OP)?,
        ptr(&db, OP)?,
        ptr(&dx, OP)?,
        dx16.as_ref().map_or(0, |s| s.ptr()),
    ];
    // SAFETY: as above; dx holds m*c values, dx16 (or null) m*c bf16.
    unsafe { dev.launch("bn_backward_dx", ld.config(), &pd, &ptrs)? };
    Ok((with_bf16_room(dx, dx16)?, dw, db))
}
