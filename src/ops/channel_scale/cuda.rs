//! CUDA launchers for kernels/channel_scale.cu: y = x·g[n, c] and the fused
//! backward (dx = dy·g and dg = Σ_hw dy·x in one pass).

use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::ops::elementwise::cuda::{empty, ptr};
use crate::{Result, Tensor};
use std::sync::Arc;

const OP: &str = "channel_scale";

/// [samples, rows per sample, channels] of x [N, H, W, C].
fn dims(x: &Tensor) -> [usize; 3] {
    let d = x.dims();
    [d[0], d[1] * d[2], d[3]]
}

pub(super) fn forward(dev: &Arc<CudaDevice>, x: &Tensor, g: &Tensor) -> Result<Tensor> {
    let (p, cfg) = dev.per_sample_rows(OP, "cs_forward", dims(x), 1.0, false)?;
    let y = empty(dev, x.shape().clone())?;
    // SAFETY: RowsParams mirrors MtRowsParams; x and y hold N*H*W*C values, g N*C.
    unsafe {
        dev.launch(
            "cs_forward",
            cfg,
            &p,
            &[ptr(x, OP)?, ptr(g, OP)?, ptr(&y, OP)?],
        )?
    };
    Ok(y)
}

/// (dx, dg), each only where `needs` asks for it.
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    dy: &Tensor,
    x: &Tensor,
    g: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (p, cfg) = dev.per_sample_rows(OP, "cs_backward", dims(x), 1.0, false)?;
    let dx = needs[0]
        .then(|| empty(dev, x.shape().clone()))
        .transpose()?;
    let dg = needs[1]
        .then(|| -> Result<Tensor> {
            Tensor::from_cuda(CudaStorage::zeros(dev, g.numel())?, g.shape().clone())
        })
        .transpose()?;
    let out = |t: &Option<Tensor>| t.as_ref().map_or(Ok(0), |t| ptr(t, OP));
    let ptrs = [ptr(dy, OP)?, ptr(x, OP)?, ptr(g, OP)?, out(&dx)?, out(&dg)?];
    // SAFETY: as in forward; dx (when asked for) holds N*H*W*C values, dg N*C
    // zeroed for the atomic sums; a null pointer skips its output.
    unsafe { dev.launch("cs_backward", cfg, &p, &ptrs)? };
    Ok(vec![dx, dg])
}
