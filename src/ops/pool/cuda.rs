//! CUDA launchers for kernels/pool.cu.

use super::{Geom, Kind};
use crate::backend::cuda::launcher::{empty, owned_onto, ptr, zeros};
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::{Error, Result, Shape, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

/// Mirrors `PoolParams` in kernels/pool.cu.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct PoolParams {
    n: i32,
    h: i32,
    w: i32,
    c: i32,
    p: i32,
    q: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    count_include_pad: i32,
    is_max: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for PoolParams {}

impl PoolParams {
    pub(super) fn new(op: &'static str, g: &Geom, kind: Kind) -> Result<PoolParams> {
        // Dims are 32-bit in the kernel; the argmax is a u32 input index.
        if g.n * g.h * g.w * g.c > u32::MAX as usize {
            return Err(Error::shape(
                op,
                "the CUDA kernel handles inputs below 2^32 elements",
            ));
        }
        let i = |v: usize| v as i32;
        let prm = g.prm;
        Ok(PoolParams {
            n: i(g.n),
            h: i(g.h),
            w: i(g.w),
            c: i(g.c),
            p: i(g.p),
            q: i(g.q),
            kh: i(prm.kernel[0]),
            kw: i(prm.kernel[1]),
            sh: i(prm.stride[0]),
            sw: i(prm.stride[1]),
            ph: i(prm.padding[0]),
            pw: i(prm.padding[1]),
            count_include_pad: prm.count_include_pad as i32,
            is_max: matches!(kind, Kind::Max) as i32,
        })
    }

    fn outputs(&self) -> usize {
        (self.n as usize) * (self.p as usize) * (self.q as usize) * (self.c as usize)
    }
}

/// y (shaped `out`), and for max pooling the argmax buffer backward needs.
pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    p: &PoolParams,
    x: &Tensor,
    out: Shape,
) -> Result<(Tensor, Option<CudaStorage>)> {
    let y = empty(dev, out)?;
    let argmax = if p.is_max != 0 {
        Some(CudaStorage::alloc(dev, p.outputs())?)
    } else {
        None
    };
    let ptrs = [
        ptr(x, op)?,
        ptr(&y, op)?,
        argmax.as_ref().map_or(0, CudaStorage::ptr),
    ];
    // SAFETY: PoolParams mirrors the kernel's struct and describes x and y;
    // argmax (u32, stored in an f32-sized buffer) holds one entry per output.
    unsafe {
        dev.launch(
            "pool_forward",
            dev.elementwise_config(p.outputs()),
            p,
            &ptrs,
        )?
    };
    Ok((y, argmax))
}

pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    p: &PoolParams,
    g: &Tensor,
    argmax: Option<&CudaStorage>,
    in_shape: &Shape,
) -> Result<Tensor> {
    let dx = zeros(dev, in_shape.clone())?;
    let ptrs = [
        ptr(g, op)?,
        argmax.map_or(0, CudaStorage::ptr),
        ptr(&dx, op)?,
    ];
    // SAFETY: as in forward; dx is zeroed for the scatter-add.
    unsafe {
        dev.launch(
            "pool_backward",
            dev.elementwise_config(p.outputs()),
            p,
            &ptrs,
        )?
    };
    Ok(dx)
}

/// [samples, rows per sample, channels] of an [N, H, W, C] input.
fn sample_rows(shape: &Shape) -> [usize; 3] {
    let d = shape.dims();
    [d[0], d[1] * d[2], d[3]]
}

/// Global average pooling (the SE squeeze), [N, H, W, C] -> [N, C], by the
/// row-parallel `gap_forward` instead of one thread per output.
pub(super) fn global_avg_forward(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    x: &Tensor,
) -> Result<Tensor> {
    let [n, hw, c] = sample_rows(x.shape());
    let scale = 1.0 / hw.max(1) as f32;
    let (p, cfg) = dev.per_sample_rows(op, "gap_forward", [n, hw, c], scale, false)?;
    let y = zeros(dev, [n, c])?;
    // SAFETY: RowsParams mirrors MtRowsParams; x holds N*H*W*C values, y N*C
    // zeroed for the atomic sums.
    unsafe { dev.launch("gap_forward", cfg, &p, &[ptr(x, op)?, ptr(&y, op)?])? };
    Ok(y)
}

/// dx [N, H, W, C] = g[n, c] / (H W) on every pixel, added onto `onto`
/// (the input's gradient so far, in place) when given.
pub(super) fn global_avg_backward(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    g: &Tensor,
    in_shape: &Shape,
    onto: Option<Tensor>,
) -> Result<Tensor> {
    let [n, hw, c] = sample_rows(in_shape);
    let scale = 1.0 / hw.max(1) as f32;
    let (mut p, cfg) = dev.per_sample_rows(op, "gap_backward", [n, hw, c], scale, false)?;
    let dx = match onto {
        Some(t) => {
            p.flag = 1;
            owned_onto(op, dev, t, in_shape.dims())?
        }
        None => empty(dev, in_shape.clone())?,
    };
    // SAFETY: as above; dx holds N*H*W*C values, g N*C.
    unsafe { dev.launch("gap_backward", cfg, &p, &[ptr(g, op)?, ptr(&dx, op)?])? };
    Ok(dx)
}
