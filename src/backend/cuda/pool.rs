//! A caching allocator: freed device buffers go to per-size-class free lists
//! and are handed out again, so a training step allocates nothing from the
//! driver once the first step has warmed the pool.
//!
//! Everything runs on one stream, so a buffer released while a kernel still
//! reads it can be reused at once: the next kernel that writes it is queued
//! behind that read.

use cudarc::driver::{CudaSlice, CudaStream, DriverError};
use std::collections::HashMap;
use std::sync::Arc;

/// Elements in the smallest class (1 KiB of f32).
const MIN_CLASS: usize = 256;

/// Rounds `n` up to a size class: quarter steps between powers of two, so a
/// buffer wastes at most 25% and similar sizes share a free list.
pub fn size_class(n: usize) -> usize {
    if n <= MIN_CLASS {
        return MIN_CLASS;
    }
    let top = usize::BITS - 1 - (n - 1).leading_zeros(); // highest set bit of n-1
    let step = (1usize << top) / 4;
    n.div_ceil(step) * step
}

/// Counters that `mtaffect info` and the benches print.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    /// Bytes held from the driver (in use plus cached).
    pub reserved_bytes: usize,
    /// Bytes handed out and not yet returned.
    pub in_use_bytes: usize,
    /// Calls that went to the driver.
    pub driver_allocs: u64,
    /// Calls served from a free list.
    pub reuses: u64,
}

#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<usize, Vec<CudaSlice<f32>>>,
    stats: PoolStats,
}

impl Pool {
    /// A buffer of at least `n` f32 (exactly `size_class(n)`), uninitialised.
    pub fn take(
        &mut self,
        stream: &Arc<CudaStream>,
        n: usize,
    ) -> Result<CudaSlice<f32>, DriverError> {
        let class = size_class(n);
        let bytes = class * 4;
        if let Some(buf) = self.free.get_mut(&class).and_then(Vec::pop) {
            self.stats.reuses += 1;
            self.stats.in_use_bytes += bytes;
            return Ok(buf);
        }
        // SAFETY: the memory is uninitialised; every op writes its output
        // before anything reads it.
        let buf = match unsafe { stream.alloc::<f32>(class) } {
            Ok(b) => b,
            Err(_) => {
                // Out of memory, most likely: give the cached buffers back and retry once.
                self.trim();
                unsafe { stream.alloc::<f32>(class) }?
            }
        };
        self.stats.driver_allocs += 1;
        self.stats.reserved_bytes += bytes;
        self.stats.in_use_bytes += bytes;
        Ok(buf)
    }

    /// Returns a buffer from [`Pool::take`] to its free list.
    pub fn give(&mut self, buf: CudaSlice<f32>) {
        let bytes = buf.len() * 4;
        self.stats.in_use_bytes -= bytes;
        self.free.entry(buf.len()).or_default().push(buf);
    }

    /// Frees every cached (unused) buffer back to the driver.
    pub fn trim(&mut self) {
        for (_, bufs) in self.free.drain() {
            for b in bufs {
                self.stats.reserved_bytes -= b.len() * 4;
            }
        }
    }

    pub fn stats(&self) -> PoolStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_by_at_most_a_quarter() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(256), 256);
        assert_eq!(size_class(257), 320);
        assert_eq!(size_class(512), 512);
        assert_eq!(size_class(513), 640);
        for n in [300usize, 1000, 4097, 123_457, 1 << 28] {
            let c = size_class(n);
            assert!(c >= n && (c - n) * 4 <= n, "{n} -> {c}");
            assert_eq!(size_class(c), c, "a class maps to itself");
        }
    }
}
