//! CUDA launcher for kernels/gemm.cu: every matrix product (matmul, linear,
//! bmm and their backward) is one strided, optionally batched GEMM launch.

use crate::backend::cuda::CudaDevice;
use crate::ops::elementwise::cuda::{empty, ptr};
use crate::{Result, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::Arc;

/// Mirrors `GemmParams` in kernels/gemm.cu.
#[repr(C)]
struct GemmParams {
    m: u64,
    n: u64,
    k: u64,
    rsa: u64,
    csa: u64,
    bsa: u64,
    rsb: u64,
    csb: u64,
    bsb: u64,
    bsc: u64,
    beta: f32,
    has_bias: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for GemmParams {}

/// [r, c] -> [c, r] with the strided copy of kernels/elementwise.cu
/// (`broadcast_scale` reads `x` through any strides): output element
/// (j, i) reads x[i * c + j].
pub(crate) fn transpose2d(dev: &Arc<CudaDevice>, x: &Tensor) -> Result<Tensor> {
    let (r, c) = (x.dims()[0], x.dims()[1]);
    let mut p = crate::ops::strided::cuda::BinaryParams {
        n: (r * c) as u64,
        rank: 2,
        alpha: 1.0,
        ..Default::default()
    };
    p.dims[..2].copy_from_slice(&[c as u64, r as u64]);
    p.sa[..2].copy_from_slice(&[1, c as u64]);
    let y = empty(dev, [c, r])?;
    let ptrs = [ptr(x, "transpose")?, ptr(&y, "transpose")?];
    // SAFETY: BinaryParams mirrors the kernel's struct; offsets stay below r*c.
    unsafe { dev.launch("broadcast_scale", dev.elementwise_config(r * c), &p, &ptrs)? };
    Ok(y)
}

/// `c[i] = op(a[i])·op(b[i]) (+ bias)` for `batch` entries, as a new
/// contiguous [batch·m, n] buffer shaped `[batch, m, n]` (or `[m, n]` when
/// `batch` is None). `a[i]` is stored [m, k] row-major, or [k, m] when
/// `ta`; `b[i]` is [k, n], or [n, k] when `tb`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    [batch, m, k, n]: [usize; 4],
    bias: Option<&Tensor>,
    batched: bool,
) -> Result<Tensor> {
    let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
    let (rsb, csb) = if tb { (1, k) } else { (n, 1) };
    let p = GemmParams {
        m: m as u64,
        n: n as u64,
        k: k as u64,
        rsa: rsa as u64,
        csa: csa as u64,
        bsa: (m * k) as u64,
        rsb: rsb as u64,
        csb: csb as u64,
        bsb: (k * n) as u64,
        bsc: (m * n) as u64,
        beta: 0.0,
        has_bias: bias.is_some() as i32,
    };
    let c = if batched {
        empty(dev, [batch, m, n])?
    } else {
        empty(dev, [m, n])?
    };
    if c.numel() == 0 {
        return Ok(c);
    }
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(128) as u32, m.div_ceil(128) as u32, batch as u32),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let bias_ptr = bias.map_or(Ok(0), |t| ptr(t, op))?;
    let ptrs = [ptr(a, op)?, ptr(b, op)?, bias_ptr, ptr(&c, op)?];
    // SAFETY: GemmParams mirrors the kernel's struct; the strides describe
    // a, b and c as allocated here and by the caller's shape checks.
    unsafe { dev.launch("gemm_f32", cfg, &p, &ptrs)? };
    Ok(c)
}
