//! Helpers shared by the CUDA test files (tests/cuda_*.rs).

use mtaffect::backend::cuda::CudaDevice;
use std::sync::Arc;

/// The GPU with output poisoning on (every new buffer is NaN, so an element
/// a kernel forgets to write fails), or None after printing the one skip
/// line for `test`.
pub fn gpu_or_skip(test: &str) -> Option<Arc<CudaDevice>> {
    match CudaDevice::get(0) {
        Ok(d) => {
            d.set_poison(true);
            Some(d)
        }
        Err(e) => {
            println!("cuda_parity: skipped {test}, no CUDA driver/GPU ({e})");
            None
        }
    }
}
