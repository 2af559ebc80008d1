//! CUDA launchers for kernels/conv.cu (implicit GEMM over NHWC).

use super::Conv2dGeom;
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::ops::elementwise::cuda::{empty, ptr};
use crate::{Error, Result, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::Arc;

/// Mirrors `ConvParams` in kernels/common.cuh (conv.cu and conv_bf16.cu).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct ConvParams {
    n: i32,
    h: i32,
    w: i32,
    c: i32,
    k: i32,
    r: i32,
    s: i32,
    p: i32,
    q: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    dh: i32,
    dw: i32,
    groups: i32,
    splits: i32,
    has_bias: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for ConvParams {}

const TILE: usize = 128;

/// The kernels' parameters for `g` (one split); an error if 32-bit indices
/// cannot reach every element.
pub(super) fn params(op: &'static str, g: &Conv2dGeom, has_bias: bool) -> Result<ConvParams> {
    // The kernels index with 32-bit ints.
    let biggest = [
        g.n * g.h * g.w * g.c,
        g.n * g.p * g.q * g.k,
        g.k * g.r * g.s * g.c,
    ];
    if biggest.iter().any(|&v| v > i32::MAX as usize) {
        return Err(Error::shape(
            op,
            format!("the CUDA conv kernels index with 32 bits: input, output or weight of {g:?} is too large"),
        ));
    }
    let i = |v: usize| v as i32;
    Ok(ConvParams {
        n: i(g.n),
        h: i(g.h),
        w: i(g.w),
        c: i(g.c),
        k: i(g.k),
        r: i(g.r),
        s: i(g.s),
        p: i(g.p),
        q: i(g.q),
        sh: i(g.prm.stride[0]),
        sw: i(g.prm.stride[1]),
        ph: i(g.prm.padding[0]),
        pw: i(g.prm.padding[2]),
        dh: i(g.prm.dilation[0]),
        dw: i(g.prm.dilation[1]),
        groups: i(g.prm.groups),
        splits: 1,
        has_bias: has_bias as i32,
    })
}

/// `y_blocks` rows of tiles, enough column tiles for `cols`, one z per group.
fn config(y_blocks: usize, cols: usize, groups: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (cols.div_ceil(TILE) as u32, y_blocks as u32, groups as u32),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// y [N, P, Q, K] = conv(x, w) (+ bias).
pub(super) fn fprop(
    dev: &Arc<CudaDevice>,
    g: &Conv2dGeom,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let p = params(OP, g, bias.is_some())?;
    let y = empty(dev, g.out_dims())?;
    let cfg = config(
        (g.n * g.p * g.q).div_ceil(TILE),
        g.k / g.prm.groups,
        g.prm.groups,
    );
    let ptrs = [
        ptr(x, OP)?,
        ptr(w, OP)?,
        bias.map_or(Ok(0), |b| ptr(b, OP))?,
        ptr(&y, OP)?,
    ];
    // SAFETY: ConvParams mirrors the kernel's struct and describes x, w, bias and y.
    unsafe { dev.launch("conv_fprop", cfg, &p, &ptrs)? };
    Ok(y)
}

/// dx [N, H, W, C] from dy [N, P, Q, K] (+ bias: conv_transpose2d's forward).
pub(super) fn dgrad(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    g: &Conv2dGeom,
    dy: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let p = params(op, g, bias.is_some())?;
    let dx = empty(dev, g.in_dims())?;
    let cfg = config(
        (g.n * g.h * g.w).div_ceil(TILE),
        g.c / g.prm.groups,
        g.prm.groups,
    );
    let ptrs = [
        ptr(dy, op)?,
        ptr(w, op)?,
        bias.map_or(Ok(0), |b| ptr(b, op))?,
        ptr(&dx, op)?,
    ];
    // SAFETY: as in fprop.
    unsafe { dev.launch("conv_dgrad", cfg, &p, &ptrs)? };
    Ok(dx)
}

/// dw [K, R, S, C/groups] from x [N, H, W, C] and dy [N, P, Q, K].
pub(super) fn wgrad(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    g: &Conv2dGeom,
    x: &Tensor,
    dy: &Tensor,
    w_shape: &crate::Shape,
) -> Result<Tensor> {
    let mut p = params(op, g, false)?;
    let (rows, cols) = (g.k / g.prm.groups, g.r * g.s * (g.c / g.prm.groups));
    let tiles = rows.div_ceil(TILE) * cols.div_ceil(TILE) * g.prm.groups;
    // Split the (n, p, q) sum until the GPU has a couple of blocks per SM,
    // keeping at least 256 pixels per split.
    let pixels = g.n * g.p * g.q;
    let splits = (2 * dev.sm_count() as usize)
        .div_ceil(tiles)
        .min(pixels.div_ceil(256))
        .clamp(1, 4096);
    p.splits = splits as i32;
    let dw = Tensor::from_cuda(CudaStorage::zeros(dev, w_shape.numel())?, w_shape.clone())?;
    let cfg = config(rows.div_ceil(TILE) * splits, cols, g.prm.groups);
    let ptrs = [ptr(x, op)?, ptr(dy, op)?, ptr(&dw, op)?];
    // SAFETY: as in fprop; dw is zeroed for the split-K atomics.
    unsafe { dev.launch("conv_wgrad", cfg, &p, &ptrs)? };
    Ok(dw)
}
