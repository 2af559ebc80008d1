//! CUDA launchers for kernels/optim.cu: every parameter updated by one
//! launch through a chunk table (uploaded per step: 64 bytes per chunk of
//! up to 64k elements), and the global gradient norm likewise.

use crate::backend::cuda::launcher::zeros;
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::tensor::Device;
use crate::{Error, Gradients, Params, Result, Tensor};
use cudarc::driver::DeviceRepr;
use cudarc::driver::LaunchConfig;
use std::sync::Arc;

/// Elements per chunk (one block of 256 threads each).
const CHUNK: usize = 1 << 16;
const THREADS: u32 = 256;

/// Mirrors `AdamParams` in kernels/optim.cu.
#[repr(C)]
pub(super) struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub bc1: f32,
    pub bc2: f32,
    pub decoupled: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for AdamParams {}

/// Mirrors `SgdParams` in kernels/optim.cu.
#[repr(C)]
pub(super) struct SgdParams {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: i32,
    pub pad: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for SgdParams {}

/// One parameter's buffers for the table: (param, grad, state1, state2, len, first).
pub(super) struct Entry {
    pub p: u64,
    pub g: u64,
    pub s1: u64,
    pub s2: u64,
    pub len: usize,
    pub first: bool,
}

impl Entry {
    /// A gradient alone (the norm kernel reads nothing else).
    pub fn grad_only(g: u64, len: usize) -> Entry {
        Entry {
            p: 0,
            g,
            s1: 0,
            s2: 0,
            len,
            first: false,
        }
    }
}

/// The device all gradients live on, None if they are on the host.
pub(crate) fn grads_device(op: &'static str, grads: &Gradients) -> Result<Option<Arc<CudaDevice>>> {
    let all: Vec<&Tensor> = grads.iter().map(|(_, g)| g).collect();
    crate::tensor::same_device(op, &all)
}

/// The address of a state buffer (zeros like `g` when it does not exist
/// yet, which the returned flag reports).
pub(super) fn state_ptr(
    op: &'static str,
    dev: &Arc<CudaDevice>,
    slot: &mut Option<Tensor>,
    g: &Tensor,
) -> Result<(u64, bool)> {
    let created = slot.is_none();
    if created {
        *slot = Some(zeros(dev, g.shape().clone())?);
    }
    match slot {
        Some(t) => Ok((t.cuda_mut(op)?.ptr(), created)),
        None => Err(Error::Tape(format!("{op}: state buffer vanished"))),
    }
}

/// The parameter's device storage address (copied first if it is shared),
/// checking it matches its gradient.
pub(super) fn param_ptr(
    op: &'static str,
    params: &mut Params,
    id: crate::ParamId,
    g: &Tensor,
) -> Result<u64> {
    let p = params.get_mut(id);
    if p.shape() != g.shape() || !matches!(p.device(), Device::Cuda(_)) {
        return Err(Error::Device {
            op,
            lhs: format!("parameter {} on {}", p.shape(), p.device()),
            rhs: format!("gradient {} on {}", g.shape(), g.device()),
        });
    }
    Ok(p.cuda_mut(op)?.ptr())
}

pub(super) fn upload_table(dev: &Arc<CudaDevice>, entries: &[Entry]) -> Result<(CudaStorage, u32)> {
    let mut table: Vec<u64> = Vec::new();
    for e in entries {
        for off in (0..e.len).step_by(CHUNK) {
            let len = CHUNK.min(e.len - off);
            table.extend([
                e.p,
                e.g,
                e.s1,
                e.s2,
                off as u64,
                len as u64,
                e.first as u64,
                0,
            ]);
        }
    }
    let chunks = (table.len() / 8) as u32;
    let storage = CudaStorage::from_host(dev, bytemuck::cast_slice::<u64, f32>(&table))?;
    Ok((storage, chunks))
}

/// One block of THREADS per chunk (every kernel of kernels/optim.cu that reads a chunk table).
pub(super) fn chunk_config(chunks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (chunks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One launch of `kernel(params, table, status)` over every chunk of
/// `entries`; `status` is a [`StepGuard`](super::guard::StepGuard)'s
/// address, or 0 for an unguarded update.
pub(super) fn step<P: DeviceRepr>(
    dev: &Arc<CudaDevice>,
    kernel: &str,
    params: &P,
    entries: &[Entry],
    status: u64,
) -> Result<()> {
    let (table, chunks) = upload_table(dev, entries)?;
    if chunks == 0 {
        return Ok(());
    }
    // SAFETY: P mirrors the kernel's struct; every table entry addresses
    // live buffers of at least offset + len elements; status is null or a
    // live StepStatus.
    unsafe { dev.launch(kernel, chunk_config(chunks), params, &[table.ptr(), status]) }
}

/// sqrt of the sum of squares of every gradient, summed in double on the
/// device; reading the result back waits for the GPU.
pub(crate) fn global_norm(dev: &Arc<CudaDevice>, grads: &Gradients) -> Result<f64> {
    let entries = grads
        .iter()
        .map(|(_, g)| Ok(Entry::grad_only(g.cuda("global_norm")?.ptr(), g.numel())))
        .collect::<Result<Vec<_>>>()?;
    let (table, chunks) = upload_table(dev, &entries)?;
    if chunks == 0 {
        return Ok(0.0);
    }
    let out = CudaStorage::zeros(dev, 2)?; // one double
                                           // SAFETY: the table addresses live gradients; out holds 8 bytes;
                                           // NormParams (one u64) is passed as that u64.
    unsafe {
        dev.launch(
            "grad_sq_sum",
            chunk_config(chunks),
            &(chunks as u64),
            &[table.ptr(), out.ptr()],
        )?
    };
    let host = out.to_host()?;
    let sq: f64 = bytemuck::pod_read_unaligned(bytemuck::cast_slice::<f32, u8>(&host));
    Ok(sq.sqrt())
}
