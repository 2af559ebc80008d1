//! CUDA launcher for kernels/softmax.cu.

use crate::backend::cuda::launcher::{empty, ptr};
use crate::backend::cuda::CudaDevice;
use crate::{Result, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

/// Mirrors `SoftmaxParams` in kernels/softmax.cu.
#[repr(C)]
struct SoftmaxParams {
    rows: u64,
    cols: u64,
    log: i32,
    pad: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for SoftmaxParams {}

fn launch(
    dev: &Arc<CudaDevice>,
    kernel: &str,
    log: bool,
    like: &Tensor,
    ins: &[&Tensor],
) -> Result<Tensor> {
    let op = if log { "log_softmax" } else { "softmax" };
    let cols = *like.dims().last().unwrap_or(&1);
    let rows = like.numel() / cols.max(1);
    let p = SoftmaxParams {
        rows: rows as u64,
        cols: cols as u64,
        log: log as i32,
        pad: 0,
    };
    let out = empty(dev, like.shape().clone())?;
    let mut ptrs = ins.iter().map(|t| ptr(t, op)).collect::<Result<Vec<_>>>()?;
    ptrs.push(ptr(&out, op)?);
    let cfg = dev.warp_rows_config(rows);
    // SAFETY: SoftmaxParams mirrors the kernel's struct; every buffer holds rows*cols.
    unsafe { dev.launch(kernel, cfg, &p, &ptrs)? };
    Ok(out)
}

pub(super) fn forward(dev: &Arc<CudaDevice>, x: &Tensor, log: bool) -> Result<Tensor> {
    launch(dev, "softmax_forward", log, x, &[x])
}

/// From the saved output `y` and the output gradient `g`.
pub(super) fn backward(dev: &Arc<CudaDevice>, y: &Tensor, g: &Tensor, log: bool) -> Result<Tensor> {
    launch(dev, "softmax_backward", log, g, &[y, g])
}
