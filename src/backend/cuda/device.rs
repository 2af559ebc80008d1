//! Whether a CUDA driver is present, and what it says about one GPU.

use super::driver::driver_err;
use crate::{Error, Result};
use cudarc::driver::CudaContext;

/// True if the CUDA driver library can be loaded on this machine.
pub fn driver_available() -> bool {
    // SAFETY: only tries to dlopen the driver library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// What `mtaffect info` reports about one GPU.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_memory: usize,
    pub driver_version: i32,
}

impl DeviceInfo {
    /// Queries device `ordinal`; a clear error where there is no driver or no such device.
    pub fn query(ordinal: usize) -> Result<DeviceInfo> {
        if !driver_available() {
            return Err(Error::Cuda("no CUDA driver found; use --device cpu".into()));
        }
        let what = format!("device {ordinal}");
        let cuda = driver_err(&what);
        let ctx = CudaContext::new(ordinal).map_err(&cuda)?;
        let mut driver_version = 0;
        // SAFETY: writes one int.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(&cuda)?;
        Ok(DeviceInfo {
            ordinal,
            name: ctx.name().map_err(&cuda)?,
            compute_capability: ctx.compute_capability().map_err(&cuda)?,
            total_memory: ctx.total_mem().map_err(&cuda)?,
            driver_version,
        })
    }

    /// NVRTC's name for this device's architecture, e.g. `sm_90`.
    pub fn arch(&self) -> String {
        format!(
            "sm_{}{}",
            self.compute_capability.0, self.compute_capability.1
        )
    }
}
