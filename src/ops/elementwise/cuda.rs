//! CUDA launchers for kernels/elementwise.cu: the backward partials and
//! the broadcast copies (the forward is tensor_math/binary/cuda.rs).

use crate::backend::cuda::launcher::{empty, opt_ptr, ptr};
use crate::backend::cuda::CudaDevice;
use crate::tensor_math::binary::BinOp;
use crate::tensor_math::strided::cuda::binary_params;
use crate::{Result, Shape, Tensor};
use std::sync::Arc;

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
    let ptrs = [
        ptr(g, op.name())?,
        ptr(a, op.name())?,
        ptr(b, op.name())?,
        opt_ptr(ga.as_ref(), op.name())?,
        opt_ptr(gb.as_ref(), op.name())?,
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
    let ptrs = [ptr(s, op)?, opt_ptr(d, op)?, ptr(x, op)?, ptr(&y, op)?];
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
