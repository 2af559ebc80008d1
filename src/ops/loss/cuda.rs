//! CUDA launcher for kernels/pointwise_loss.cu: the losses that are a
//! (masked) mean of per-element terms (BCE, MSE, GAN), loss and gradient in
//! one pass, and their backward (seed / count, on the device).

use crate::backend::cuda::launcher::{empty, opt_ptr, ptr};
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::ops::elementwise::cuda::scale_by_device_scalar;
use crate::{Error, Result, Shape, Tape, Tensor, Var};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::Arc;

/// `LossKind` in kernels/pointwise_loss.cu.
#[derive(Clone, Copy, Debug)]
pub(super) enum Term {
    Bce = 0,
    Mse = 1,
    SoftplusNeg = 2,
    SoftplusPos = 3,
    HingeReal = 4,
    HingeFake = 5,
    Neg = 6,
}

/// Mirrors `PointwiseLossParams` in kernels/pointwise_loss.cu.
#[repr(C)]
struct PointwiseLossParams {
    n: u64,
    classes: u64,
    kind: i32,
    has_target: i32,
    invalid: f32,
    has_invalid: i32,
    count_all: i32,
    has_grad: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for PointwiseLossParams {}

/// The count is summed in f32, exact up to 2^24.
const MAX_ELEMENTS: usize = 1 << 24;

/// What a term needs besides the logits / predictions.
pub(super) struct TermInputs<'a> {
    pub target: Option<&'a Tensor>,
    /// BCE's per-class positive weights (others: ignored).
    pub pos_weight: &'a [f64],
    pub invalid: Option<f64>,
    /// Divide by all elements, not only the valid ones.
    pub count_all: bool,
}

/// The mean term as a scalar, and (gradient for a seed of 1, count) when `with_grad`.
fn mean_term(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    term: Term,
    x: &Tensor,
    inp: &TermInputs,
    with_grad: bool,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    let n = x.numel();
    if n > MAX_ELEMENTS {
        return Err(Error::arg(
            op,
            format!("the CUDA kernel counts in f32: at most {MAX_ELEMENTS} elements, found {n}"),
        ));
    }
    let pw: Vec<f32> = if inp.pos_weight.is_empty() {
        vec![1.0]
    } else {
        inp.pos_weight.iter().map(|&v| v as f32).collect()
    };
    let pw_dev = CudaStorage::from_host(dev, &pw)?;
    let ws = CudaStorage::zeros(dev, 2)?;
    let loss = empty(dev, Shape::scalar())?;
    let count = empty(dev, Shape::scalar())?;
    let grad = with_grad
        .then(|| empty(dev, x.shape().clone()))
        .transpose()?;
    let p = PointwiseLossParams {
        n: n as u64,
        classes: pw.len() as u64,
        kind: term as i32,
        has_target: inp.target.is_some() as i32,
        invalid: inp.invalid.unwrap_or(0.0) as f32,
        has_invalid: inp.invalid.is_some() as i32,
        count_all: inp.count_all as i32,
        has_grad: with_grad as i32,
    };
    let ptrs = [
        ptr(x, op)?,
        opt_ptr(inp.target, op)?,
        pw_dev.ptr(),
        opt_ptr(grad.as_ref(), op)?,
        ws.ptr(),
    ];
    // SAFETY: the params mirror the kernel's struct; x, target and grad hold
    // n values, pos_weight `classes`, the workspace 2.
    unsafe { dev.launch("loss_partial", dev.elementwise_config(n), &p, &ptrs)? };
    let one = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: as above; loss and count hold one value each.
    unsafe {
        dev.launch(
            "loss_finalize",
            one,
            &p,
            &[ws.ptr(), ptr(&loss, op)?, ptr(&count, op)?],
        )?
    };
    Ok((loss, grad.map(|g| (g, count))))
}

/// Records `sum over parts of mean(term_i(x_i))` on the tape: one launch per
/// part, the parts' losses added on the device.
pub(super) fn record_mean_terms(
    tape: &Tape,
    dev: &Arc<CudaDevice>,
    op: &'static str,
    parts: &[(&Var, Term, TermInputs)],
) -> Result<Var> {
    let mut total: Option<Tensor> = None;
    let mut grads = Vec::with_capacity(parts.len());
    for (x, term, inp) in parts {
        let with_grad = tape.is_recording() && x.requires_grad();
        let (loss, g) = mean_term(dev, op, *term, x.value(), inp, with_grad)?;
        total = Some(match total {
            None => loss,
            Some(t) => crate::tensor_math::add_same_shape(&t, &loss)?,
        });
        grads.push(g);
    }
    let total = total.ok_or_else(|| Error::arg(op, "no inputs"))?;
    let inputs: Vec<&Var> = parts.iter().map(|(x, _, _)| *x).collect();
    let dev = dev.clone();
    tape.record(op, &inputs, total, move |seed, needs| {
        grads
            .into_iter()
            .zip(needs)
            .map(|(g, &need)| {
                if !need {
                    return Ok(None);
                }
                let (g, count) =
                    g.ok_or_else(|| Error::Tape(format!("{op}: no gradient was computed")))?;
                scale_by_device_scalar(&dev, op, &g, seed, Some(&count)).map(Some)
            })
            .collect()
    })
}
