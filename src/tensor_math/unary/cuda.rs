//! CUDA launcher for the forward of kernels/unary.cu, and the parameters
//! its backward shares.

use super::Unary;
use crate::backend::cuda::launcher::{empty, ptr};
use crate::backend::cuda::CudaDevice;
use crate::{Result, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

/// Mirrors `UnaryParams` in kernels/unary.cu.
#[repr(C)]
pub(crate) struct UnaryParams {
    n: u64,
    op: i32,
    alpha: f32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for UnaryParams {}

impl Unary {
    pub(crate) fn params(self, n: usize) -> UnaryParams {
        let (op, alpha) = match self {
            Unary::Scale(s) => (0, s),
            Unary::Relu => (1, 0.0),
            Unary::LeakyRelu(a) => (2, a),
            Unary::Sigmoid => (3, 0.0),
            Unary::Tanh => (4, 0.0),
            Unary::Exp => (5, 0.0),
            Unary::Log => (6, 0.0),
            Unary::Gelu => (7, 0.0),
            Unary::GeluTanh => (8, 0.0),
        };
        UnaryParams {
            n: n as u64,
            op,
            alpha: alpha as f32,
        }
    }
}

pub(super) fn forward(dev: &Arc<CudaDevice>, op: Unary, x: &Tensor) -> Result<Tensor> {
    let y = empty(dev, x.shape().clone())?;
    let ptrs = [ptr(x, op.name())?, ptr(&y, op.name())?];
    // SAFETY: UnaryParams mirrors the kernel's struct; x and y hold n elements.
    unsafe {
        dev.launch(
            "unary_forward",
            dev.elementwise_config(x.numel()),
            &op.params(x.numel()),
            &ptrs,
        )?
    };
    Ok(y)
}
