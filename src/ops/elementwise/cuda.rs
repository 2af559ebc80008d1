//! CUDA launchers for kernels/elementwise.cu.

use super::BinOp;
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::ops::strided::cuda::binary_params;
use crate::{Error, Result, Shape, Tensor};
use std::sync::Arc;

impl BinOp {
    /// `BinOp` in kernels/elementwise.cu.
    fn code(self) -> i32 {
        match self {
            BinOp::Add => 0,
            BinOp::Sub => 1,
            BinOp::Mul => 2,
            BinOp::Div => 3,
        }
    }
}

/// An uninitialised (poisoned in parity tests) f32 tensor on `dev`.
pub(crate) fn empty(dev: &Arc<CudaDevice>, shape: impl Into<Shape>) -> Result<Tensor> {
    let shape = shape.into();
    Tensor::from_cuda(CudaStorage::alloc(dev, shape.numel())?, shape)
}

pub(crate) fn ptr(t: &Tensor, op: &'static str) -> Result<u64> {
    Ok(t.cuda(op)?.ptr())
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

/// The gradient `t` that a kernel will add onto in place (a rule's
/// [`crate::autograd::Pending`] gradient): checked to be `dims` on `dev`,
/// and given a buffer of its own, since another tensor may share it.
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

/// `t` with the bf16 copy a kernel wrote into `room` attached, if any.
pub(crate) fn with_bf16_room(t: Tensor, room: Option<CudaStorage>) -> Result<Tensor> {
    match room {
        Some(copy) => t.with_bf16_copy(copy),
        None => Ok(t),
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

/// Gradients of a and b (where needed), summed down to their shapes.
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    op: BinOp,
    g: &Tensor,
    a: &Tensor,
    b: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let out = g.shape();
    let mut p = binary_params(op.name(), out, a.shape(), b.shape())?;
    p.op = op.code();
    let full = |need: bool| -> Result<Option<Tensor>> {
        need.then(|| empty(dev, out.clone())).transpose()
    };
    let (ga, gb) = (full(needs[0])?, full(needs[1])?);
    let opt_ptr = |t: &Option<Tensor>| t.as_ref().map_or(Ok(0), |t| ptr(t, op.name()));
    let ptrs = [
        ptr(g, op.name())?,
        ptr(a, op.name())?,
        ptr(b, op.name())?,
        opt_ptr(&ga)?,
        opt_ptr(&gb)?,
    ];
    // SAFETY: as in forward; a null gradient pointer tells the kernel to skip it.
    unsafe {
        dev.launch(
            "binary_backward",
            dev.elementwise_config(out.numel()),
            &p,
            &ptrs,
        )?
    };
    let down = |g: Option<Tensor>, shape: &Shape| -> Result<Option<Tensor>> {
        g.map(|g| crate::ops::reduce::cuda::sum_to_shape(dev, op.name(), &g, shape, 1.0))
            .transpose()
    };
    Ok(vec![down(ga, a.shape())?, down(gb, b.shape())?])
}

/// `alpha * x` broadcast from `x`'s shape up to `out` (reduce's backward).
pub(crate) fn broadcast_scale(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    x: &Tensor,
    out: &Shape,
    alpha: f32,
) -> Result<Tensor> {
    let mut p = binary_params(op, out, x.shape(), x.shape())?;
    p.alpha = alpha;
    let y = empty(dev, out.clone())?;
    let ptrs = [ptr(x, op)?, ptr(&y, op)?];
    // SAFETY: BinaryParams mirrors the kernel's struct; offsets stay inside x.
    unsafe {
        dev.launch(
            "broadcast_scale",
            dev.elementwise_config(out.numel()),
            &p,
            &ptrs,
        )?
    };
    Ok(y)
}

/// `x * s / d` for one-element device tensors `s` and `d` (a loss gradient
/// times its backward seed, over a count the GPU computed), without reading
/// either back to the host.
pub(crate) fn scale_by_device_scalar(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    x: &Tensor,
    s: &Tensor,
    d: Option<&Tensor>,
) -> Result<Tensor> {
    #[repr(C)]
    struct ScaleParams {
        n: u64,
    }
    // SAFETY: mirrors ScaleParams in kernels/elementwise.cu.
    unsafe impl cudarc::driver::DeviceRepr for ScaleParams {}
    let y = empty(dev, x.shape().clone())?;
    let p = ScaleParams {
        n: x.numel() as u64,
    };
    let ptrs = [
        ptr(s, op)?,
        d.map_or(Ok(0), |d| ptr(d, op))?,
        ptr(x, op)?,
        ptr(&y, op)?,
    ];
    // SAFETY: s and d have one element; x and y have n.
    unsafe {
        dev.launch(
            "scale_by_device_scalar",
            dev.elementwise_config(x.numel()),
            &p,
            &ptrs,
        )?
    };
    Ok(y)
}
