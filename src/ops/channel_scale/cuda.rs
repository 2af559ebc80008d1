//! CUDA launchers for kernels/channel_scale.cu: y = x·g[n, c] (or, fused
//! with a residual, relu(x·g[n, c] + res)) and the one-pass backward (dx =
//! dz·g and dg = Σ_hw dz·x, with dz = dy, or dy masked by y > 0 and also
//! the residual's gradient).

use crate::backend::cuda::launcher::{bf16_copy_room, empty, opt_ptr, ptr, with_bf16_room, zeros};
use crate::backend::cuda::CudaDevice;
use crate::{Result, Tensor};
use std::sync::Arc;

const OP: &str = "channel_scale";

/// [samples, rows per sample, channels] of x [N, H, W, C].
fn dims(x: &Tensor) -> [usize; 3] {
    let d = x.dims();
    [d[0], d[1] * d[2], d[3]]
}

/// y = x·g, or relu(x·g + res) with a residual; `bf16_copy`: y also
/// carries its bf16 copy ([`Tensor::with_bf16_copy`]) where C allows.
pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    x: &Tensor,
    g: &Tensor,
    res: Option<&Tensor>,
    bf16_copy: bool,
) -> Result<Tensor> {
    let (p, cfg) = dev.per_sample_rows(OP, "cs_forward", dims(x), 1.0, false)?;
    let y = empty(dev, x.shape().clone())?;
    let y16 = bf16_copy_room(dev, x.shape(), bf16_copy)?;
    let ptrs = [
        ptr(x, OP)?,
        ptr(g, OP)?,
        opt_ptr(res, OP)?,
        ptr(&y, OP)?,
        y16.as_ref().map_or(0, |s| s.ptr()),
    ];
    // SAFETY: RowsParams mirrors MtRowsParams; x, res (or null) and y hold
    // N*H*W*C values, y16 (or null) as many bf16, g N*C.
    unsafe { dev.launch("cs_forward", cfg, &p, &ptrs)? };
    with_bf16_room(y, y16)
}

/// (dx, dg, dres), each only where `needs` asks for it (dres only with
/// `fused_y`, the fused forward's output, whose positive entries pass dy).
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    dy: &Tensor,
    x: &Tensor,
    g: &Tensor,
    fused_y: Option<&Tensor>,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (p, cfg) = dev.per_sample_rows(OP, "cs_backward", dims(x), 1.0, false)?;
    let dx = needs[0]
        .then(|| empty(dev, x.shape().clone()))
        .transpose()?;
    let dg = needs[1]
        .then(|| -> Result<Tensor> { zeros(dev, g.shape().clone()) })
        .transpose()?;
    let dres = (fused_y.is_some() && needs.get(2) == Some(&true))
        .then(|| empty(dev, x.shape().clone()))
        .transpose()?;
    let ptrs = [
        ptr(dy, OP)?,
        ptr(x, OP)?,
        ptr(g, OP)?,
        opt_ptr(fused_y, OP)?,
        opt_ptr(dx.as_ref(), OP)?,
        opt_ptr(dg.as_ref(), OP)?,
        opt_ptr(dres.as_ref(), OP)?,
    ];
    // SAFETY: as in forward; y (or null), dx and dres (when asked for) hold
    // N*H*W*C values, dg N*C zeroed for the atomic sums; a null pointer
    // skips its input or output.
    unsafe { dev.launch("cs_backward", cfg, &p, &ptrs)? };
    let mut grads = vec![dx, dg];
    if fused_y.is_some() {
        grads.push(dres);
    }
    Ok(grads)
}
