//! Host-to-device uploads that do not stall the GPU.
//!
//! A copy from pageable memory makes the driver synchronise the stream
//! first (CUDA driver API, "API synchronization behavior"): every upload
//! in a training step would drain the GPU's queue. Instead the data is
//! copied on the host into a page-locked ring (ring.rs places it) and the
//! device copy is queued from there, which returns at once. An event
//! recorded after each copy tells when its region may be written again;
//! the host waits on one only when the ring wraps onto a copy still queued.

use super::driver::driver_err;
use super::ring::Ring;
use crate::Result;
use cudarc::driver::{result, sys, CudaContext, CudaStream};
use std::sync::{Arc, Mutex};

/// 128 MiB: a step of SE-ResNet-50 at batch 256 uploads about 40 MB (the
/// images are 38.5 MB), so the ring wraps every third step, onto copies the
/// previous steps' read-backs have long seen finish.
pub(crate) const STAGING_BYTES: usize = 128 << 20;

/// Past this many busy regions, finished ones are dropped from the ring's
/// list (regions skipped at a wrap would otherwise stay listed).
const RECLAIM_AT: usize = 64;

struct Event(sys::CUevent);

/// The pinned block, allocated on the first upload.
struct Pinned {
    base: *mut u8,
    ring: Ring<Event>,
    /// Finished events, recorded again by later copies.
    spare: Vec<Event>,
}

// SAFETY: the block and the events belong to the context, not to a thread;
// the Mutex in `Staging` serialises every use.
unsafe impl Send for Pinned {}

pub(crate) struct Staging {
    ctx: Arc<CudaContext>,
    pinned: Mutex<Option<Pinned>>,
}

impl Staging {
    pub fn new(ctx: Arc<CudaContext>) -> Staging {
        Staging {
            ctx,
            pinned: Mutex::new(None),
        }
    }

    /// Queues a copy of `src` to device address `dst` (at least `src.len()`
    /// bytes) on `stream` through the ring; `src` may be freed as soon as
    /// this returns. Ok(false), having done nothing, when `src` is larger
    /// than the ring.
    pub fn upload(&self, stream: &CudaStream, src: &[u8], dst: u64) -> Result<bool> {
        if src.len() > STAGING_BYTES {
            return Ok(false);
        }
        self.ctx
            .bind_to_thread()
            .map_err(driver_err("binding the context"))?;
        let mut slot = self
            .pinned
            .lock()
            .map_err(|_| crate::Error::Cuda("upload ring poisoned by an earlier panic".into()))?;
        if slot.is_none() {
            // SAFETY: a fresh allocation; only bytes written below are copied.
            let base = unsafe { result::malloc_host(STAGING_BYTES, 0) }
                .map_err(driver_err("cuMemHostAlloc (upload ring)"))?;
            *slot = Some(Pinned {
                base: base.cast(),
                ring: Ring::new(STAGING_BYTES),
                spare: Vec::new(),
            });
        }
        let p = slot.as_mut().expect("allocated above");
        let (off, waits) = p.ring.place(src.len()).expect("fits: checked above");
        for e in waits {
            // SAFETY: a live event of this context.
            unsafe { result::event::synchronize(e.0) }
                .map_err(driver_err("cuEventSynchronize (upload ring)"))?;
            p.spare.push(e);
        }
        // SAFETY: [off, off + len) lies inside the block (Ring::place) and
        // no queued copy reads it any more (its event has completed).
        let staged = unsafe { std::slice::from_raw_parts_mut(p.base.add(off), src.len()) };
        stage(src, staged);
        // SAFETY: `dst` holds at least src.len() bytes (the caller's
        // buffer); `staged` stays untouched until the event below completes.
        unsafe { result::memcpy_htod_async(dst, staged, stream.cu_stream()) }
            .map_err(driver_err("cuMemcpyHtoDAsync (pinned)"))?;
        let event = match p.spare.pop() {
            Some(e) => e,
            None => Event(
                result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
                    .map_err(driver_err("cuEventCreate"))?,
            ),
        };
        // SAFETY: a live event and stream of this context.
        unsafe { result::event::record(event.0, stream.cu_stream()) }
            .map_err(driver_err("cuEventRecord (upload ring)"))?;
        p.ring.mark_busy(off, src.len(), event);
        if p.ring.busy_len() > RECLAIM_AT {
            // SAFETY: live events; NOT_READY (an error) means still queued.
            let done = p
                .ring
                .reclaim(|e| unsafe { result::event::query(e.0) }.is_ok());
            p.spare.extend(done);
        }
        Ok(true)
    }
}

/// Bytes per thread when staging in parallel: a batch of 256 112x112
/// images is 38.5 MB, which one thread copies in about 6 ms while the GPU,
/// drained by the previous step's read-back, waits for it.
const STAGE_CHUNK: usize = 4 << 20;

/// Copies `src` into the pinned `dst`, on the rayon pool when it is large.
fn stage(src: &[u8], dst: &mut [u8]) {
    use rayon::prelude::*;
    if src.len() <= STAGE_CHUNK {
        dst.copy_from_slice(src);
        return;
    }
    dst.par_chunks_mut(STAGE_CHUNK)
        .zip(src.par_chunks(STAGE_CHUNK))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

impl Drop for Staging {
    fn drop(&mut self) {
        let Ok(mut slot) = self.pinned.lock() else {
            return;
        };
        let Some(mut p) = slot.take() else {
            return;
        };
        if self.ctx.bind_to_thread().is_err() {
            return; // the context is gone, and with it the block and events
        }
        // SAFETY: every copy from the block has finished once its event
        // has; nothing uses the events or the block afterwards.
        unsafe {
            let busy = p.ring.reclaim(|_| true);
            for e in &busy {
                let _ = result::event::synchronize(e.0);
            }
            for e in busy.into_iter().chain(p.spare.drain(..)) {
                let _ = result::event::destroy(e.0);
            }
            let _ = result::free_host(p.base.cast());
        }
    }
}
