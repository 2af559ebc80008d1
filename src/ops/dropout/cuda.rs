//! CUDA launcher for kernels/dropout.cu (dropout and drop path): the same
//! mask as the host reference, from the same seed, computed where it is
//! applied.

use super::Mask;
use crate::backend::cuda::launcher::{empty, ptr};
use crate::backend::cuda::CudaDevice;
use crate::{Result, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

/// Mirrors `DropoutParams` in kernels/dropout.cu.
#[repr(C)]
struct DropoutParams {
    n: u64,
    seed: u64,
    group: u64,
    threshold: u32,
    scale: f32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for DropoutParams {}

/// `x` times the mask (forward on the input, backward on the gradient).
pub(super) fn apply(dev: &Arc<CudaDevice>, m: &Mask, x: &Tensor) -> Result<Tensor> {
    let y = empty(dev, x.shape().clone())?;
    let p = DropoutParams {
        n: x.numel() as u64,
        seed: m.seed,
        group: m.group,
        threshold: m.threshold,
        scale: m.scale as f32,
    };
    // SAFETY: DropoutParams mirrors the kernel's struct; x and y hold n f32.
    unsafe {
        dev.launch(
            "dropout_apply",
            dev.elementwise_config(x.numel()),
            &p,
            &[ptr(x, m.op)?, ptr(&y, m.op)?],
        )?
    };
    Ok(y)
}
