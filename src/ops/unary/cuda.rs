//! CUDA launcher for the backward of kernels/unary.cu (the forward is
//! tensor_math/unary/cuda.rs).

use crate::backend::cuda::launcher::{empty, ptr};
use crate::backend::cuda::CudaDevice;
use crate::tensor_math::unary::Unary;
use crate::{Result, Tensor};
use std::sync::Arc;

/// `saved` is the input or output the op saves; None for scale (the kernel
/// never reads it then, so g stands in).
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    op: Unary,
    saved: Option<&Tensor>,
    g: &Tensor,
) -> Result<Tensor> {
    let dx = empty(dev, g.shape().clone())?;
    let ptrs = [
        ptr(saved.unwrap_or(g), op.name())?,
        ptr(g, op.name())?,
        ptr(&dx, op.name())?,
    ];
    // SAFETY: UnaryParams mirrors the kernel's struct; the saved tensor (or
    // g), g and dx hold n elements.
    unsafe {
        dev.launch(
            "unary_backward",
            dev.elementwise_config(g.numel()),
            &op.params(g.numel()),
            &ptrs,
        )?
    };
    Ok(dx)
}
