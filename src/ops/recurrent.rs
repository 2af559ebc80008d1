//! What the GRU and LSTM ops share: shape checks, the input projection of a
//! whole sequence as one GEMM, the per-step hidden projection, and the end of
//! backward through time (input and weight gradients as whole-sequence GEMMs).
//!
//! Layouts: x [N, T, F]; weights stacked by gate as PyTorch stores them,
//! `w_ih` [G·H, F], `w_hh` [G·H, H], `b_ih`/`b_hh` [G·H]; per-step saved
//! tensors are step-major [T, N, ·] so one step is a contiguous block.
//!
//! Padding: `mask[n·T + t]` false marks a padded frame. There the state passes
//! through unchanged and the output is zero, so padded frames (wherever they
//! sit) change neither the outputs at real frames nor any gradient.

pub(crate) mod cuda;

use crate::backend::cpu::{gemm, Float, MatRef};
use crate::backend::cuda::CudaDevice;
use crate::tensor::{check_same_dtype, same_device};
use crate::{Error, Result, Tape, Tensor, Var};
use std::sync::Arc;

/// The four parameters of one recurrent layer.
#[derive(Clone, Copy)]
pub struct RnnWeights<'a> {
    pub w_ih: &'a Var,
    pub w_hh: &'a Var,
    pub b_ih: &'a Var,
    pub b_hh: &'a Var,
}

impl<'a> RnnWeights<'a> {
    /// From `[w_ih, w_hh, b_ih, b_hh]`, the order a layer registers them.
    pub fn from_vars(v: &'a [Var; 4]) -> Self {
        RnnWeights {
            w_ih: &v[0],
            w_hh: &v[1],
            b_ih: &v[2],
            b_hh: &v[3],
        }
    }

    /// The op's inputs in the order backward returns their gradients.
    pub(crate) fn inputs(&self, x: &'a Var) -> [&'a Var; 5] {
        [x, self.w_ih, self.w_hh, self.b_ih, self.b_hh]
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub n: usize,
    pub t: usize,
    pub f: usize,
    pub h: usize,
    /// Gates per unit: 3 (GRU) or 4 (LSTM).
    pub g: usize,
}

impl Dims {
    pub fn gh(&self) -> usize {
        self.g * self.h
    }
}

/// Checks x, the weights, an initial state and the mask; returns the sizes.
pub(crate) fn check(
    op: &'static str,
    x: &Var,
    w: &RnnWeights,
    gates: usize,
    states: &[Option<&Tensor>],
    mask: Option<&[bool]>,
) -> Result<Dims> {
    let &[n, t, f] = x.dims() else {
        return Err(Error::shape(
            op,
            format!("input {} must be [N, T, F]", x.shape()),
        ));
    };
    let h = w.w_hh.dims().last().copied().unwrap_or(0);
    let d = Dims {
        n,
        t,
        f,
        h,
        g: gates,
    };
    let expect: [(&str, &Var, Vec<usize>); 4] = [
        ("w_ih", w.w_ih, vec![d.gh(), f]),
        ("w_hh", w.w_hh, vec![d.gh(), h]),
        ("b_ih", w.b_ih, vec![d.gh()]),
        ("b_hh", w.b_hh, vec![d.gh()]),
    ];
    for (name, v, want) in expect {
        check_same_dtype(op, x.value(), v.value())?;
        if v.dims() != want.as_slice() || h == 0 {
            return Err(Error::shape(
                op,
                format!(
                    "{name} {} for input {} and hidden size {h}: expected {:?} ({gates} gates)",
                    v.shape(),
                    x.shape(),
                    want
                ),
            ));
        }
    }
    for s in states.iter().flatten() {
        check_same_dtype(op, x.value(), s)?;
        if s.dims() != [n, h] {
            return Err(Error::shape(
                op,
                format!(
                    "initial state {} for input {}: expected [{n}, {h}]",
                    s.shape(),
                    x.shape()
                ),
            ));
        }
    }
    if let Some(m) = mask {
        if m.len() != n * t {
            return Err(Error::shape(
                op,
                format!(
                    "mask of {} entries for input {}: expected N·T = {}",
                    m.len(),
                    x.shape(),
                    n * t
                ),
            ));
        }
    }
    Ok(d)
}

/// Counts a layer's products on `tape`: every frame's input projection
/// W_ih·x, and the recurrent W_hh·h, whose state gradient backward carries
/// through time whenever any input needs a gradient, back to the second
/// frame (the initial state is detached).
pub(crate) fn count_products(tape: &Tape, x: &Var, w: &RnnWeights, d: &Dims) {
    let per_frame = (d.n * d.gh()) as u64;
    tape.count_product(per_frame * (d.t * d.f) as u64, [x, w.w_ih]);
    let through_time = w.inputs(x).iter().any(|v| tape.needs_grad(v));
    let dw = tape.needs_grad(w.w_hh);
    let first = d.t.min(1);
    tape.count_inner_product(per_frame * (first * d.h) as u64, [false, dw]);
    tape.count_inner_product(per_frame * ((d.t - first) * d.h) as u64, [through_time, dw]);
}

/// The GPU the op runs on: the one x, the weights and the initial states
/// live on (None on the host); mixing devices is an error naming the op.
pub(crate) fn device(
    op: &'static str,
    x: &Var,
    w: &RnnWeights,
    states: &[Option<&Tensor>],
) -> Result<Option<Arc<CudaDevice>>> {
    let mut all: Vec<&Tensor> = w.inputs(x).iter().map(|v| v.value()).collect();
    all.extend(states.iter().flatten());
    same_device(op, &all)
}

/// The mask as owned flags, all frames real when none is given.
pub(crate) fn mask_or_all(mask: Option<&[bool]>, d: &Dims) -> Vec<bool> {
    mask.map_or_else(|| vec![true; d.n * d.t], <[bool]>::to_vec)
}

/// An initial state's values, zeros when none is given.
pub(crate) fn state_or_zeros<T: Float>(s: Option<&Tensor>, d: &Dims) -> Result<Vec<T>> {
    Ok(match s {
        Some(s) => s.data::<T>()?.to_vec(),
        None => vec![T::ZERO; d.n * d.h],
    })
}

/// `x·W_ihᵀ + b_ih` for every frame at once: [N·T, G·H], row n·T + t.
pub(crate) fn input_projection<T: Float>(x: &[T], w_ih: &[T], b_ih: &[T], d: &Dims) -> Vec<T> {
    let mut gx = vec![T::ZERO; d.n * d.t * d.gh()];
    gemm(
        T::ONE,
        MatRef::new(x, d.n * d.t, d.f),
        MatRef::new(w_ih, d.gh(), d.f).t(),
        T::ZERO,
        &mut gx,
    );
    add_bias(&mut gx, b_ih);
    gx
}

/// `h·W_hhᵀ + b_hh` for one step: [N, G·H].
pub(crate) fn hidden_projection<T: Float>(h: &[T], w_hh: &[T], b_hh: &[T], d: &Dims) -> Vec<T> {
    let mut gh = vec![T::ZERO; d.n * d.gh()];
    gemm(
        T::ONE,
        MatRef::new(h, d.n, d.h),
        MatRef::new(w_hh, d.gh(), d.h).t(),
        T::ZERO,
        &mut gh,
    );
    add_bias(&mut gh, b_hh);
    gh
}

fn add_bias<T: Float>(rows: &mut [T], b: &[T]) {
    for row in rows.chunks_exact_mut(b.len()) {
        row.iter_mut().zip(b).for_each(|(v, &c)| *v += c);
    }
}

/// `dh += dgh_t·W_hh`: the recurrent path of step t's gate gradients
/// (`dgh` step-major [T·N, G·H]).
pub(crate) fn add_hidden_grad<T: Float>(dh: &mut [T], dgh: &[T], t: usize, w_hh: &[T], d: &Dims) {
    let step = d.n * d.gh();
    gemm(
        T::ONE,
        MatRef::new(&dgh[t * step..(t + 1) * step], d.n, d.gh()),
        MatRef::new(w_hh, d.gh(), d.h),
        T::ONE,
        dh,
    );
}

fn column_sums<T: Float>(rows: &[T], width: usize) -> Vec<T> {
    let mut s = vec![T::ZERO; width];
    for row in rows.chunks_exact(width) {
        s.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
    }
    s
}

/// What backward through time leaves for the whole-sequence GEMMs.
pub(crate) struct SequenceGrads<T> {
    /// Gradient of the input projection's output, [N·T, G·H] (row n·T + t).
    pub dgx: Vec<T>,
    /// Gradient of each step's hidden projection, step-major [T·N, G·H].
    pub dgh: Vec<T>,
}

/// Gradients of (x, w_ih, w_hh, b_ih, b_hh) from the gate gradients; `hprev`
/// is the state each step read, step-major [T·N, H].
pub(crate) fn finish_backward<T: Float>(
    g: SequenceGrads<T>,
    x: &[T],
    w_ih: &[T],
    hprev: &[T],
    d: &Dims,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let rows = d.n * d.t;
    let dx = if needs[0] {
        let mut dx = vec![T::ZERO; rows * d.f];
        gemm(
            T::ONE,
            MatRef::new(&g.dgx, rows, d.gh()),
            MatRef::new(w_ih, d.gh(), d.f),
            T::ZERO,
            &mut dx,
        );
        Some(Tensor::from_vec(dx, [d.n, d.t, d.f])?)
    } else {
        None
    };
    // dW = dGᵀ·(what the projection read), summed over every frame at once.
    let weight_grad = |dg: &[T], input: &[T], width: usize| -> Result<Tensor> {
        let mut dw = vec![T::ZERO; d.gh() * width];
        gemm(
            T::ONE,
            MatRef::new(dg, rows, d.gh()).t(),
            MatRef::new(input, rows, width),
            T::ZERO,
            &mut dw,
        );
        Tensor::from_vec(dw, [d.gh(), width])
    };
    let bias = |dg: &[T]| Tensor::from_vec(column_sums(dg, d.gh()), [d.gh()]);
    Ok(vec![
        dx,
        needs[1].then(|| weight_grad(&g.dgx, x, d.f)).transpose()?,
        needs[2]
            .then(|| weight_grad(&g.dgh, hprev, d.h))
            .transpose()?,
        needs[3].then(|| bias(&g.dgx)).transpose()?,
        needs[4].then(|| bias(&g.dgh)).transpose()?,
    ])
}

/// Inputs shared by the GRU and LSTM tests.
#[cfg(test)]
pub(crate) mod test_inputs {
    use crate::{DType, Rng, Tape, Tensor, Var};

    /// x [n, t, f] and the weights of a layer with `g` gates, N(0, std²).
    pub fn random(g: usize, [n, t, f, h]: [usize; 4], std: f64, rng: &mut Rng) -> Vec<Tensor> {
        [
            [n, t, f].as_slice(),
            &[g * h, f],
            &[g * h, h],
            &[g * h],
            &[g * h],
        ]
        .iter()
        .map(|d| Tensor::randn(*d, std, DType::F64, rng))
        .collect()
    }

    /// The by-hand case: F = H = 1, x = 0.5, weights 1, biases 0.
    pub fn unit(tape: &Tape, g: usize) -> (Var, [Var; 4]) {
        let c = |v: f64, d: &[usize]| tape.constant(Tensor::full(d, v, DType::F64));
        (
            c(0.5, &[1, 1, 1]),
            [c(1.0, &[g, 1]), c(1.0, &[g, 1]), c(0.0, &[g]), c(0.0, &[g])],
        )
    }

    /// Three sequences of five frames: full, padded at the end, and with a
    /// padded start and a gap.
    pub fn mask() -> Vec<bool> {
        [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 0, 1, 1]]
            .iter()
            .flatten()
            .map(|&m| m == 1)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Tape};

    #[test]
    fn shape_errors_name_the_tensor_and_both_shapes() {
        let tape = Tape::no_grad();
        let z = |d: &[usize]| tape.constant(Tensor::zeros(d, DType::F64));
        let (x, wi, wh, b) = (z(&[2, 5, 3]), z(&[12, 3]), z(&[12, 4]), z(&[12]));
        let w = RnnWeights {
            w_ih: &wi,
            w_hh: &wh,
            b_ih: &b,
            b_hh: &b,
        };
        let d = check("gru", &x, &w, 3, &[], None).unwrap();
        assert_eq!((d.n, d.t, d.f, d.h, d.gh()), (2, 5, 3, 4, 12));
        let e = check("lstm", &x, &w, 4, &[], None).unwrap_err().to_string();
        assert!(
            e.contains("lstm") && e.contains("w_ih [12, 3]") && e.contains("[16, 3]"),
            "{e}"
        );
        let e = check("gru", &x, &w, 3, &[], Some(&[true; 7]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mask of 7") && e.contains("10"), "{e}");
        let s = Tensor::zeros([3, 4], DType::F64);
        let e = check("gru", &x, &w, 3, &[Some(&s)], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[3, 4]") && e.contains("[2, 4]"), "{e}");
        let e = check("gru", &z(&[2, 3]), &w, 3, &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[N, T, F]"), "{e}");
    }
}
