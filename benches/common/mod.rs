//! Helpers shared by the CUDA benches (benches/cuda_*.rs).

use mtaffect::backend::cuda::CudaDevice;
use std::sync::Arc;
use std::time::Instant;

/// Best seconds per call of `f` over `batches` batches of `reps` calls,
/// after one warm-up call; the GPU is synchronised only around a batch.
pub fn time(dev: &CudaDevice, reps: usize, batches: usize, mut f: impl FnMut()) -> f64 {
    f();
    dev.synchronize().expect("sync");
    let mut best = f64::INFINITY;
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        dev.synchronize().expect("sync");
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

/// The GPU, or None after printing the one skip line for `bench`; prints
/// the device line first.
pub fn gpu_or_skip(bench: &str) -> Option<Arc<CudaDevice>> {
    match CudaDevice::get(0) {
        Ok(d) => {
            println!("device: {} ({} SMs)", d.info().name, d.sm_count());
            Some(d)
        }
        Err(e) => {
            println!("{bench}: skipped, no CUDA driver/GPU ({e})");
            None
        }
    }
}
