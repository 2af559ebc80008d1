//! concat and narrow of CUDA tensors: one block-copy launch per part
//! (kernels/copy.cu), the device twin of the host loops in `Tensor`.

use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::{Result, Shape, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

/// Mirrors `CopyParams` in kernels/copy.cu.
#[repr(C)]
struct CopyParams {
    outer: u64,
    w: u64,
    src_w: u64,
    src_off: u64,
    dst_w: u64,
    dst_off: u64,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for CopyParams {}

/// Copies `outer` rows of `w` elements from `src` (rows of `src_w`, from
/// `src_off`) into `dst` (rows of `dst_w`, from `dst_off`).
#[allow(clippy::too_many_arguments)]
fn copy(
    dev: &CudaDevice,
    src: &CudaStorage,
    dst: &CudaStorage,
    outer: usize,
    w: usize,
    (src_w, src_off): (usize, usize),
    (dst_w, dst_off): (usize, usize),
) -> Result<()> {
    let n = outer * w;
    if n == 0 {
        return Ok(());
    }
    let u = |v: usize| v as u64;
    let p = CopyParams {
        outer: u(outer),
        w: u(w),
        src_w: u(src_w),
        src_off: u(src_off),
        dst_w: u(dst_w),
        dst_off: u(dst_off),
    };
    // SAFETY: CopyParams mirrors the kernel's struct; the rows stay inside
    // both buffers by the callers' shape arithmetic.
    unsafe {
        dev.launch(
            "copy_blocks",
            dev.elementwise_config(n),
            &p,
            &[src.ptr(), dst.ptr()],
        )
    }
}

/// `t` narrowed to `start..start+len` along an axis that splits it into
/// (outer, n, inner).
pub(super) fn narrow(
    dev: &Arc<CudaDevice>,
    t: &Tensor,
    (outer, n, inner): (usize, usize, usize),
    start: usize,
    len: usize,
    dims: Vec<usize>,
) -> Result<Tensor> {
    let dst = CudaStorage::alloc(dev, outer * len * inner)?;
    copy(
        dev,
        t.cuda("narrow")?,
        &dst,
        outer,
        len * inner,
        (n * inner, start * inner),
        (len * inner, 0),
    )?;
    Tensor::from_cuda(dst, dims)
}

/// `parts` joined along an axis: each part is (outer, its length, inner).
pub(super) fn concat(
    dev: &Arc<CudaDevice>,
    parts: &[&Tensor],
    axis: usize,
    outer: usize,
    inner: usize,
    dims: Vec<usize>,
) -> Result<Tensor> {
    let shape = Shape::new(dims);
    let total = shape.dim(axis);
    let dst = CudaStorage::alloc(dev, shape.numel())?;
    let mut at = 0;
    for p in parts {
        let w = p.shape().dim(axis) * inner;
        copy(
            dev,
            p.cuda("concat")?,
            &dst,
            outer,
            w,
            (w, 0),
            (total * inner, at),
        )?;
        at += w;
    }
    Tensor::from_cuda(dst, shape)
}

/// Writes all of `src` into `dst` from element `at`: a buffer filled in
/// place (the initial state in the first slot of a recurrent op's states).
pub(crate) fn copy_into(dst: &Tensor, at: usize, src: &Tensor) -> Result<()> {
    let (d, s) = (dst.cuda("copy_into")?, src.cuda("copy_into")?);
    let n = src.numel();
    if at + n > dst.numel() {
        return Err(crate::Error::shape(
            "copy_into",
            format!("{} elements at {at} into {}", src.shape(), dst.shape()),
        ));
    }
    copy(d.device(), s, d, 1, n, (n, 0), (n, at))
}
