//! f32 device memory behind a CUDA tensor. The buffer comes from the
//! device's pool and goes back to it on drop; `len` is the tensor's element
//! count (the buffer may be larger: it is a size class).

use super::driver::driver_err;
use super::profile::HostCall;
use super::runtime::{raw_ptr, CudaDevice};
use crate::{Error, Result};
use cudarc::driver::CudaSlice;
use std::sync::Arc;

pub struct CudaStorage {
    dev: Arc<CudaDevice>,
    /// Always `Some` until drop hands it back to the pool.
    buf: Option<CudaSlice<f32>>,
    len: usize,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage(cuda:{}, {} f32)",
            self.dev.ordinal(),
            self.len
        )
    }
}

impl Drop for CudaStorage {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.dev.release(b);
        }
    }
}

impl CudaStorage {
    /// `len` uninitialised elements (NaN while the device poisons).
    pub fn alloc(dev: &Arc<CudaDevice>, len: usize) -> Result<CudaStorage> {
        Ok(CudaStorage {
            dev: dev.clone(),
            buf: Some(dev.alloc(len)?),
            len,
        })
    }

    /// `len` zeros.
    pub fn zeros(dev: &Arc<CudaDevice>, len: usize) -> Result<CudaStorage> {
        let mut s = CudaStorage::alloc(dev, len)?;
        s.fill_bytes(0)?;
        Ok(s)
    }

    /// A host-to-device copy of `data`, queued on the stream; `data` may be
    /// freed as soon as this returns. It goes through the device's pinned
    /// upload ring, which does not stall the GPU; only data larger than the
    /// ring is copied from pageable memory (the driver syncs the stream first).
    pub fn from_host(dev: &Arc<CudaDevice>, data: &[f32]) -> Result<CudaStorage> {
        let mut s = CudaStorage::alloc(dev, data.len())?;
        if data.is_empty() {
            return Ok(s);
        }
        let dst = s.ptr();
        dev.host_timed(HostCall::Upload, || {
            dev.timed("(copy host to device)", || {
                if dev.upload_staged(bytemuck::cast_slice(data), dst)? {
                    return Ok(());
                }
                let mut view = s.slice_mut().slice_mut(0..data.len());
                dev.stream()
                    .memcpy_htod(data, &mut view)
                    .map_err(driver_err("host-to-device copy"))
            })
        })?;
        Ok(s)
    }

    /// A device-to-host copy; waits for the stream.
    pub fn to_host(&self) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; self.len];
        let view = self.slice().slice(0..self.len);
        let stream = self.dev.stream();
        self.dev.host_timed(HostCall::Wait, || {
            stream
                .memcpy_dtoh(&view, &mut out)
                .map_err(driver_err("device-to-host copy"))?;
            // A copy into pageable memory returns when done; the explicit
            // wait keeps that true whatever memory `out` is.
            stream
                .synchronize()
                .map_err(driver_err("cuStreamSynchronize"))
        })?;
        Ok(out)
    }

    /// A device-to-device copy into a new pooled buffer.
    pub fn try_clone(&self) -> Result<CudaStorage> {
        let mut s = CudaStorage::alloc(&self.dev, self.len)?;
        self.copy_to(&mut s)?;
        Ok(s)
    }

    /// Copies all of `self` into `dst` (same length) on the stream.
    pub fn copy_to(&self, dst: &mut CudaStorage) -> Result<()> {
        if dst.len != self.len {
            return Err(Error::arg(
                "copy",
                format!("{} elements into {}", self.len, dst.len),
            ));
        }
        let src = self.slice().slice(0..self.len);
        let mut view = dst.slice_mut().slice_mut(0..self.len);
        self.dev.host_timed(HostCall::Launch, || {
            self.dev.timed("(copy device to device)", || {
                self.dev
                    .stream()
                    .memcpy_dtod(&src, &mut view)
                    .map_err(driver_err("device-to-device copy"))
            })
        })
    }

    pub fn fill_bytes(&mut self, byte: u8) -> Result<()> {
        let dev = self.dev.clone();
        dev.memset_bytes(self.slice_mut(), byte)
    }

    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address, for kernel launches.
    pub fn ptr(&self) -> u64 {
        raw_ptr(self.slice(), self.dev.stream())
    }

    fn slice(&self) -> &CudaSlice<f32> {
        self.buf.as_ref().expect("buffer present until drop")
    }

    fn slice_mut(&mut self) -> &mut CudaSlice<f32> {
        self.buf.as_mut().expect("buffer present until drop")
    }
}
