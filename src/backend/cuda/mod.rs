//! CUDA backend: the embedded kernel sources, NVRTC compilation with an
//! on-disk cache, and the device (driver, context). Everything here returns a
//! clean [`Error::Cuda`](crate::Error::Cuda) on a machine without CUDA.

mod device;
mod kernels;
mod nvrtc;

pub use device::{driver_available, DeviceInfo};
pub use kernels::{KernelModule, MODULES};
pub use nvrtc::{
    cache_dir, compile_all, compile_module, nvrtc_available, nvrtc_version, CompiledModule,
};
