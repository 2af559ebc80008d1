//! Per-kernel GPU time, for finding where a training step goes on machines
//! without Nsight Systems: while switched on, every launch is bracketed by two
//! timing events; the report waits for the GPU once and sums the elapsed
//! times by kernel name. Off (the default) it costs one relaxed atomic load
//! per launch.

use super::runtime::driver_err;
use crate::Result;
use cudarc::driver::{sys, CudaEvent, CudaStream};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct Profiler {
    on: AtomicBool,
    spans: Mutex<Vec<(String, CudaEvent, CudaEvent)>>,
}

/// One kernel's total over the profiled launches.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub name: String,
    pub calls: usize,
    pub total_ms: f64,
}

impl Profiler {
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// A timing event recorded on `stream` now.
    pub fn mark(stream: &CudaStream) -> Result<CudaEvent> {
        stream
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(driver_err("recording a profiling event"))
    }

    pub fn push(&self, kernel: &str, start: CudaEvent, end: CudaEvent) {
        if let Ok(mut s) = self.spans.lock() {
            s.push((kernel.to_string(), start, end));
        }
    }

    /// Sums and clears what was recorded, slowest kernel first (waits for the GPU).
    pub fn report(&self) -> Result<Vec<KernelTime>> {
        let spans = std::mem::take(&mut *self.spans.lock().expect("profiler lock"));
        let mut by_name: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        for (name, start, end) in spans {
            let ms = start
                .elapsed_ms(&end)
                .map_err(driver_err("reading a profiling event"))?;
            let e = by_name.entry(name).or_default();
            e.0 += 1;
            e.1 += ms as f64;
        }
        let mut out: Vec<KernelTime> = by_name
            .into_iter()
            .map(|(name, (calls, total_ms))| KernelTime {
                name,
                calls,
                total_ms,
            })
            .collect();
        out.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        Ok(out)
    }
}
