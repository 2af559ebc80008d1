//! CUDA launchers for kernels/gather_tokens.cu. The indices are host data by
//! this op's signature; the forward uploads them and the backward uploads
//! its source lists, explicitly, once per call (N·K and N·T + 1 + N·K u32).

use super::{TokenIndex, OP};
use crate::backend::cuda::launcher::{empty, ptr};
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::{Result, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

/// Mirrors `GatherTokensParams` in kernels/gather_tokens.cu.
#[repr(C)]
struct GatherTokensParams {
    n: u64,
    t: u64,
    k: u64,
    d: u64,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for GatherTokensParams {}

fn params(idx: &TokenIndex, d: usize) -> GatherTokensParams {
    GatherTokensParams {
        n: idx.n as u64,
        t: idx.t as u64,
        k: idx.k as u64,
        d: d as u64,
    }
}

/// u32 values in an f32 buffer, bit for bit (the storage is typed f32; the
/// kernel reads the words as u32).
fn upload(dev: &Arc<CudaDevice>, v: &[u32]) -> Result<CudaStorage> {
    CudaStorage::from_host(dev, bytemuck::cast_slice::<u32, f32>(v))
}

pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    idx: &TokenIndex,
    d: usize,
    x: &Tensor,
) -> Result<Tensor> {
    let y = empty(dev, [idx.n, idx.k, d])?;
    let ids = upload(dev, &idx.idx)?;
    // SAFETY: the params mirror the kernel's struct; ids holds n·k indices,
    // each below t (checked by TokenIndex::new); x holds n·t·d f32, y n·k·d.
    unsafe {
        dev.launch(
            "gather_tokens_forward",
            dev.elementwise_config(y.numel()),
            &params(idx, d),
            &[ids.ptr(), ptr(x, OP)?, ptr(&y, OP)?],
        )?
    };
    Ok(y)
}

pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    idx: &TokenIndex,
    d: usize,
    dy: &Tensor,
) -> Result<Tensor> {
    let dx = empty(dev, [idx.n, idx.t, d])?;
    let (offsets, sources) = idx.sources();
    let (offsets, sources) = (upload(dev, &offsets)?, upload(dev, &sources)?);
    // SAFETY: the params mirror the kernel's struct; offsets holds n·t + 1
    // entries ending at n·k, sources n·k values below k; dy holds n·k·d f32,
    // dx n·t·d.
    unsafe {
        dev.launch(
            "gather_tokens_backward",
            dev.elementwise_config(dx.numel()),
            &params(idx, d),
            &[offsets.ptr(), sources.ptr(), ptr(dy, OP)?, ptr(&dx, OP)?],
        )?
    };
    Ok(dx)
}
