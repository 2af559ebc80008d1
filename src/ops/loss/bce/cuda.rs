//! CUDA launchers for kernels/bce.cu.

use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::ops::elementwise::cuda::{empty, ptr};
use crate::{Error, Result, Shape, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::Arc;

/// Mirrors `BceParams` in kernels/bce.cu.
#[repr(C)]
struct BceParams {
    n: u64,
    classes: u64,
    has_grad: i32,
    pad: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for BceParams {}

/// The valid count is summed in f32, exact up to 2^24.
const MAX_ELEMENTS: usize = 1 << 24;

/// Loss, and when `with_grad` the unnormalised gradient and the valid count
/// (its divisor) as a one-element device tensor.
pub(super) fn fused(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    logits: &Tensor,
    targets: &Tensor,
    pos_weight: &[f64],
    with_grad: bool,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    let n = logits.numel();
    if n > MAX_ELEMENTS {
        return Err(Error::arg(
            op,
            format!("the CUDA kernel counts in f32: at most {MAX_ELEMENTS} elements, found {n}"),
        ));
    }
    let pw: Vec<f32> = pos_weight.iter().map(|&v| v as f32).collect();
    let pw = CudaStorage::from_host(dev, &pw)?;
    let ws = CudaStorage::zeros(dev, 2)?;
    let loss = empty(dev, Shape::scalar())?;
    let count = empty(dev, Shape::scalar())?;
    let grad = with_grad
        .then(|| empty(dev, logits.shape().clone()))
        .transpose()?;
    let p = BceParams {
        n: n as u64,
        classes: pos_weight.len() as u64,
        has_grad: with_grad as i32,
        pad: 0,
    };
    let ptrs = [
        ptr(logits, op)?,
        ptr(targets, op)?,
        pw.ptr(),
        grad.as_ref().map_or(Ok(0), |g| ptr(g, op))?,
        ws.ptr(),
    ];
    // SAFETY: BceParams mirrors the kernel's struct; logits, targets and grad
    // hold n values, pos_weight `classes`, the workspace 2.
    unsafe { dev.launch("bce_partial", dev.elementwise_config(n), &p, &ptrs)? };
    let one = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: as above; loss and count hold one value each.
    unsafe {
        dev.launch(
            "bce_finalize",
            one,
            &p,
            &[ws.ptr(), ptr(&loss, op)?, ptr(&count, op)?],
        )?
    };
    Ok((loss, grad.map(|g| (g, count))))
}
