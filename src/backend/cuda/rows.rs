//! Host side of the row-parallel layout over channels-last [rows, C] data
//! (`mt_rows_lane` in kernels/common.cuh): blocks of `MT_ROWS_THREADS`
//! threads, each thread owning `vec` channels of every `step`-th row of its
//! block-row. Used by the memory-bound per-channel kernels (batch norm, SE
//! squeeze and channel scale).

use super::CudaDevice;
use crate::{Error, Result};
use cudarc::driver::{DeviceRepr, LaunchConfig};

/// `MT_ROWS_THREADS` in kernels/common.cuh.
pub const ROWS_THREADS: usize = 256;

/// Rows each thread handles at least, so its loads can overlap (the kernels
/// unroll their row loops by 4).
const MIN_ROWS_PER_THREAD: usize = 8;

/// Grid of one row-parallel launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowsLayout {
    /// 4 when `c % 4 == 0` (float4 accesses), else 1.
    pub vec: usize,
    /// Rows per block-row (`blockIdx.y`).
    pub chunk: u64,
    /// Block-rows: `rows.div_ceil(chunk)` (at least 1).
    pub splits: u64,
    /// Channel groups (`blockIdx.x`).
    pub groups: u32,
}

impl RowsLayout {
    /// The layout for `rows` x `c` with about `want_blocks` blocks in all:
    /// one full wave of resident blocks is enough to keep the memory system
    /// busy and leaves no tail; fewer when the rows run out first.
    pub fn new(rows: usize, c: usize, want_blocks: usize) -> RowsLayout {
        let vec = if c.is_multiple_of(4) { 4 } else { 1 };
        let q = (c / vec).max(1);
        let per_block = q.min(ROWS_THREADS);
        let groups = q.div_ceil(per_block);
        let step = ROWS_THREADS / per_block;
        let by_rows = rows.div_ceil(step * MIN_ROWS_PER_THREAD);
        let splits = want_blocks
            .div_ceil(groups)
            .min(by_rows)
            .clamp(1, u16::MAX as usize);
        let chunk = rows.div_ceil(splits).max(1);
        RowsLayout {
            vec,
            chunk: chunk as u64,
            splits: rows.div_ceil(chunk).max(1) as u64,
            groups: groups as u32,
        }
    }

    pub fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.groups, self.splits as u32, 1),
            block_dim: (ROWS_THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

impl CudaDevice {
    /// [`RowsLayout::new`] sized to one wave of `kernel`'s resident blocks.
    pub fn rows_layout(&self, kernel: &str, rows: usize, c: usize) -> Result<RowsLayout> {
        let per_sm = self
            .resident_blocks_per_sm(kernel, ROWS_THREADS as u32)?
            .max(1);
        Ok(RowsLayout::new(
            rows,
            c,
            (per_sm * self.sm_count()) as usize,
        ))
    }
}

/// Mirrors `MtRowsParams` in kernels/common.cuh: the per-sample row kernels
/// (SE squeeze, channel scale), `blockIdx.z` the sample.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RowsParams {
    rows: u64,
    c: u64,
    chunk: u64,
    splits: u64,
    vec: i32,
    reverse: i32,
    scale: f32,
    /// A kernel-specific switch (`gap_backward`: add onto dx); 0 unless set.
    pub flag: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for RowsParams {}

impl CudaDevice {
    /// Parameters and grid for `kernel` over `samples` samples of `rows` x
    /// `c` each: one wave of resident blocks shared out over the samples.
    pub fn per_sample_rows(
        &self,
        op: &'static str,
        kernel: &str,
        [samples, rows, c]: [usize; 3],
        scale: f32,
        reverse: bool,
    ) -> Result<(RowsParams, LaunchConfig)> {
        if samples > u16::MAX as usize {
            return Err(Error::shape(
                op,
                format!("the CUDA kernel takes at most 65535 samples, found {samples}"),
            ));
        }
        let per_sm = self
            .resident_blocks_per_sm(kernel, ROWS_THREADS as u32)?
            .max(1);
        let want = ((per_sm * self.sm_count()) as usize).div_ceil(samples.max(1));
        let l = RowsLayout::new(rows, c, want);
        let mut cfg = l.config();
        cfg.grid_dim.2 = samples.max(1) as u32;
        let p = RowsParams {
            rows: rows as u64,
            c: c as u64,
            chunk: l.chunk,
            splits: l.splits,
            vec: l.vec as i32,
            reverse: reverse as i32,
            scale,
            flag: 0,
        };
        Ok((p, cfg))
    }
}

/// A block of 256 threads per channel (the batch norm `*_finalize` kernels,
/// which sum a channel's block-row partials: about a thousand of them in a
/// one-wave layout, a long serial walk for one warp).
pub fn block_per_channel_config(c: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (c.max(1) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_cover_every_row_and_channel_once() {
        for (rows, c, want) in [
            (200_704, 64, 1056),
            (37, 3, 1056),
            (1000, 2048, 528),
            (5, 40, 8),
            (1, 1, 1),
        ] {
            let l = RowsLayout::new(rows, c, want);
            let q = c / l.vec;
            let per_block = q.min(ROWS_THREADS);
            assert!(c.is_multiple_of(l.vec));
            // Channel groups cover every vector column, and no more than one extra group.
            assert!(l.groups as usize * per_block >= q && (l.groups as usize - 1) * per_block < q);
            // Block-rows cover every row; the last one is not empty.
            assert!(l.splits * l.chunk >= rows as u64, "{l:?}");
            assert!((l.splits - 1) * l.chunk < rows.max(1) as u64, "{l:?}");
            assert!(l.splits <= u16::MAX as u64);
        }
        // [64, 56, 56, 64]: float4, one channel group, a wave of block-rows.
        let l = RowsLayout::new(200_704, 64, 1056);
        assert_eq!((l.vec, l.groups), (4, 1));
        assert!(l.splits > 500 && l.splits <= 1056, "{l:?}");
    }
}
