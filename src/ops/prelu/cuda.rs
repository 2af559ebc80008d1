//! CUDA launchers for kernels/prelu.cu: the forward, and the backward's
//! two passes (dx with per-block-row slope partials, then one block per
//! channel adding them in double: a deterministic slope gradient).

use crate::backend::cuda::launcher::{empty, opt_ptr, ptr};
use crate::backend::cuda::{block_per_channel_config, CudaDevice, CudaStorage, RowsLayout};
use crate::{Result, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

const OP: &str = "prelu";

/// Mirrors `PreluParams` in kernels/prelu.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct PreluParams {
    rows: u64,
    c: u64,
    chunk: u64,
    splits: u64,
    vec: i32,
    pad: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for PreluParams {}

/// Parameters and layout of `kernel` over x seen as [numel / c, c].
fn laid_out(
    dev: &CudaDevice,
    kernel: &str,
    x: &Tensor,
    c: usize,
) -> Result<(PreluParams, RowsLayout)> {
    let rows = x.numel() / c;
    let l = dev.rows_layout(kernel, rows, c)?;
    let p = PreluParams {
        rows: rows as u64,
        c: c as u64,
        chunk: l.chunk,
        splits: l.splits,
        vec: l.vec as i32,
        pad: 0,
    };
    Ok((p, l))
}

/// y = x where x > 0, a[c]·x elsewhere; `c` is a's length.
pub(super) fn forward(dev: &Arc<CudaDevice>, x: &Tensor, a: &Tensor, c: usize) -> Result<Tensor> {
    let (p, l) = laid_out(dev, "prelu_forward", x, c)?;
    let y = empty(dev, x.shape().clone())?;
    // SAFETY: PreluParams mirrors the kernel's struct; x and y hold rows*c
    // values, a c.
    unsafe {
        dev.launch(
            "prelu_forward",
            l.config(),
            &p,
            &[ptr(x, OP)?, ptr(a, OP)?, ptr(&y, OP)?],
        )?
    };
    Ok(y)
}

/// (dx, da), each only where `needs` asks for it.
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    dy: &Tensor,
    x: &Tensor,
    a: &Tensor,
    c: usize,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (p, l) = laid_out(dev, "prelu_backward", x, c)?;
    let dx = needs[0]
        .then(|| empty(dev, x.shape().clone()))
        .transpose()?;
    let ws = needs[1]
        .then(|| CudaStorage::alloc(dev, l.splits as usize * c))
        .transpose()?;
    let ptrs = [
        ptr(dy, OP)?,
        ptr(x, OP)?,
        ptr(a, OP)?,
        opt_ptr(dx.as_ref(), OP)?,
        ws.as_ref().map_or(0, |s| s.ptr()),
    ];
    // SAFETY: as in forward; dx (or null) holds rows*c values, ws (or null)
    // splits*c, one partial per block-row and channel.
    unsafe { dev.launch("prelu_backward", l.config(), &p, &ptrs)? };
    let da = match ws {
        None => None,
        Some(ws) => {
            let da = empty(dev, a.shape().clone())?;
            // SAFETY: ws holds splits*c partials, da c values.
            unsafe {
                dev.launch(
                    "prelu_backward_finalize",
                    block_per_channel_config(c),
                    &p,
                    &[ws.ptr(), ptr(&da, OP)?],
                )?
            };
            Some(da)
        }
    };
    Ok(vec![dx, da])
}
