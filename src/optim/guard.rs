//! A training step on the GPU with one read-back instead of five.
//!
//! A non-finite step must be refused before any weight changes, but reading
//! the task losses, the total and the gradient norm one by one would cost a
//! full stream sync each. So the norm, the clip scale and a skip flag are
//! computed on the device into a [`StepStatus`]; the fused optimizer kernels
//! apply the scale and change nothing (parameters and moments alike) when
//! the flag is set; and the host reads the status once, after the update is
//! queued, and reports the non-finite value as a host check would. The
//! optimizer's host state (Adam's step count, state buffers it created) is
//! settled from that read-back ([`Optimizer::settle`](super::Optimizer::settle)).

use super::cuda::grads_device;
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::tensor_math::chunks::{chunk_config, upload_table, Entry};
use crate::{Gradients, Result, Tensor};
use cudarc::driver::LaunchConfig;
use std::sync::Arc;

/// Mirrors `StepStatus` in kernels/optim.cu (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct StepStatus {
    sq_sum: f64,
    norm: f64,
    scale: f32,
    skip: i32,
    loss: f32,
    va: f32,
    au: f32,
    expr: f32,
}

// SAFETY: plain numbers, no padding (8 + 8 + 6 * 4 bytes, 8-aligned).
unsafe impl bytemuck::Zeroable for StepStatus {}
unsafe impl bytemuck::Pod for StepStatus {}

/// f32 slots a [`StepStatus`] occupies in a device buffer.
const STATUS_F32: usize = std::mem::size_of::<StepStatus>() / 4;

/// What the one read-back of a guarded step says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReadout {
    pub loss: f64,
    pub va: f64,
    pub au: f64,
    pub expr: f64,
    /// The gradient norm before clipping.
    pub grad_norm: f64,
    /// The device skipped the update (the loss or the norm is not finite).
    pub skipped: bool,
}

/// The device-side status of one step, filled by [`StepGuard::queue`].
pub struct StepGuard {
    dev: Arc<CudaDevice>,
    status: CudaStorage,
}

impl StepGuard {
    /// Queues the global norm of `grads`, the clip scale for `max_norm`
    /// (<= 0: none) and the skip flag, with `loss` = (total, va, au, expr),
    /// device scalars, copied next to them. None when the gradients are not
    /// on a GPU (the caller takes the host path).
    pub fn queue(grads: &Gradients, loss: [&Tensor; 4], max_norm: f64) -> Result<Option<Self>> {
        let Some(dev) = grads_device("step_guard", grads)? else {
            return Ok(None);
        };
        let status = CudaStorage::zeros(&dev, STATUS_F32)?;
        let entries = grads
            .iter()
            .map(|(_, g)| Ok(Entry::grad_only(g.cuda("step_guard")?.ptr(), g.numel())))
            .collect::<Result<Vec<_>>>()?;
        let (table, chunks) = upload_table(&dev, &entries)?;
        if chunks > 0 {
            // SAFETY: the table addresses live gradients; the status holds
            // StepStatus, whose first field is the double the kernel sums into.
            // NormParams (one u64) is passed as that u64.
            unsafe {
                dev.launch(
                    "grad_sq_sum",
                    chunk_config(chunks),
                    &(chunks as u64),
                    &[table.ptr(), status.ptr()],
                )?
            };
        }
        let ptrs = loss
            .iter()
            .map(|t| Ok(t.cuda("step_guard")?.ptr()))
            .collect::<Result<Vec<_>>>()?;
        let one = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: GuardParams is one double (passed as that f64); the status is a StepStatus and
        // every loss pointer addresses at least one f32.
        unsafe {
            dev.launch(
                "step_guard",
                one,
                &max_norm,
                &[status.ptr(), ptrs[0], ptrs[1], ptrs[2], ptrs[3]],
            )?
        };
        Ok(Some(StepGuard { dev, status }))
    }

    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    /// The status's device address, for the optimizer kernels.
    pub(crate) fn ptr(&self) -> u64 {
        self.status.ptr()
    }

    /// The step's one read-back (waits for everything queued so far).
    pub fn read(&self) -> Result<StepReadout> {
        let host = self.status.to_host()?;
        let s: StepStatus = bytemuck::pod_read_unaligned(bytemuck::cast_slice(&host));
        Ok(StepReadout {
            loss: s.loss as f64,
            va: s.va as f64,
            au: s.au as f64,
            expr: s.expr as f64,
            grad_norm: s.norm,
            skipped: s.skip != 0,
        })
    }
}

const _: () = assert!(
    STATUS_F32 * 4 == 40,
    "StepStatus is 40 bytes in kernels/optim.cu"
);
