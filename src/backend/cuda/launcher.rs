//! What every op's CUDA launcher (`src/ops/<op>/cuda.rs`) is built from,
//! beside [`CudaDevice::launch`] and the launch configs. The contract:
//!
//! - **Outputs.** [`empty`] is an uninitialised buffer (NaN while the device
//!   poisons, as the parity tests ask): the kernel must write every element.
//!   [`zeros`] is for kernels that add into their output (atomic sums,
//!   split-K), and only for those.
//! - **Pointers.** A kernel takes its `#[repr(C)]` params struct, then the
//!   device addresses of its buffers: [`ptr`] for a tensor (a host tensor is
//!   a "wrong backend" error naming the op), [`opt_ptr`] for an optional
//!   one (0, the null pointer, tells the kernel to skip that input or
//!   output), [`addr`] for an element inside one.
//! - **One GPU.** An op checks its inputs with
//!   [`same_device`](crate::tensor::same_device) before it dispatches; a
//!   launcher given a buffer that did not go through that check (a bf16
//!   operand, a gradient to add onto) checks it with [`same_gpu`].
//! - **Adding onto a gradient.** A backward rule whose kernel adds its
//!   input gradient onto the one the tape holds
//!   ([`Pending`](crate::autograd::Pending)) takes it through
//!   [`owned_onto`], which checks its dims and device and unshares it.
//! - **bf16 copies.** A kernel that writes its output's bf16 copy next to it
//!   ([`Tensor::with_bf16_copy`]) gets the room from [`bf16_copy_room`] and
//!   attaches it with [`with_bf16_room`].

use super::{CudaDevice, CudaStorage};
use crate::{Error, Result, Shape, Tensor};
use std::sync::Arc;

/// An uninitialised (poisoned in parity tests) f32 tensor on `dev`.
pub(crate) fn empty(dev: &Arc<CudaDevice>, shape: impl Into<Shape>) -> Result<Tensor> {
    let shape = shape.into();
    Tensor::from_cuda(CudaStorage::alloc(dev, shape.numel())?, shape)
}

/// An f32 tensor of zeros on `dev`, for a kernel that adds into it.
pub(crate) fn zeros(dev: &Arc<CudaDevice>, shape: impl Into<Shape>) -> Result<Tensor> {
    let shape = shape.into();
    Tensor::from_cuda(CudaStorage::zeros(dev, shape.numel())?, shape)
}

/// The device address of CUDA tensor `t`; a "wrong backend" error naming
/// `op` for a host tensor.
pub(crate) fn ptr(t: &Tensor, op: &'static str) -> Result<u64> {
    Ok(t.cuda(op)?.ptr())
}

/// [`ptr`] of `t` if given, else 0: the null pointer a kernel reads as
/// "no such input" or "do not write this output".
pub(crate) fn opt_ptr(t: Option<&Tensor>, op: &'static str) -> Result<u64> {
    t.map_or(Ok(0), |t| ptr(t, op))
}

/// The device address of f32 element `elems` of `t` (a slice of a larger
/// buffer, as one time step of a sequence).
pub(crate) fn addr(t: &Tensor, op: &'static str, elems: usize) -> Result<u64> {
    Ok(ptr(t, op)? + 4 * elems as u64)
}

/// An error naming `op` unless `other` is the GPU `dev`.
pub(crate) fn same_gpu(op: &'static str, dev: &CudaDevice, other: &CudaDevice) -> Result<()> {
    if other.ordinal() == dev.ordinal() {
        return Ok(());
    }
    Err(Error::Device {
        op,
        lhs: format!("cuda:{}", dev.ordinal()),
        rhs: format!("cuda:{}", other.ordinal()),
    })
}

/// The gradient `t` that a kernel will add onto in place (a rule's
/// [`Pending`](crate::autograd::Pending) gradient): checked to be `dims` on
/// `dev`, and given a buffer of its own, since another tensor may share it.
pub(crate) fn owned_onto(
    op: &'static str,
    dev: &CudaDevice,
    mut t: Tensor,
    dims: &[usize],
) -> Result<Tensor> {
    if t.dims() != dims {
        return Err(Error::shape(
            op,
            format!(
                "the gradient to add onto is {}, the input {dims:?}",
                t.shape()
            ),
        ));
    }
    same_gpu(op, dev, t.cuda_mut(op)?.device())?;
    Ok(t)
}

/// Room for the bf16 copy of an output of `shape` (see
/// [`Tensor::with_bf16_copy`]) when `want` and its last dim allows one
/// (a multiple of 8), else `None`: a kernel writes it next to the output.
pub(crate) fn bf16_copy_room(
    dev: &Arc<CudaDevice>,
    shape: &Shape,
    want: bool,
) -> Result<Option<CudaStorage>> {
    let fits = shape.dims().last().is_some_and(|&c| c % 8 == 0);
    (want && fits)
        .then(|| CudaStorage::alloc(dev, shape.numel().div_ceil(2)))
        .transpose()
}

/// `t` with the bf16 copy a kernel wrote into `room` attached, if any.
pub(crate) fn with_bf16_room(t: Tensor, room: Option<CudaStorage>) -> Result<Tensor> {
    match room {
        Some(copy) => t.with_bf16_copy(copy),
        None => Ok(t),
    }
}
