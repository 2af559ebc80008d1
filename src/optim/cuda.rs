//! CUDA launchers for the updates of kernels/optim.cu: every parameter
//! updated by one launch through a chunk table (tensor_math/chunks.rs,
//! which also launches the gradients' sum of squares).

use crate::backend::cuda::launcher::zeros;
use crate::backend::cuda::CudaDevice;
use crate::tensor::Device;
use crate::tensor_math::chunks::{chunk_config, upload_table, Entry};
use crate::{Error, Gradients, Params, Result, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

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
