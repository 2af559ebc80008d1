//! Per-kernel GPU time, for finding where a training step goes on machines
//! without Nsight Systems: while switched on, every launch is bracketed by two
//! timing events; the report waits for the GPU once and sums the elapsed
//! times by kernel name. Off (the default) it costs one relaxed atomic load
//! per launch.

use super::driver::driver_err;
use crate::Result;
use cudarc::driver::{sys, CudaEvent, CudaStream};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

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

/// What the host spends inside the driver-facing calls of a step, for
/// telling host-bound from GPU-bound steps without a system profiler (the
/// GPU machines have no nsys or perf). Switched on apart from the kernel
/// timer, whose events would add their own host cost to every launch.
#[derive(Default)]
pub(crate) struct HostTimer {
    on: AtomicBool,
    /// Per [`HostCall`]: (calls, nanoseconds).
    totals: [(AtomicU64, AtomicU64); HostCall::COUNT],
}

/// The host calls [`HostTimer`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostCall {
    /// Building and queuing a kernel launch (memsets and copies included).
    Launch,
    /// Taking a buffer from the pool (or the driver, on a miss).
    Alloc,
    /// Staging an upload into the pinned ring and queuing its copy.
    Upload,
    /// Waiting for the stream (read-backs, synchronize).
    Wait,
}

impl HostCall {
    const COUNT: usize = 4;
    pub const ALL: [HostCall; HostCall::COUNT] = [
        HostCall::Launch,
        HostCall::Alloc,
        HostCall::Upload,
        HostCall::Wait,
    ];
}

/// One kind of host call's total since host timing was switched on or last read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostTime {
    pub call: HostCall,
    pub calls: u64,
    pub total_ms: f64,
}

impl HostTimer {
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// Runs `f`, adding its wall time to `call`'s total when switched on.
    pub fn time<T>(&self, call: HostCall, f: impl FnOnce() -> T) -> T {
        if !self.on.load(Ordering::Relaxed) {
            return f();
        }
        let t0 = Instant::now();
        let out = f();
        let (n, ns) = &self.totals[call as usize];
        n.fetch_add(1, Ordering::Relaxed);
        ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }

    /// The totals per kind of call, cleared for the next reading.
    pub fn take(&self) -> Vec<HostTime> {
        HostCall::ALL
            .iter()
            .map(|&call| {
                let (n, ns) = &self.totals[call as usize];
                HostTime {
                    call,
                    calls: n.swap(0, Ordering::Relaxed),
                    total_ms: ns.swap(0, Ordering::Relaxed) as f64 * 1e-6,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{HostCall, HostTimer};

    #[test]
    fn host_timer_counts_only_while_on_and_clears_when_read() {
        let t = HostTimer::default();
        assert_eq!(t.time(HostCall::Wait, || 7), 7);
        t.set(true);
        t.time(HostCall::Launch, || ());
        t.time(HostCall::Launch, || ());
        t.time(HostCall::Wait, || {
            std::thread::sleep(std::time::Duration::from_millis(2))
        });
        t.set(false);
        t.time(HostCall::Launch, || ());
        let r = t.take();
        let get = |c| r.iter().find(|h| h.call == c).unwrap();
        assert_eq!(get(HostCall::Launch).calls, 2);
        assert_eq!(get(HostCall::Wait).calls, 1);
        assert!(get(HostCall::Wait).total_ms >= 2.0, "{r:?}");
        assert_eq!(get(HostCall::Alloc).calls, 0);
        assert!(t.take().iter().all(|h| h.calls == 0 && h.total_ms == 0.0));
    }
}
