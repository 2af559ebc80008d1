//! CUDA path of the GRU op: one GEMM for the input projection, then per
//! step the hidden-projection GEMM and one kernels/gru.cu launch; backward
//! is the reverse loop of gate-backward launches and recurrent GEMMs, then
//! the whole-sequence weight GEMMs (ops/recurrent/cuda.rs).

use crate::backend::cuda::launcher::{addr, empty, ptr};
use crate::backend::cuda::CudaDevice;
use crate::ops::recurrent::cuda::{self as rc, launch_step};
use crate::ops::recurrent::Dims;
use crate::{Result, Tensor};
use std::sync::Arc;

const OP: &str = "gru";

/// What backward reads, step-major: gates r, z, n [T, N, 3H], each step's
/// hidden projection [T, N, 3H], the states [T+1, N, H] and the mask flags.
pub(super) struct Saved {
    gates: Tensor,
    gh: Tensor,
    hs: Tensor,
    mask: Tensor,
}

/// Outputs [N, T, H], the final state [N, H] and what backward needs.
pub(super) fn forward(
    dev: &Arc<CudaDevice>,
    x: &Tensor,
    [w_ih, w_hh, b_ih, b_hh]: [&Tensor; 4],
    h0: Option<&Tensor>,
    mask: &[bool],
    d: &Dims,
) -> Result<(Tensor, Tensor, Saved)> {
    let (n, h, gh_w) = (d.n, d.h, d.gh());
    let mask = rc::mask_on(dev, mask)?;
    let gx = rc::input_projection(dev, OP, x, w_ih, b_ih, d)?;
    let hs = rc::states(dev, h0, d)?;
    let gates = empty(dev, [d.t, n, gh_w])?;
    let gh = empty(dev, [d.t, n, gh_w])?;
    let out = empty(dev, [n, d.t, h])?;
    for t in 0..d.t {
        let gh_t = addr(&gh, OP, t * n * gh_w)?;
        rc::hidden_projection(dev, OP, (&hs, t), [w_hh, b_hh], gh_t, d)?;
        let ptrs = [
            ptr(&gx, OP)?,
            gh_t,
            ptr(&mask, OP)?,
            addr(&hs, OP, t * n * h)?,
            addr(&hs, OP, (t + 1) * n * h)?,
            addr(&gates, OP, t * n * gh_w)?,
            ptr(&out, OP)?,
        ];
        // SAFETY: the pointers follow gru_step_forward's signature; each
        // slice is step t's [N, ·] block of a [T(+1), N, ·] buffer.
        unsafe { launch_step(dev, "gru_step_forward", d, t, &ptrs)? };
    }
    let h_last = hs.narrow(0, d.t, 1)?.reshape([n, h])?;
    Ok((
        out,
        h_last,
        Saved {
            gates,
            gh,
            hs,
            mask,
        },
    ))
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
    let step = |t: usize, gr: rc::StepGrads| {
        Ok(vec![
            ptr(g, OP)?,
            addr(&s.gates, OP, t * n * gh_w)?,
            addr(&s.gh, OP, t * n * gh_w)?,
            addr(&s.hs, OP, t * n * h)?,
            ptr(&s.mask, OP)?,
            gr.dh,
            gr.dh_prev,
            gr.dgx,
            gr.dgh_t,
        ])
    };
    // SAFETY: the list follows gru_step_backward's signature; the step
    // slices are as forward wrote them.
    unsafe { rc::reverse_steps(dev, OP, "gru_step_backward", x, w, &s.hs, d, needs, step) }
}
