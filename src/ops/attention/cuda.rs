//! CUDA path of the attention op (kernels/attention.cu): a flash-style
//! forward (online softmax over key tiles in shared memory; the output and
//! the per-row log-sum-exp written once) and a FlashAttention-2 backward
//! that recomputes the weights from q, k and the log-sum-exp (delta =
//! rowsum(dO ∘ O), then dK/dV per key tile and dQ per query tile). No
//! [N, H, T, S] buffer is allocated in either direction.

use super::Dims;
use crate::backend::cuda::launcher::{empty, opt_ptr, ptr};
use crate::backend::cuda::CudaDevice;
use crate::ops::recurrent::cuda::mask_on;
use crate::{Error, Result, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::Arc;

const OP: &str = "attention";

/// Rows per block and per streamed tile (`ATT_TILE`).
const TILE: usize = 32;
/// Head dims one thread holds (`ATT_SLICE`).
const SLICE: usize = 16;
/// Threads per row at most: head dims up to 8·16 = 128.
const MAX_GROUP: usize = 8;

/// Mirrors `AttnParams` in kernels/attention.cu.
#[repr(C)]
struct AttnParams {
    n: u64,
    t: u64,
    s: u64,
    h: u64,
    d: u64,
    group: u32,
    scale: f32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for AttnParams {}

/// Threads per row: the power of two whose slices of 16 cover the head dim;
/// an error past 128 dims.
fn group(d: usize) -> Result<usize> {
    let g = d.div_ceil(SLICE).next_power_of_two();
    if g > MAX_GROUP {
        return Err(Error::shape(
            OP,
            format!(
                "head dim {d}: the CUDA kernels hold at most {} dims per head",
                MAX_GROUP * SLICE
            ),
        ));
    }
    Ok(g)
}

fn params(dm: &Dims) -> Result<AttnParams> {
    Ok(AttnParams {
        n: dm.n as u64,
        t: dm.t as u64,
        s: dm.s as u64,
        h: dm.h as u64,
        d: dm.d as u64,
        group: group(dm.d)? as u32,
        scale: (1.0 / (dm.d as f64).sqrt()) as f32,
    })
}

/// Launches `kernel` with a block per (sample, head, tile of `len` rows):
/// 32 rows of `group` threads, with two tiles of 32 rows × 16·group floats
/// and two of 32 floats of shared memory. Nothing to launch for no rows.
fn launch_tiles(
    dev: &Arc<CudaDevice>,
    kernel: &str,
    dm: &Dims,
    len: usize,
    ptrs: &[u64],
) -> Result<()> {
    let g = group(dm.d)?;
    let blocks = u32::try_from(dm.n * dm.h * len.div_ceil(TILE))
        .map_err(|_| Error::shape(OP, format!("{dm:?}: too many (sample, head, tile) blocks")))?;
    if blocks == 0 {
        return Ok(());
    }
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: ((TILE * g) as u32, 1, 1),
        shared_mem_bytes: (4 * (2 * TILE * SLICE * g + 2 * TILE)) as u32,
    };
    // SAFETY: AttnParams mirrors the kernels' struct; the callers pass each
    // kernel's pointers in its order: q and out/dq [N, T, H, D], k, v, dk, dv
    // [N, S, H, D], the mask N·S flags or null, lse and delta [N, H, T]
    // (outputs new, of those shapes); cfg gives the shared memory they index.
    unsafe { dev.launch(kernel, cfg, &params(dm)?, ptrs) }
}

/// What backward reads: the output, its per-row log-sum-exp [N, H, T] and
/// the mask flags (none: every key is real).
pub(super) struct Saved {
    out: Tensor,
    lse: Tensor,
    mask: Option<Tensor>,
}

/// The output [N, T, H, D] and what backward needs.
pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    [q, k, v]: [&Tensor; 3],
    mask: Option<&[bool]>,
    dm: &Dims,
) -> Result<(Tensor, Saved)> {
    group(dm.d)?;
    let mask = mask.map(|m| mask_on(dev, m)).transpose()?;
    let out = empty(dev, q.shape().clone())?;
    let lse = empty(dev, [dm.n, dm.h, dm.t])?;
    let ptrs = [
        ptr(q, OP)?,
        ptr(k, OP)?,
        ptr(v, OP)?,
        opt_ptr(mask.as_ref(), OP)?,
        ptr(&out, OP)?,
        ptr(&lse, OP)?,
    ];
    launch_tiles(dev, "attention_forward", dm, dm.t, &ptrs)?;
    Ok((out.clone(), Saved { out, lse, mask }))
}

/// Gradients of (q, k, v) from the output gradient g.
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    g: &Tensor,
    [q, k, v]: [&Tensor; 3],
    s: &Saved,
    dm: &Dims,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let delta = empty(dev, [dm.n, dm.h, dm.t])?;
    let ptrs = [ptr(g, OP)?, ptr(&s.out, OP)?, ptr(&delta, OP)?];
    let cfg = dev.warp_rows_config(dm.n * dm.h * dm.t);
    // SAFETY: AttnParams mirrors the kernel's struct; g and out are
    // [N, T, H, D], delta new [N, H, T].
    unsafe { dev.launch("attention_backward_delta", cfg, &params(dm)?, &ptrs)? };
    let inputs = [
        ptr(q, OP)?,
        ptr(k, OP)?,
        ptr(v, OP)?,
        opt_ptr(s.mask.as_ref(), OP)?,
        ptr(g, OP)?,
        ptr(&s.lse, OP)?,
        ptr(&delta, OP)?,
    ];
    // dK and dV come from one kernel: computed together when either is needed.
    let (dk, dv) = if needs[1] || needs[2] {
        let (dk, dv) = (
            empty(dev, k.shape().clone())?,
            empty(dev, v.shape().clone())?,
        );
        let ptrs: Vec<u64> = inputs
            .iter()
            .copied()
            .chain([ptr(&dk, OP)?, ptr(&dv, OP)?])
            .collect();
        launch_tiles(dev, "attention_backward_kv", dm, dm.s, &ptrs)?;
        (needs[1].then_some(dk), needs[2].then_some(dv))
    } else {
        (None, None)
    };
    let dq = if needs[0] {
        let dq = empty(dev, q.shape().clone())?;
        let ptrs: Vec<u64> = inputs.iter().copied().chain([ptr(&dq, OP)?]).collect();
        launch_tiles(dev, "attention_backward_q", dm, dm.t, &ptrs)?;
        Some(dq)
    } else {
        None
    };
    Ok(vec![dq, dk, dv])
}
