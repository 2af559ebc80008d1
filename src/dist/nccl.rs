//! The gradient all-reduce of GPU ranks, on NCCL: a communicator per rank
//! from the unique id rank 0 made and the rendezvous handed out, its own
//! stream, and one NCCL group per bucket of the plan (reverse parameter
//! order, ~25 MiB), each averaging its gradients in place (`ncclAvg`). The
//! communication stream waits on an event recorded on the compute stream
//! once a bucket's gradients are queued, and the compute stream waits on an
//! event after the last bucket, so the optimizer reads averaged gradients
//! and nothing the collectives read is freed early.
//!
//! The buckets are launched when backward has queued every gradient; NCCL
//! then runs beside the host's next work, but not yet beside backward's own
//! kernels (that needs a hook in the tape's backward when a parameter's
//! gradient is final). This module has not yet run on a GPU.

use super::nccl_lib::require_nccl;
use super::BucketPlan;
use crate::backend::cuda::CudaDevice;
use crate::{Error, Gradients, Result};
use cudarc::driver::CudaStream;
use cudarc::nccl::{result, sys};
use std::sync::Arc;

fn nccl_err(what: &'static str) -> impl Fn(result::NcclError) -> Error {
    move |e| Error::Dist(format!("NCCL {what}: {e:?}"))
}

fn cuda_err(what: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error {
    move |e| Error::Cuda(format!("{what}: {e:?}"))
}

/// A fresh NCCL unique id (rank 0 makes it; the rendezvous sends it).
pub fn unique_id() -> Result<Vec<u8>> {
    require_nccl()?;
    let id = result::get_uniqueid().map_err(nccl_err("ncclGetUniqueId"))?;
    Ok(id.internal.iter().map(|&c| c as u8).collect())
}

/// This rank's NCCL communicator and the stream its collectives run on.
pub struct NcclGrads {
    comm: sys::ncclComm_t,
    stream: Arc<CudaStream>,
    dev: Arc<CudaDevice>,
}

impl NcclGrads {
    /// Joins the communicator of `world_size` ranks named by `id` (the bytes
    /// of [`unique_id`]) as `rank`, on `dev`. Blocks until every rank joins.
    pub fn new(dev: &Arc<CudaDevice>, id: &[u8], rank: usize, world_size: usize) -> Result<Self> {
        require_nccl()?;
        let mut internal = [0 as std::ffi::c_char; 128];
        if id.len() != internal.len() {
            return Err(Error::Dist(format!(
                "NCCL unique id of {} bytes from the rendezvous (expected 128): \
                 was rank 0 started on a GPU?",
                id.len()
            )));
        }
        for (d, &b) in internal.iter_mut().zip(id) {
            *d = b as std::ffi::c_char;
        }
        let ctx = dev.context();
        ctx.bind_to_thread()
            .map_err(cuda_err("binding the context"))?;
        let stream = ctx.new_stream().map_err(cuda_err("communication stream"))?;
        let mut comm = std::mem::MaybeUninit::uninit();
        // SAFETY: `comm` is written by ncclCommInitRank before it is read;
        // the context of `dev` is current on this thread.
        let comm = unsafe {
            result::comm_init_rank(
                comm.as_mut_ptr(),
                world_size as i32,
                sys::ncclUniqueId { internal },
                rank as i32,
            )
            .map_err(nccl_err("ncclCommInitRank"))?;
            comm.assume_init()
        };
        Ok(NcclGrads {
            comm,
            stream,
            dev: dev.clone(),
        })
    }

    /// Averages every gradient of `grads` over the ranks, bucket by bucket
    /// of `plan`, in place. Queued only: the compute stream waits for it.
    pub fn average(&mut self, grads: &mut Gradients, plan: &BucketPlan) -> Result<()> {
        // Device pointers first: a gradient that shares its buffer is
        // copied (on the compute stream) before the event below.
        let mut buckets = Vec::with_capacity(plan.buckets.len());
        for b in &plan.buckets {
            let mut ptrs = Vec::with_capacity(b.params.len());
            for &id in &b.params {
                if let Some(g) = grads.get_mut(id) {
                    let n = g.numel();
                    ptrs.push((g.cuda_mut("NCCL all-reduce")?.ptr(), n));
                }
            }
            buckets.push(ptrs);
        }
        let compute = self.dev.stream();
        let ready = compute
            .record_event(None)
            .map_err(cuda_err("recording the gradients' event"))?;
        self.stream
            .wait(&ready)
            .map_err(cuda_err("waiting for the gradients"))?;
        for ptrs in buckets {
            result::group_start().map_err(nccl_err("ncclGroupStart"))?;
            for (ptr, n) in ptrs {
                // SAFETY: `ptr` is `n` f32 of device memory on this rank's
                // GPU, owned by `grads`, which the compute stream (waiting
                // for this stream below) reads next.
                unsafe {
                    result::all_reduce(
                        ptr as *const _,
                        ptr as *mut _,
                        n,
                        sys::ncclDataType_t::ncclFloat32,
                        sys::ncclRedOp_t::ncclAvg,
                        self.comm,
                        self.stream.cu_stream() as _,
                    )
                }
                .map_err(nccl_err("ncclAllReduce"))?;
            }
            result::group_end().map_err(nccl_err("ncclGroupEnd"))?;
        }
        let done = self
            .stream
            .record_event(None)
            .map_err(cuda_err("recording the all-reduce's event"))?;
        compute
            .wait(&done)
            .map_err(cuda_err("waiting for the all-reduce"))
    }
}

impl Drop for NcclGrads {
    fn drop(&mut self) {
        // SAFETY: the communicator was initialised in `new` and is not used
        // after this. Abort rather than destroy: it never blocks on a peer
        // that already stopped.
        let _ = unsafe { result::comm_abort(self.comm) };
    }
}
