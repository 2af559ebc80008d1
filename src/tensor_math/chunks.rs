//! The chunk table through which one launch reaches many tensors (every
//! parameter, gradient and optimizer state of a step): kernels/optim.cu's
//! `OptChunk`, uploaded per launch (64 bytes per chunk of up to 64k
//! elements). The optimizers' updates and the gradients' sum of squares
//! both read it.

use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::{Result, Tensor};
use cudarc::driver::LaunchConfig;
use std::sync::Arc;

/// Elements per chunk (one block of 256 threads each).
const CHUNK: usize = 1 << 16;
const THREADS: u32 = 256;

/// One tensor's buffers for the table: (param, grad, state1, state2, len, first).
pub(crate) struct Entry {
    pub p: u64,
    pub g: u64,
    pub s1: u64,
    pub s2: u64,
    pub len: usize,
    pub first: bool,
}

impl Entry {
    /// A gradient alone (the norm kernel reads nothing else).
    pub fn grad_only(g: u64, len: usize) -> Entry {
        Entry {
            p: 0,
            g,
            s1: 0,
            s2: 0,
            len,
            first: false,
        }
    }
}

pub(crate) fn upload_table(dev: &Arc<CudaDevice>, entries: &[Entry]) -> Result<(CudaStorage, u32)> {
    let mut table: Vec<u64> = Vec::new();
    for e in entries {
        for off in (0..e.len).step_by(CHUNK) {
            let len = CHUNK.min(e.len - off);
            table.extend([
                e.p,
                e.g,
                e.s1,
                e.s2,
                off as u64,
                len as u64,
                e.first as u64,
                0,
            ]);
        }
    }
    let chunks = (table.len() / 8) as u32;
    let storage = CudaStorage::from_host(dev, bytemuck::cast_slice::<u64, f32>(&table))?;
    Ok((storage, chunks))
}

/// One block of THREADS per chunk (every kernel of kernels/optim.cu that reads a chunk table).
pub(crate) fn chunk_config(chunks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (chunks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The sum of squares of every element of `tensors`, summed in double on
/// the device (`grad_sq_sum`); reading the result back waits for the GPU.
pub(super) fn sum_of_squares(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    tensors: &[&Tensor],
) -> Result<f64> {
    let entries = tensors
        .iter()
        .map(|g| Ok(Entry::grad_only(g.cuda(op)?.ptr(), g.numel())))
        .collect::<Result<Vec<_>>>()?;
    let (table, chunks) = upload_table(dev, &entries)?;
    if chunks == 0 {
        return Ok(0.0);
    }
    let out = CudaStorage::zeros(dev, 2)?; // one double
                                           // SAFETY: the table addresses live gradients; out holds 8 bytes;
                                           // NormParams (one u64) is passed as that u64.
    unsafe {
        dev.launch(
            "grad_sq_sum",
            chunk_config(chunks),
            &(chunks as u64),
            &[table.ptr(), out.ptr()],
        )?
    };
    let host = out.to_host()?;
    Ok(bytemuck::pod_read_unaligned(
        bytemuck::cast_slice::<f32, u8>(&host),
    ))
}
