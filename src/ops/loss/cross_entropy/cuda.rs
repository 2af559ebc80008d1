//! CUDA launcher for kernels/cross_entropy.cu. Labels and class weights are
//! host data by this op's signature; they are copied to the device here,
//! explicitly, once per call (N + C floats).

use crate::backend::cuda::launcher::{empty, opt_ptr, ptr, zeros};
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::{Result, Shape, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

/// Mirrors `CrossEntropyParams` in kernels/cross_entropy.cu.
#[repr(C)]
struct CeParams {
    rows: u64,
    cols: u64,
    eps: f32,
    inv_w: f32,
    sum_w: f32,
    has_grad: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for CeParams {}

/// Loss and (when `with_grad`) the gradient for a seed of 1. `labels[i]` is
/// None for an ignored row; `inv_w` is 1 / (sum of w[y] over valid rows), or 0.
#[allow(clippy::too_many_arguments)]
pub(super) fn fused(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    logits: &Tensor,
    labels: &[Option<usize>],
    w: &[f64],
    eps: f64,
    inv_w: f64,
    with_grad: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (n, c) = (logits.dims()[0], logits.dims()[1]);
    let lab: Vec<f32> = labels
        .iter()
        .map(|y| y.map_or(-1.0, |y| y as f32))
        .collect();
    let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
    let lab = CudaStorage::from_host(dev, &lab)?;
    let wd = CudaStorage::from_host(dev, &wf)?;
    let loss = zeros(dev, Shape::scalar())?;
    let grad = with_grad
        .then(|| empty(dev, logits.shape().clone()))
        .transpose()?;
    let p = CeParams {
        rows: n as u64,
        cols: c as u64,
        eps: eps as f32,
        inv_w: inv_w as f32,
        sum_w: w.iter().sum::<f64>() as f32,
        has_grad: with_grad as i32,
    };
    let cfg = dev.warp_rows_config(n);
    let ptrs = [
        ptr(logits, op)?,
        lab.ptr(),
        wd.ptr(),
        ptr(&loss, op)?,
        opt_ptr(grad.as_ref(), op)?,
    ];
    // SAFETY: CeParams mirrors the kernel's struct; logits and grad hold
    // n*c values, labels n, weights c, loss 1.
    unsafe { dev.launch("cross_entropy_fused", cfg, &p, &ptrs)? };
    Ok((loss, grad))
}
