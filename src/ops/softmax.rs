//! softmax and log_softmax over the last axis, max-subtracted for stability.

mod cuda;

use crate::backend::cpu::Float;
use crate::{with_dtype, Result, Tape, Tensor, Var};

fn forward(x: &Tensor, log: bool) -> Result<Tensor> {
    if let Some(dev) = x.cuda_device() {
        return cuda::forward(dev, x, log);
    }
    let c = *x.dims().last().unwrap_or(&1);
    with_dtype!(x.dtype(), T => {
        let mut out = x.data::<T>()?.to_vec();
        for row in out.chunks_mut(c.max(1)) {
            let m = row.iter().fold(row[0], |a, &b| a.max(b));
            let mut s = T::ZERO;
            for v in row.iter_mut() {
                *v -= m;
                s += v.exp();
            }
            let ls = s.ln();
            for v in row.iter_mut() {
                *v = if log { *v - ls } else { (*v - ls).exp() };
            }
        }
        Tensor::from_vec(out, x.shape().clone())
    })
}

fn op(tape: &Tape, x: &Var, log: bool) -> Result<Var> {
    let y = forward(x.value(), log)?;
    let saved = y.clone();
    let c = *x.dims().last().unwrap_or(&1);
    tape.record(
        if log { "log_softmax" } else { "softmax" },
        &[x],
        y,
        move |g, _| {
            if let Some(dev) = saved.cuda_device() {
                return Ok(vec![Some(cuda::backward(dev, &saved, g, log)?)]);
            }
            let gx = with_dtype!(g.dtype(), T => {
                let (gd, yd) = (g.data::<T>()?, saved.data::<T>()?);
                let mut out = vec![T::ZERO; gd.len()];
                for ((o, gr), yr) in out.chunks_mut(c).zip(gd.chunks(c)).zip(yd.chunks(c)) {
                    if log {
                        // d log_softmax: g - softmax * sum(g)
                        let s: T = gr.iter().copied().sum();
                        for i in 0..c {
                            o[i] = gr[i] - yr[i].exp() * s;
                        }
                    } else {
                        // d softmax: y * (g - <g, y>)
                        let dot: T = gr.iter().zip(yr).map(|(&a, &b)| a * b).sum();
                        for i in 0..c {
                            o[i] = yr[i] * (gr[i] - dot);
                        }
                    }
                }
                Tensor::from_vec(out, g.shape().clone())?
            });
            Ok(vec![Some(gx)])
        },
    )
}

/// Softmax over the last axis.
pub fn softmax(tape: &Tape, x: &Var) -> Result<Var> {
    op(tape, x, false)
}

/// Log-softmax over the last axis.
pub fn log_softmax(tape: &Tape, x: &Var) -> Result<Var> {
    op(tape, x, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    #[test]
    fn values_are_stable_for_large_logits() {
        let tape = Tape::no_grad();
        let x = tape.constant(
            Tensor::from_f64s(&[1000.0, 1000.0, 0.0, 1.0, 2.0, 3.0], [2, 3], DType::F32).unwrap(),
        );
        let s = softmax(&tape, &x).unwrap().value().to_f64_vec();
        assert!((s[0] - 0.5).abs() < 1e-6 && s[2] == 0.0);
        let l = log_softmax(&tape, &x).unwrap().value().to_f64_vec();
        // log_softmax([1,2,3])[2] = -ln(1 + e^-1 + e^-2)
        let want = -(1.0 + (-1.0f64).exp() + (-2.0f64).exp()).ln();
        assert!((l[5] - want).abs() < 1e-6, "{} vs {want}", l[5]);
        assert!(l.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn gradcheck_softmax_and_log_softmax() {
        let x = Tensor::randn([4, 3, 7], 2.0, DType::F64, &mut Rng::new(8));
        check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| softmax(t, &v[0])).unwrap();
        check_gradients(&[x], 1e-6, |t, v| log_softmax(t, &v[0])).unwrap();
    }
}
