//! CUDA backend: the embedded kernel sources, NVRTC compilation with an
//! on-disk cache, the device (context, one stream, pooled allocator, kernel
//! launches), device storage, and what every op's launcher is built from
//! ([`launcher`]). Everything here returns a clean
//! [`Error::Cuda`](crate::Error::Cuda) on a machine without CUDA.

mod device;
mod driver;
mod kernels;
pub(crate) mod launcher;
mod nvrtc;
mod pool;
mod profile;
mod ring;
mod rows;
mod runtime;
mod staging;
mod storage;

pub use device::{driver_available, DeviceInfo};
pub use kernels::{kernel_names, KernelModule, MODULES};
pub use nvrtc::{
    cache_dir, compile_all, compile_module, nvrtc_available, nvrtc_version, CompiledModule,
};
pub use pool::{size_class, PoolStats};
pub use profile::{HostCall, HostTime, KernelTime};
pub use rows::{block_per_channel_config, RowsLayout, RowsParams};
pub use runtime::{parse_cuda_ordinal, CudaDevice, BLOCK};
pub use storage::CudaStorage;
