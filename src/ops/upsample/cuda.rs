//! CUDA launchers for kernels/upsample.cu.

use crate::backend::cuda::launcher::{empty, ptr};
use crate::backend::cuda::CudaDevice;
use crate::{Result, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

const OP: &str = "upsample_nearest2d";

/// Mirrors `UpsampleParams` in kernels/upsample.cu.
#[repr(C)]
pub(super) struct UpsampleParams {
    pub n: u64,
    pub h: u64,
    pub w: u64,
    pub c: u64,
    pub f: u64,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for UpsampleParams {}

pub(super) fn forward(dev: &Arc<CudaDevice>, p: &UpsampleParams, x: &Tensor) -> Result<Tensor> {
    let (ho, wo) = (p.h * p.f, p.w * p.f);
    let y = empty(dev, [p.n as usize, ho as usize, wo as usize, p.c as usize])?;
    // SAFETY: UpsampleParams mirrors the kernel's struct and describes x and y.
    unsafe {
        dev.launch(
            "upsample_nearest_forward",
            dev.elementwise_config(y.numel()),
            p,
            &[ptr(x, OP)?, ptr(&y, OP)?],
        )?
    };
    Ok(y)
}

pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    p: &UpsampleParams,
    g: &Tensor,
    x_shape: &crate::Shape,
) -> Result<Tensor> {
    let dx = empty(dev, x_shape.clone())?;
    // SAFETY: as in forward.
    unsafe {
        dev.launch(
            "upsample_nearest_backward",
            dev.elementwise_config(dx.numel()),
            p,
            &[ptr(g, OP)?, ptr(&dx, OP)?],
        )?
    };
    Ok(dx)
}
