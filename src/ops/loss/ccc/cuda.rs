//! CUDA launcher for kernels/ccc.cu: loss and gradient in one cooperative launch.

use crate::backend::cuda::launcher::{empty, opt_ptr, ptr};
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::{Error, Result, Shape, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::Arc;

/// `CCC_MAX_D` and `CCC_SUMS` in kernels/ccc.cu.
const MAX_D: usize = 8;
const SUMS: usize = 6;
const THREADS: u32 = 512;

/// Mirrors `CccParams` in kernels/ccc.cu.
#[repr(C)]
struct CccParams {
    n: u64,
    d: u64,
    invalid: f32,
    has_grad: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for CccParams {}

/// The scalar loss and, when `with_grad`, dloss/dpred (for a seed of 1).
pub(super) fn ccc_fused(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    pred: &Tensor,
    target: &Tensor,
    invalid: f32,
    with_grad: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (n, d) = (pred.dims()[0], pred.dims()[1]);
    if d > MAX_D {
        return Err(Error::arg(
            op,
            format!("the CUDA kernel handles at most {MAX_D} columns, found {d}"),
        ));
    }
    // All blocks must be resident for the grid barrier: at most what fits at
    // once, and no more than the float4 units (4 values) need.
    // Valence/arousal has its own build of the kernel (fewer registers).
    let kernel = if d == 2 {
        "ccc_loss_fused_d2"
    } else {
        "ccc_loss_fused"
    };
    let per_sm = dev.resident_blocks_per_sm(kernel, THREADS)?.max(1);
    let units = (n * d).div_ceil(4);
    let blocks = (units.div_ceil(THREADS as usize).max(1) as u32).min(per_sm * dev.sm_count());
    // One u32 barrier counter, then the per-block partial sums.
    let ws_len = 1 + blocks as usize * SUMS * MAX_D;
    let ws = CudaStorage::zeros(dev, ws_len)?;
    let loss = empty(dev, Shape::scalar())?;
    let grad = with_grad
        .then(|| empty(dev, pred.shape().clone()))
        .transpose()?;
    let p = CccParams {
        n: n as u64,
        d: d as u64,
        invalid,
        has_grad: with_grad as i32,
    };
    let ptrs = [
        ptr(pred, op)?,
        ptr(target, op)?,
        ptr(&loss, op)?,
        opt_ptr(grad.as_ref(), op)?,
        ws.ptr() + 4,
        ws.ptr(),
    ];
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: CccParams mirrors the kernel's struct; pred, target and grad
    // hold n*d values, the workspace the counter and blocks*SUMS*MAX_D partials.
    unsafe { dev.launch_cooperative(kernel, cfg, &p, &ptrs)? };
    Ok((loss, grad))
}
