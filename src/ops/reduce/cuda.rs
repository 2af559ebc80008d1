//! CUDA launcher for kernels/reduce.cu.

use crate::backend::cuda::launcher::ptr;
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::tensor_math::strided::cuda::reduce_params;
use crate::{Result, Shape, Tensor};
use std::sync::Arc;

/// `scale * x` summed down to `shape` (same rank as x or right-aligned like
/// broadcasting, 1 on the reduced axes): the adjoint of broadcasting.
pub(crate) fn sum_to_shape(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    x: &Tensor,
    shape: &Shape,
    scale: f32,
) -> Result<Tensor> {
    let full = x.shape();
    if shape == full && scale == 1.0 {
        return Ok(x.clone());
    }
    // Right-align `shape` to x's rank, as broadcasting does.
    let mut kept = vec![1; full.rank() - shape.rank().min(full.rank())];
    kept.extend_from_slice(shape.dims());
    let p = reduce_params(op, full, &Shape::new(kept), scale)?;
    let gy = dev.column_splits(p.out_n as usize, p.red_n as usize);
    let storage = if gy > 1 {
        CudaStorage::zeros(dev, shape.numel())?
    } else {
        CudaStorage::alloc(dev, shape.numel())?
    };
    let y = Tensor::from_cuda(storage, shape.clone())?;
    let cfg = dev.column_reduce_config(p.out_n as usize, gy);
    let ptrs = [ptr(x, op)?, ptr(&y, op)?];
    // SAFETY: ReduceParams mirrors the kernel's struct; offsets stay inside x and y.
    unsafe { dev.launch("reduce_sum", cfg, &p, &ptrs)? };
    Ok(y)
}
