//! CUDA path of the LSTM op: one GEMM for the input projection, then per
//! step the hidden-projection GEMM and one kernels/lstm.cu launch; backward
//! is the reverse loop of gate-backward launches and recurrent GEMMs, then
//! the whole-sequence weight GEMMs (ops/recurrent/cuda.rs).

use super::LstmState;
use crate::backend::cuda::launcher::{addr, empty, ptr};
use crate::backend::cuda::CudaDevice;
use crate::ops::recurrent::cuda::{self as rc, launch_step};
use crate::ops::recurrent::Dims;
use crate::{DType, Device, Result, Tensor};
use std::sync::Arc;

const OP: &str = "lstm";

/// What backward reads, step-major: activated gates i, f, g, o [T, N, 4H],
/// tanh of each written cell state [T, N, H], the hidden and cell states
/// [T+1, N, H] each (slot t is what step t read) and the mask flags.
pub(super) struct Saved {
    gates: Tensor,
    tanh_c: Tensor,
    hs: Tensor,
    cs: Tensor,
    mask: Tensor,
}

/// Outputs [N, T, H], the final state and what backward needs.
pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    x: &Tensor,
    [w_ih, w_hh, b_ih, b_hh]: [&Tensor; 4],
    [h0, c0]: [Option<&Tensor>; 2],
    mask: &[bool],
    d: &Dims,
) -> Result<(Tensor, LstmState, Saved)> {
    let (n, h, gh_w) = (d.n, d.h, d.gh());
    let mask = rc::mask_on(dev, mask)?;
    let gx = rc::input_projection(dev, OP, x, w_ih, b_ih, d)?;
    let (hs, cs) = (rc::states(dev, h0, d)?, rc::states(dev, c0, d)?);
    let gates = empty(dev, [d.t, n, gh_w])?;
    let tanh_c = empty(dev, [d.t, n, h])?;
    // One step's hidden projection, reused: the stream orders its uses.
    let gh = empty(dev, [n, gh_w])?;
    let out = empty(dev, [n, d.t, h])?;
    for t in 0..d.t {
        rc::hidden_projection(dev, OP, (&hs, t), [w_hh, b_hh], ptr(&gh, OP)?, d)?;
        let ptrs = [
            ptr(&gx, OP)?,
            ptr(&gh, OP)?,
            ptr(&mask, OP)?,
            addr(&hs, OP, t * n * h)?,
            addr(&cs, OP, t * n * h)?,
            addr(&hs, OP, (t + 1) * n * h)?,
            addr(&cs, OP, (t + 1) * n * h)?,
            addr(&gates, OP, t * n * gh_w)?,
            addr(&tanh_c, OP, t * n * h)?,
            ptr(&out, OP)?,
        ];
        // SAFETY: the pointers follow lstm_step_forward's signature; each
        // slice is step t's [N, ·] block of a [T(+1), N, ·] buffer.
        unsafe { launch_step(dev, "lstm_step_forward", d, t, &ptrs)? };
    }
    let last = |s: &Tensor| s.narrow(0, d.t, 1)?.reshape([n, h]);
    let state = LstmState {
        h: last(&hs)?,
        c: last(&cs)?,
    };
    let saved = Saved {
        gates,
        tanh_c,
        hs,
        cs,
        mask,
    };
    Ok((out, state, saved))
}

/// Gradients of (x, w_ih, w_hh, b_ih, b_hh) from the output gradient g.
pub(super) fn backward(
    dev: &Arc<CudaDevice>,
    g: &Tensor,
    x: &Tensor,
    w: [&Tensor; 2],
    s: &Saved,
    d: &Dims,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (n, h, gh_w) = (d.n, d.h, d.gh());
    // The cell-state gradient is carried in place by the kernel.
    let dc = Tensor::zeros_on([n, h], DType::F32, &Device::Cuda(dev.clone()))?;
    let step = |t: usize, gr: rc::StepGrads| {
        Ok(vec![
            ptr(g, OP)?,
            addr(&s.gates, OP, t * n * gh_w)?,
            addr(&s.cs, OP, t * n * h)?,
            addr(&s.tanh_c, OP, t * n * h)?,
            ptr(&s.mask, OP)?,
            gr.dh,
            ptr(&dc, OP)?,
            gr.dh_prev,
            gr.dgx,
            gr.dgh_t,
        ])
    };
    // SAFETY: the list follows lstm_step_backward's signature; the step
    // slices are as forward wrote them, dc its own [N, H] buffer.
    unsafe { rc::reverse_steps(dev, OP, "lstm_step_backward", x, w, &s.hs, d, needs, step) }
}
