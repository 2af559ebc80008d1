//! Batch normalisation over channels-last activations ([N, H, W, C], or
//! [N, C] for features): statistics per channel over every other axis.
//!
//! Training normalises with the batch mean and the biased batch variance and
//! updates the running estimates like PyTorch:
//! `running = (1 - momentum)·running + momentum·batch`, with the *unbiased*
//! variance (m / (m - 1) of the biased one, m = elements per channel).
//! Eval normalises with the running estimates. Statistics and backward sums
//! accumulate in f64 whatever the dtype, so f32 stays accurate at large m.

mod cuda;

use crate::autograd::Precision;
use crate::backend::cpu::Float;
use crate::tensor::{check_same_dtype, same_device};
use crate::{with_dtype, Error, Result, Tape, Tensor, Var};
use rayon::prelude::*;
use std::borrow::Cow;

/// Rows per parallel task of the elementwise passes.
const ROW_BLOCK: usize = 512;

/// Hyper-parameters and mode of [`batch_norm2d`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormParams {
    /// Weight of the batch statistic in the running-estimate update.
    pub momentum: f64,
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Batch statistics (and a running update) when true; running statistics otherwise.
    pub training: bool,
}

impl Default for BatchNormParams {
    /// PyTorch's defaults in training mode: momentum 0.1, eps 1e-5.
    fn default() -> Self {
        BatchNormParams {
            momentum: 0.1,
            eps: 1e-5,
            training: true,
        }
    }
}

impl BatchNormParams {
    pub fn eval() -> Self {
        BatchNormParams {
            training: false,
            ..Self::default()
        }
    }
}

/// Per-channel mean and biased variance over the rows of `x` (rows of `c`).
fn moments<T: Float>(x: &[T], c: usize) -> (Vec<f64>, Vec<f64>) {
    let m = (x.len() / c) as f64;
    let mut mean = vec![0.0; c];
    for row in x.chunks_exact(c) {
        mean.iter_mut().zip(row).for_each(|(a, v)| *a += v.to_f64());
    }
    mean.iter_mut().for_each(|a| *a /= m);
    // Two passes: the centred sum of squares avoids cancellation.
    let mut var = vec![0.0; c];
    for row in x.chunks_exact(c) {
        for ((a, v), mu) in var.iter_mut().zip(row).zip(&mean) {
            let d = v.to_f64() - mu;
            *a += d * d;
        }
    }
    var.iter_mut().for_each(|a| *a /= m);
    (mean, var)
}

fn check_vec(op: &'static str, name: &str, t: &Tensor, x: &Tensor, c: usize) -> Result<()> {
    check_same_dtype(op, x, t)?;
    if t.dims() != [c] {
        return Err(Error::shape(
            op,
            format!(
                "{name} {} for input {} with {c} channels",
                t.shape(),
                x.shape()
            ),
        ));
    }
    Ok(())
}

/// `y = weight·(x - mean)/sqrt(var + eps) + bias` per channel (the last axis).
/// `running_mean` and `running_var` ([C], same dtype) are buffers, not
/// parameters: read in eval, updated in place in training.
pub fn batch_norm2d(
    tape: &Tape,
    x: &Var,
    weight: &Var,
    bias: &Var,
    running_mean: &mut Tensor,
    running_var: &mut Tensor,
    prm: BatchNormParams,
) -> Result<Var> {
    let buffers = (running_mean, running_var);
    batch_norm_op(tape, "batch_norm2d", x, [weight, bias], buffers, prm, false)
}

/// [`batch_norm2d`] or, with `relu`, `max(0, batch_norm2d(..))` as one op
/// (ops/batch_norm_relu.rs): the ReLU's backward is the mask `y > 0` applied
/// to the incoming gradient before the batch-norm backward.
pub(super) fn batch_norm_op(
    tape: &Tape,
    op: &'static str,
    x: &Var,
    [weight, bias]: [&Var; 2],
    (running_mean, running_var): (&mut Tensor, &mut Tensor),
    prm: BatchNormParams,
    relu: bool,
) -> Result<Var> {
    let xt = x.value().clone();
    if xt.rank() < 2 {
        return Err(Error::shape(
            op,
            format!("input {} needs a batch axis and a channel axis", xt.shape()),
        ));
    }
    let c = *xt.dims().last().expect("rank >= 2");
    for (name, t) in [
        ("weight", weight.value()),
        ("bias", bias.value()),
        ("running_mean", &*running_mean),
        ("running_var", &*running_var),
    ] {
        check_vec(op, name, t, &xt, c)?;
    }
    let m = xt.numel() / c;
    if prm.training && m < 2 {
        return Err(Error::shape(
            op,
            format!(
                "training needs more than one value per channel, input {}",
                xt.shape()
            ),
        ));
    }
    if prm.eps.is_nan() || prm.eps <= 0.0 || !(0.0..=1.0).contains(&prm.momentum) {
        return Err(Error::arg(
            op,
            format!("eps must be > 0 and momentum in [0, 1]: {prm:?}"),
        ));
    }
    let gamma = weight.value().clone();
    let beta = bias.value().clone();
    let dev = same_device(op, &[&xt, &gamma, &beta, &*running_mean, &*running_var])?;
    if let Some(dev) = dev {
        let p = cuda::BnParams::new(m, c, &prm, relu);
        // Under a bf16 tape a conv reads what a 4-D batch norm + ReLU
        // computes, and a batch norm's input gradient is the output
        // gradient of the conv before it: both get bf16 copies, written in
        // the same pass, so the convs need not convert them.
        let bf16 = tape.precision() == Precision::Bf16 && xt.rank() == 4;
        let (y, stats) = cuda::forward(
            &dev,
            &p,
            &xt,
            &gamma,
            &beta,
            running_mean,
            running_var,
            bf16 && relu,
        )?;
        return tape.record(op, &[x, weight, bias], y, move |dy, needs| {
            let (dx, dw, db) = cuda::backward(&dev, &p, dy, &xt, &stats, &gamma, &beta, bf16)?;
            Ok(vec![
                needs[0].then_some(dx),
                needs[1].then_some(dw),
                needs[2].then_some(db),
            ])
        });
    }
    let (y, xhat, inv_std, mask) = with_dtype!(xt.dtype(), T => {
        let xd = xt.data::<T>()?;
        let (mean, var) = if prm.training {
            let (mean, var) = moments(xd, c);
            let mo = prm.momentum;
            let unbias = m as f64 / (m - 1) as f64;
            for (r, b) in running_mean.data_mut::<T>()?.iter_mut().zip(&mean) {
                *r = T::from_f64((1.0 - mo) * r.to_f64() + mo * b);
            }
            for (r, b) in running_var.data_mut::<T>()?.iter_mut().zip(&var) {
                *r = T::from_f64((1.0 - mo) * r.to_f64() + mo * b * unbias);
            }
            (mean, var)
        } else {
            (running_mean.to_f64_vec(), running_var.to_f64_vec())
        };
        let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + prm.eps).sqrt()).collect();
        let (gd, bd) = (gamma.data::<T>()?, beta.data::<T>()?);
        let (gd, bd): (Vec<f64>, Vec<f64>) = (gd.iter().map(|v| v.to_f64()).collect(), bd.iter().map(|v| v.to_f64()).collect());
        let mut xhat = vec![T::ZERO; xd.len()];
        let mut y = vec![T::ZERO; xd.len()];
        // Elementwise, so row blocks run in parallel with results that do
        // not depend on the split; the ReLU after the affine (relu's `y > 0`
        // on the rounded y) is applied in the same pass.
        xhat.par_chunks_mut(ROW_BLOCK * c)
            .zip(y.par_chunks_mut(ROW_BLOCK * c))
            .zip(xd.par_chunks(ROW_BLOCK * c))
            .for_each(|((hb, yb), xb)| {
                for ((hr, yr), xr) in hb.chunks_exact_mut(c).zip(yb.chunks_exact_mut(c)).zip(xb.chunks_exact(c)) {
                    // Zipped, not indexed: no bounds checks, so it vectorises.
                    let per_channel = mean.iter().zip(&inv_std).zip(gd.iter().zip(&bd));
                    for (((ho, yo), &xv), ((mu, is), (gv, bv))) in hr.iter_mut().zip(yr.iter_mut()).zip(xr).zip(per_channel) {
                        let h = (xv.to_f64() - mu) * is;
                        *ho = T::from_f64(h);
                        let v = T::from_f64(gv * h + bv);
                        *yo = if relu && !(v > T::ZERO) { T::ZERO } else { v };
                    }
                }
            });
        // Where the ReLU passed gradients: exactly where the output is
        // positive (a clamped output is 0).
        let mask = relu.then(|| y.iter().map(|&v| v > T::ZERO).collect::<Vec<bool>>());
        (Tensor::from_vec(y, xt.shape().clone())?, Tensor::from_vec(xhat, xt.shape().clone())?, inv_std, mask)
    });
    let training = prm.training;
    tape.record(op, &[x, weight, bias], y, move |dy, needs| {
        with_dtype!(dy.dtype(), T => {
            let (h, gm) = (xhat.data::<T>()?, gamma.data::<T>()?);
            let g: Cow<[T]> = match &mask {
                Some(mask) => Cow::Owned(dy.data::<T>()?.iter().zip(mask).map(|(&v, &keep)| if keep { v } else { T::ZERO }).collect()),
                None => Cow::Borrowed(dy.data::<T>()?),
            };
            // dbias = Σ dy, dweight = Σ dy·x̂ per channel, summed in row
            // order (one pass, vectorised across channels).
            let (mut sg, mut sgh) = (vec![0.0; c], vec![0.0; c]);
            for (gr, hr) in g.chunks_exact(c).zip(h.chunks_exact(c)) {
                for (((a, b), &gv), &hv) in sg.iter_mut().zip(sgh.iter_mut()).zip(gr).zip(hr) {
                    *a += gv.to_f64();
                    *b += gv.to_f64() * hv.to_f64();
                }
            }
            let dx = if needs[0] {
                let mf = m as f64;
                let k: Vec<f64> = gm.iter().zip(&inv_std).map(|(g, s)| g.to_f64() * s).collect();
                let mg: Vec<f64> = sg.iter().map(|v| v / mf).collect();
                let mut dx = vec![T::ZERO; g.len()];
                dx.par_chunks_mut(ROW_BLOCK * c)
                    .zip(g.par_chunks(ROW_BLOCK * c))
                    .zip(h.par_chunks(ROW_BLOCK * c))
                    .for_each(|((db, gb), hb)| {
                        for ((dr, gr), hr) in db.chunks_exact_mut(c).zip(gb.chunks_exact(c)).zip(hb.chunks_exact(c)) {
                            let per_channel = k.iter().zip(&mg).zip(&sgh);
                            for (((d, &gv), &hv), ((kj, mgj), sghj)) in dr.iter_mut().zip(gr).zip(hr).zip(per_channel) {
                                let gj = gv.to_f64();
                                // Through the batch statistics: k·(dy - mean(dy) - x̂·mean(dy·x̂));
                                // in eval the statistics are constants: k·dy.
                                let v = if training { kj * (gj - mgj - hv.to_f64() * sghj / mf) } else { kj * gj };
                                *d = T::from_f64(v);
                            }
                        }
                    });
                Some(Tensor::from_vec(dx, dy.shape().clone())?)
            } else {
                None
            };
            let to_t = |v: &[f64]| Tensor::from_vec(v.iter().map(|&a| T::from_f64(a)).collect::<Vec<T>>(), [c]);
            let dw = if needs[1] { Some(to_t(&sgh)?) } else { None };
            let db = if needs[2] { Some(to_t(&sg)?) } else { None };
            Ok(vec![dx, dw, db])
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    fn t(v: &[f64], s: &[usize]) -> Tensor {
        Tensor::from_f64s(v, s, DType::F64).unwrap()
    }

    #[test]
    fn training_values_and_running_update_by_hand() {
        // One channel holding [1, 2, 3, 6]: mean 3, biased var 3.5, unbiased 14/3.
        let tape = Tape::no_grad();
        let x = tape.constant(t(&[1., 10., 2., 20., 3., 30., 6., 60.], &[2, 1, 2, 2]));
        let w = tape.constant(t(&[2., 1.], &[2]));
        let b = tape.constant(t(&[0.5, 0.], &[2]));
        let (mut rm, mut rv) = (t(&[1., 0.], &[2]), t(&[1., 1.], &[2]));
        let prm = BatchNormParams {
            momentum: 0.25,
            eps: 0.0001,
            training: true,
        };
        let y = batch_norm2d(&tape, &x, &w, &b, &mut rm, &mut rv, prm)
            .unwrap()
            .into_value()
            .to_f64_vec();
        let s = (3.5f64 + 0.0001).sqrt();
        for (i, v) in [1., 2., 3., 6.].iter().enumerate() {
            assert!((y[2 * i] - (2.0 * (v - 3.0) / s + 0.5)).abs() < 1e-12);
        }
        let rm = rm.to_f64_vec();
        let rv = rv.to_f64_vec();
        assert!((rm[0] - (0.75 + 0.25 * 3.0)).abs() < 1e-12 && (rm[1] - 0.25 * 30.0).abs() < 1e-12);
        assert!((rv[0] - (0.75 + 0.25 * 14.0 / 3.0)).abs() < 1e-12);
        assert!((rv[1] - (0.75 + 0.25 * 1400.0 / 3.0)).abs() < 1e-9);
    }

    #[test]
    fn eval_uses_running_statistics_and_leaves_them() {
        let tape = Tape::no_grad();
        let x = tape.constant(t(&[1., 2., 3., 4.], &[2, 2]));
        let w = tape.constant(t(&[1., 3.], &[2]));
        let b = tape.constant(t(&[0., 1.], &[2]));
        let (mut rm, mut rv) = (t(&[1., 2.], &[2]), t(&[4., 0.25], &[2]));
        let y = batch_norm2d(
            &tape,
            &x,
            &w,
            &b,
            &mut rm,
            &mut rv,
            BatchNormParams {
                eps: 1e-12,
                ..BatchNormParams::eval()
            },
        )
        .unwrap()
        .into_value()
        .to_f64_vec();
        let want = [0.0, 1.0, 1.0, 13.0];
        assert!(
            y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-9),
            "{y:?}"
        );
        assert_eq!(rm.to_f64_vec(), [1., 2.]);
        assert_eq!(rv.to_f64_vec(), [4., 0.25]);
    }

    #[test]
    fn matches_pytorch_values() {
        // import torch
        // x = (torch.arange(2*3*1*2, dtype=torch.float64).reshape(2,3,1,2) ** 1.5 / 7).requires_grad_()  # NHWC
        // bn = torch.nn.BatchNorm2d(2, dtype=torch.float64, momentum=0.3, eps=1e-3)
        // bn.weight.data = torch.tensor([1.5, -0.5], dtype=torch.float64); bn.bias.data = torch.tensor([0.2, 0.1], dtype=torch.float64)
        // y = bn(x.permute(0,3,1,2)).permute(0,2,3,1)
        // y.backward(torch.arange(12, dtype=torch.float64).reshape(2,3,1,2) / 10 - 0.5)
        // for v in [y.flatten(), bn.running_mean, bn.running_var, x.grad.flatten(), bn.weight.grad, bn.bias.grad]:
        //     print([round(a, 12) for a in v.tolist()])
        let y_want = [
            -1.59632890212,
            0.731783055926,
            -1.214197925374,
            0.561442383173,
            -0.515499282286,
            0.318517337573,
            0.38928189849,
            0.020557048276,
            1.460718911848,
            -0.323673716237,
            2.676025299442,
            -0.708626108711,
        ];
        let dx_want = [
            -0.091678372537,
            0.020535762868,
            0.016377853311,
            -0.003525703521,
            0.057257787145,
            -0.013623097346,
            0.054406594264,
            -0.013132590409,
            0.016190700356,
            -0.003740384,
            -0.052554562539,
            0.013486012408,
        ];
        let x: Vec<f64> = (0..12).map(|v| (v as f64).powf(1.5) / 7.0).collect();
        let mut params = crate::Params::new();
        let ids = [
            params.add("x", t(&x, &[2, 3, 1, 2])).unwrap(),
            params.add("w", t(&[1.5, -0.5], &[2])).unwrap(),
            params.add("b", t(&[0.2, 0.1], &[2])).unwrap(),
        ];
        let tape = Tape::new();
        let v: Vec<Var> = ids.iter().map(|&id| tape.param(&params, id)).collect();
        let (mut rm, mut rv) = (
            Tensor::zeros([2], DType::F64),
            Tensor::ones([2], DType::F64),
        );
        let prm = BatchNormParams {
            momentum: 0.3,
            eps: 1e-3,
            training: true,
        };
        let y = batch_norm2d(&tape, &v[0], &v[1], &v[2], &mut rm, &mut rv, prm).unwrap();
        let seed: Vec<f64> = (0..12).map(|i| i as f64 / 10.0 - 0.5).collect();
        let grads = tape
            .backward_with_seed(&y, t(&seed, &[2, 3, 1, 2]))
            .unwrap();
        let close = |a: Vec<f64>, b: &[f64]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-11);
        assert!(close(y.value().to_f64_vec(), &y_want));
        assert!(close(rm.to_f64_vec(), &[0.569825422722, 0.70985445844]));
        assert!(close(rv.to_f64_vec(), &[1.605277583131, 1.8142225097]));
        assert!(close(grads.get(ids[0]).unwrap().to_f64_vec(), &dx_want));
        assert!(close(
            grads.get(ids[1]).unwrap().to_f64_vec(),
            &[2.019420180016, 2.031070882142]
        ));
        assert!(close(grads.get(ids[2]).unwrap().to_f64_vec(), &[0.0, 0.6]));
    }

    #[test]
    fn gradcheck_training_and_eval_with_and_without_relu() {
        let mut rng = Rng::new(41);
        for (shape, training) in [
            (&[2, 3, 3, 4][..], true),
            (&[3, 5][..], true),
            (&[2, 3, 1, 3][..], false),
        ] {
            let c = *shape.last().unwrap();
            let x = Tensor::randn(shape, 1.0, DType::F64, &mut rng);
            let w = Tensor::uniform([c], 0.5, 1.5, DType::F64, &mut rng);
            let b = Tensor::randn([c], 1.0, DType::F64, &mut rng);
            let rm0 = Tensor::randn([c], 0.5, DType::F64, &mut rng);
            let rv0 = Tensor::uniform([c], 0.5, 2.0, DType::F64, &mut rng);
            let prm = BatchNormParams {
                training,
                ..Default::default()
            };
            for relu in [false, true] {
                check_gradients(&[x.clone(), w.clone(), b.clone()], 1e-6, |t, v| {
                    let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
                    let buffers = (&mut rm, &mut rv);
                    batch_norm_op(t, "bn", &v[0], [&v[1], &v[2]], buffers, prm, relu)
                })
                .unwrap_or_else(|e| panic!("{shape:?} training={training} relu={relu}: {e}"));
            }
        }
    }

    #[test]
    fn bad_shapes_and_single_value_batches_are_errors() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::zeros([1, 1, 1, 3], DType::F64));
        let v3 = tape.constant(Tensor::ones([3], DType::F64));
        let (mut rm, mut rv) = (
            Tensor::zeros([3], DType::F64),
            Tensor::ones([3], DType::F64),
        );
        let e = batch_norm2d(
            &tape,
            &x,
            &v3,
            &v3,
            &mut rm,
            &mut rv,
            BatchNormParams::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("more than one value"), "{e}");
        assert!(batch_norm2d(
            &tape,
            &x,
            &v3,
            &v3,
            &mut rm,
            &mut rv,
            BatchNormParams::eval()
        )
        .is_ok());
        let mut bad = Tensor::zeros([4], DType::F64);
        let e = batch_norm2d(
            &tape,
            &x,
            &v3,
            &v3,
            &mut bad,
            &mut rv,
            BatchNormParams::eval(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("running_mean [4]") && e.contains("[1, 1, 1, 3]"),
            "{e}"
        );
    }
}
