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

/// Worst disagreement over all checks of one test, printed at the end.
#[derive(Default)]
pub struct Report {
    pub checks: usize,
    pub worst_abs: f64,
    /// max over values of |gpu - ref| / bound; must stay <= 1.
    worst_ratio: f64,
}

impl Report {
    /// Asserts `|gpu[i] - reference[i]| <= bound(i)` for every element.
    pub fn compare_values(
        &mut self,
        what: &str,
        gpu: &[f64],
        reference: &[f64],
        bound: impl Fn(usize) -> f64,
    ) {
        assert_eq!(gpu.len(), reference.len(), "{what}: lengths differ");
        for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
            let (err, b) = ((g - r).abs(), bound(i));
            assert!(
                err <= b,
                "{what}: element {i}: gpu {g} vs reference {r} (|err| {err:e} > {b:e})"
            );
            self.checks += 1;
            self.worst_abs = self.worst_abs.max(err);
            self.worst_ratio = self.worst_ratio.max(err / b);
        }
    }

    /// The `parity <op>: N checks, worst |err| E, worst err/tol R` line.
    pub fn print(&self, op: &str) {
        assert!(self.checks > 0, "{op}: nothing was checked");
        println!(
            "parity {op}: {} checks, worst |err| {:.3e}, worst err/tol {:.3}",
            self.checks, self.worst_abs, self.worst_ratio
        );
    }
}
