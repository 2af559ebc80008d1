//! CUDA launcher for the forward of kernels/elementwise.cu.

use super::BinOp;
use crate::backend::cuda::launcher::{empty, ptr};
use crate::backend::cuda::CudaDevice;
use crate::tensor_math::strided::cuda::binary_params;
use crate::{Result, Shape, Tensor};
use std::sync::Arc;

impl BinOp {
    /// `BinOp` in kernels/elementwise.cu.
    pub(crate) fn code(self) -> i32 {
        match self {
            BinOp::Add => 0,
            BinOp::Sub => 1,
            BinOp::Mul => 2,
            BinOp::Div => 3,
        }
    }
}

pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    op: BinOp,
    a: &Tensor,
    b: &Tensor,
    out: &Shape,
) -> Result<Tensor> {
    let mut p = binary_params(op.name(), out, a.shape(), b.shape())?;
    p.op = op.code();
    let y = empty(dev, out.clone())?;
    let ptrs = [ptr(a, op.name())?, ptr(b, op.name())?, ptr(&y, op.name())?];
    // SAFETY: BinaryParams mirrors the kernel's struct; the offsets stay inside a, b and y.
    unsafe {
        dev.launch(
            "binary_forward",
            dev.elementwise_config(out.numel()),
            &p,
            &ptrs,
        )?
    };
    Ok(y)
}
