//! Placement logic of the pinned upload ring (staging.rs), kept free of
//! driver calls so it is tested without a GPU.
//!
//! Regions are handed out one after another and wrap to the start when the
//! next one does not fit before the end. A region stays busy, holding the
//! caller's ticket (a CUDA event in use), until a later region overlaps it:
//! then `place` returns its ticket, and the caller must wait on it before
//! writing the new region.

use std::ops::Range;

/// Regions start on 256-byte boundaries (full-speed DMA, aligned f32/u64 data).
pub(crate) const ALIGN: usize = 256;

pub(crate) struct Ring<T> {
    cap: usize,
    head: usize,
    busy: Vec<(Range<usize>, T)>,
}

impl<T> Ring<T> {
    /// A ring of `cap` bytes (a multiple of [`ALIGN`]).
    pub fn new(cap: usize) -> Ring<T> {
        Ring {
            cap,
            head: 0,
            busy: Vec::new(),
        }
    }

    /// Places `len` bytes: the region's offset and the tickets of the busy
    /// regions it overlaps (oldest first), which are no longer tracked. None
    /// when `len` is larger than the ring (the caller copies another way).
    pub fn place(&mut self, len: usize) -> Option<(usize, Vec<T>)> {
        let len = len.max(1).div_ceil(ALIGN) * ALIGN;
        if len > self.cap {
            return None;
        }
        if self.head + len > self.cap {
            self.head = 0;
        }
        let region = self.head..self.head + len;
        self.head = region.end;
        let mut waits = Vec::new();
        let mut i = 0;
        while i < self.busy.len() {
            let r = &self.busy[i].0;
            if r.start < region.end && region.start < r.end {
                waits.push(self.busy.remove(i).1);
            } else {
                i += 1;
            }
        }
        Some((region.start, waits))
    }

    /// Marks the region placed at `offset` (of `len` bytes) busy until `ticket` says otherwise.
    pub fn mark_busy(&mut self, offset: usize, len: usize, ticket: T) {
        let len = len.max(1).div_ceil(ALIGN) * ALIGN;
        self.busy.push((offset..offset + len, ticket));
    }

    /// How many regions are busy.
    pub fn busy_len(&self) -> usize {
        self.busy.len()
    }

    /// Stops tracking the regions whose ticket `done` says is finished (so
    /// regions the ring skipped at a wrap cannot pile up); returns their tickets.
    pub fn reclaim(&mut self, mut done: impl FnMut(&T) -> bool) -> Vec<T> {
        let (fin, keep): (Vec<_>, Vec<_>) = self.busy.drain(..).partition(|(_, t)| done(t));
        self.busy = keep;
        fin.into_iter().map(|(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    #[test]
    fn wrapping_waits_on_exactly_the_overlapped_regions() {
        let mut ring = Ring::new(10 * ALIGN);
        let put = |ring: &mut Ring<u32>, len: usize, t: u32| {
            let (off, waits) = ring.place(len * ALIGN).unwrap();
            ring.mark_busy(off, len * ALIGN, t);
            (off / ALIGN, waits)
        };
        assert_eq!(put(&mut ring, 4, 1), (0, vec![]));
        assert_eq!(put(&mut ring, 4, 2), (4, vec![]));
        // 3 more do not fit after 8: wrap onto region 1.
        assert_eq!(put(&mut ring, 3, 3), (0, vec![1]));
        // [3, 6) overlaps region 2 only.
        assert_eq!(put(&mut ring, 3, 4), (3, vec![2]));
        // A region spanning both live ones waits on both, oldest first.
        assert_eq!(put(&mut ring, 7, 5), (0, vec![3, 4]));
        assert!(ring.place(11 * ALIGN).is_none(), "larger than the ring");
        // Odd sizes round up to whole alignment units.
        let (off, _) = ring.place(1).unwrap();
        assert_eq!(off, 7 * ALIGN);
        ring.mark_busy(off, 1, 6);
        assert_eq!(ring.busy_len(), 2);
        assert_eq!(ring.reclaim(|t| *t == 5), vec![5]);
        assert_eq!(ring.busy_len(), 1);
    }

    /// Random sizes: no two regions that are busy at once ever overlap, and
    /// every region placed is inside the ring and aligned.
    #[test]
    fn live_regions_never_overlap() {
        let cap = 64 * ALIGN;
        let mut ring = Ring::new(cap);
        let mut rng = Rng::new(3);
        let mut live: Vec<(Range<usize>, u32)> = Vec::new();
        let mut waited = 0;
        for t in 0..2000u32 {
            let len = 1 + rng.below(20 * ALIGN);
            let (off, waits) = ring.place(len).unwrap();
            assert_eq!(off % ALIGN, 0);
            assert!(off + len <= cap, "{off} + {len} > {cap}");
            live.retain(|(_, id)| !waits.contains(id));
            waited += waits.len();
            for (r, id) in &live {
                assert!(
                    r.end <= off || off + len <= r.start,
                    "region {t} at {off}+{len} overlaps live region {id} at {r:?}"
                );
            }
            ring.mark_busy(off, len, t);
            live.push((off..off + len, t));
            if t % 97 == 0 {
                // Pretend the GPU finished the oldest half.
                let oldest = live.len() / 2;
                let done: Vec<u32> = live[..oldest].iter().map(|(_, id)| *id).collect();
                let freed = ring.reclaim(|id| done.contains(id));
                assert_eq!(freed.len(), done.len());
                live.drain(..oldest);
            }
            assert_eq!(ring.busy_len(), live.len());
        }
        assert!(
            waited > 1000,
            "the ring wrapped many times ({waited} waits)"
        );
    }
}
