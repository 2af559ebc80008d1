//! What the GRU and LSTM CUDA paths share: the per-step launch of a fused
//! gate kernel (kernels/gru.cu, kernels/lstm.cu), and every product on
//! gemm.cu: the input projection of the whole sequence, each step's hidden
//! projection and recurrent gradient on slices of step-major buffers, and
//! the whole-sequence weight gradients. Nothing here waits for the GPU: the
//! time loop only queues launches on the one stream.

use super::Dims;
use crate::backend::cuda::launcher::{addr, empty, ptr};
use crate::backend::cuda::CudaDevice;
use crate::ops::matmul::cuda::{gemm, gemm_ptrs, GemmPtrs};
use crate::ops::reduce::cuda::sum_to_shape;
use crate::tensor::cuda_copy::copy_into;
use crate::{Device, Result, Shape, Tensor};
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

/// Mirrors `MtRnnStep` in kernels/common.cuh.
#[repr(C)]
struct RnnStep {
    n: u64,
    t_len: u64,
    h: u64,
    t: u64,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for RnnStep {}

/// Launches a step kernel over the N·H (sample, unit) pairs of step `t`.
///
/// # Safety
/// `ptrs` must be the kernel's pointer arguments, each addressing as much
/// of its buffer as the kernel indexes for these dims.
pub(crate) unsafe fn launch_step(
    dev: &Arc<CudaDevice>,
    kernel: &str,
    d: &Dims,
    t: usize,
    ptrs: &[u64],
) -> Result<()> {
    let p = RnnStep {
        n: d.n as u64,
        t_len: d.t as u64,
        h: d.h as u64,
        t: t as u64,
    };
    // SAFETY: RnnStep mirrors the kernel's struct; the caller vouches for ptrs.
    unsafe { dev.launch(kernel, dev.elementwise_config(d.n * d.h), &p, ptrs) }
}

/// The padding mask as f32 flags on the device (1: real frame), [N·T].
pub(crate) fn mask_on(dev: &Arc<CudaDevice>, mask: &[bool]) -> Result<Tensor> {
    let flags: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    Tensor::from_vec(flags, [mask.len()])?.to_device(&Device::Cuda(dev.clone()))
}

/// States [T+1, N, H]: slot 0 the initial state (zeros if none), slot t+1
/// what step t writes. Slots 0..T are what backward's `hprev` reads.
pub(crate) fn states(dev: &Arc<CudaDevice>, init: Option<&Tensor>, d: &Dims) -> Result<Tensor> {
    let s = Tensor::zeros_on(
        [d.t + 1, d.n, d.h],
        crate::DType::F32,
        &Device::Cuda(dev.clone()),
    )?;
    if let Some(init) = init {
        copy_into(&s, 0, init)?;
    }
    Ok(s)
}

/// `x·W_ihᵀ + b_ih` for every frame at once: [N·T, G·H], row n·T + t.
pub(crate) fn input_projection(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    x: &Tensor,
    w_ih: &Tensor,
    b_ih: &Tensor,
    d: &Dims,
) -> Result<Tensor> {
    let rows = d.n * d.t;
    gemm(
        dev,
        op,
        x,
        false,
        w_ih,
        true,
        [1, rows, d.f, d.gh()],
        Some(b_ih),
        false,
    )
}

/// `gh = h_t·W_hhᵀ + b_hh` [N, G·H] into `gh_at`, reading slot t of `hs`.
pub(crate) fn hidden_projection(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    (hs, t): (&Tensor, usize),
    [w_hh, b_hh]: [&Tensor; 2],
    gh_at: u64,
    d: &Dims,
) -> Result<()> {
    let g = GemmPtrs {
        a: addr(hs, op, t * d.n * d.h)?,
        ta: false,
        b: ptr(w_hh, op)?,
        tb: true,
        bias: ptr(b_hh, op)?,
        c: gh_at,
    };
    // SAFETY: hs slot t is [N, H], w_hh [G·H, H], b_hh [G·H] (checked by
    // recurrent::check); gh_at addresses N·G·H elements outside them.
    unsafe { gemm_ptrs(dev, g, [1, d.n, d.h, d.gh()], 0.0) }
}

/// `dh_prev += dgh_t·W_hh`: the recurrent path of step t's gate gradients.
pub(crate) fn add_hidden_grad(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    dgh_t: u64,
    w_hh: &Tensor,
    dh_prev: &Tensor,
    d: &Dims,
) -> Result<()> {
    let g = GemmPtrs {
        a: dgh_t,
        ta: false,
        b: ptr(w_hh, op)?,
        tb: false,
        bias: 0,
        c: ptr(dh_prev, op)?,
    };
    // SAFETY: dgh_t addresses [N, G·H], w_hh is [G·H, H], dh_prev [N, H] and
    // is its own buffer.
    unsafe { gemm_ptrs(dev, g, [1, d.n, d.gh(), d.h], 1.0) }
}

/// The buffers one reverse step of a cell's backward kernel writes or reads
/// besides its own saved tensors: the gate gradients (whole `dgx`, step
/// `dgh_t`), the carried hidden gradient `dh` and the `dh_prev` it becomes.
pub(crate) struct StepGrads {
    pub dgx: u64,
    pub dgh_t: u64,
    pub dh: u64,
    pub dh_prev: u64,
}

/// The backward both cells share: for t = T-1..0 one launch of `kernel`
/// with the pointers `step_ptrs` lists for step t, then the recurrent
/// product into `dh_prev`, which becomes the next step's `dh`; then the
/// whole-sequence products of `finish_backward`.
///
/// # Safety
/// `step_ptrs` must return the pointers in the order of `kernel`'s
/// signature, every saved slice sized for step t as forward wrote it.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn reverse_steps(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    kernel: &str,
    x: &Tensor,
    [w_ih, w_hh]: [&Tensor; 2],
    hs: &Tensor,
    d: &Dims,
    needs: &[bool],
    mut step_ptrs: impl FnMut(usize, StepGrads) -> Result<Vec<u64>>,
) -> Result<Vec<Option<Tensor>>> {
    let (n, h, gh_w) = (d.n, d.h, d.gh());
    let dgx = empty(dev, [n * d.t, gh_w])?;
    let dgh = empty(dev, [d.t, n, gh_w])?;
    let mut dh = Tensor::zeros_on([n, h], crate::DType::F32, &Device::Cuda(dev.clone()))?;
    let mut dh_prev = empty(dev, [n, h])?;
    for t in (0..d.t).rev() {
        let dgh_t = addr(&dgh, op, t * n * gh_w)?;
        let grads = StepGrads {
            dgx: ptr(&dgx, op)?,
            dgh_t,
            dh: ptr(&dh, op)?,
            dh_prev: ptr(&dh_prev, op)?,
        };
        let ptrs = step_ptrs(t, grads)?;
        // SAFETY: the caller vouches for the pointer list; dh and dh_prev
        // are distinct [N, H] buffers.
        unsafe { launch_step(dev, kernel, d, t, &ptrs)? };
        add_hidden_grad(dev, op, dgh_t, w_hh, &dh_prev, d)?;
        std::mem::swap(&mut dh, &mut dh_prev);
    }
    finish_backward(dev, op, [&dgx, &dgh], x, w_ih, hs, d, needs)
}

/// Gradients of (x, w_ih, w_hh, b_ih, b_hh) from the gate gradients `dgx`
/// [N·T, G·H] and `dgh` [T, N, G·H], as recurrent::finish_backward does on
/// the host; `hs` holds the states each step read in slots 0..T.
#[allow(clippy::too_many_arguments)]
fn finish_backward(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    [dgx, dgh]: [&Tensor; 2],
    x: &Tensor,
    w_ih: &Tensor,
    hs: &Tensor,
    d: &Dims,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (rows, gh) = (d.n * d.t, d.gh());
    let dx = needs[0]
        .then(|| {
            gemm(
                dev,
                op,
                dgx,
                false,
                w_ih,
                false,
                [1, rows, gh, d.f],
                None,
                false,
            )?
            .reshape([d.n, d.t, d.f])
        })
        .transpose()?;
    let dw_ih = needs[1]
        .then(|| {
            gemm(
                dev,
                op,
                dgx,
                true,
                x,
                false,
                [1, gh, rows, d.f],
                None,
                false,
            )
        })
        .transpose()?;
    let dw_hh = needs[2]
        .then(|| -> Result<Tensor> {
            let c = empty(dev, [gh, d.h])?;
            let g = GemmPtrs {
                a: ptr(dgh, op)?,
                ta: true,
                b: ptr(hs, op)?,
                tb: false,
                bias: 0,
                c: ptr(&c, op)?,
            };
            // SAFETY: dgh is [T·N, G·H], the first T·N rows of hs are
            // [T·N, H], c is a new [G·H, H].
            unsafe { gemm_ptrs(dev, g, [1, gh, rows, d.h], 0.0)? };
            Ok(c)
        })
        .transpose()?;
    let bias = |dg: &Tensor| -> Result<Tensor> {
        sum_to_shape(
            dev,
            op,
            &dg.reshape([rows, gh])?,
            &Shape::new(vec![gh]),
            1.0,
        )
    };
    Ok(vec![
        dx,
        dw_ih,
        dw_hh,
        needs[3].then(|| bias(dgx)).transpose()?,
        needs[4].then(|| bias(dgh)).transpose()?,
    ])
}
