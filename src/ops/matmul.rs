//! matmul [m,k]x[k,n], linear (x·Wᵀ + b over the last axis) and 2-D transpose.
//! All products go through the strided CPU GEMM, so transposed operands in
//! backward are views, never copies.

pub(crate) mod cuda;

use crate::backend::cpu::{gemm, Float, MatRef};
use crate::tensor::check_same_dtype;
use crate::{with_dtype, Error, Result, Shape, Tape, Tensor, Var};

/// `op(a)·op(b)` into a new [m, n] tensor, where op is an optional transpose.
fn product(
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
) -> Result<Tensor> {
    if let Some(dev) = crate::tensor::same_device("matmul", &[a, b])? {
        return cuda::gemm(&dev, "matmul", a, ta, b, tb, [1, m, k, n], None, false);
    }
    with_dtype!(a.dtype(), T => {
        let av = MatRef::new(a.data::<T>()?, if ta { k } else { m }, if ta { m } else { k });
        let bv = MatRef::new(b.data::<T>()?, if tb { n } else { k }, if tb { k } else { n });
        let mut c = vec![T::ZERO; m * n];
        gemm(T::ONE, if ta { av.t() } else { av }, if tb { bv.t() } else { bv }, T::ZERO, &mut c);
        Tensor::from_vec(c, [m, n])
    })
}

fn check_rank(op: &'static str, name: &str, t: &Tensor, rank: usize) -> Result<()> {
    if t.rank() != rank {
        return Err(Error::shape(
            op,
            format!("{name} must have rank {rank}, found shape {}", t.shape()),
        ));
    }
    Ok(())
}

/// Matrix product of [m, k] and [k, n].
pub fn matmul(tape: &Tape, a: &Var, b: &Var) -> Result<Var> {
    let (at, bt) = (a.value().clone(), b.value().clone());
    check_same_dtype("matmul", &at, &bt)?;
    check_rank("matmul", "lhs", &at, 2)?;
    check_rank("matmul", "rhs", &bt, 2)?;
    let (m, k, n) = (at.dims()[0], at.dims()[1], bt.dims()[1]);
    if bt.dims()[0] != k {
        return Err(Error::shape(
            "matmul",
            format!("{} x {}: inner dimensions differ", at.shape(), bt.shape()),
        ));
    }
    let y = product(&at, false, &bt, false, m, k, n)?;
    tape.count_product((m * k * n) as u64, [a, b]);
    tape.record("matmul", &[a, b], y, move |g, needs| {
        // dA = G·Bᵀ, dB = Aᵀ·G
        let ga = if needs[0] {
            Some(product(g, false, &bt, true, m, n, k)?)
        } else {
            None
        };
        let gb = if needs[1] {
            Some(product(&at, true, g, false, k, m, n)?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    })
}

/// `y = x·Wᵀ + b` applied over the last axis: x [.., in], W [out, in], b [out].
pub fn linear(tape: &Tape, x: &Var, w: &Var, b: Option<&Var>) -> Result<Var> {
    let (xt, wt) = (x.value().clone(), w.value().clone());
    check_same_dtype("linear", &xt, &wt)?;
    check_rank("linear", "weight", &wt, 2)?;
    let (out_f, in_f) = (wt.dims()[0], wt.dims()[1]);
    if xt.rank() < 1 || *xt.dims().last().unwrap() != in_f {
        return Err(Error::shape(
            "linear",
            format!(
                "input {} does not end in in_features = {in_f} (weight {})",
                xt.shape(),
                wt.shape()
            ),
        ));
    }
    if let Some(b) = b {
        check_same_dtype("linear", &xt, b.value())?;
        if b.dims() != [out_f] {
            return Err(Error::shape(
                "linear",
                format!("bias {} for weight {}", b.shape(), wt.shape()),
            ));
        }
    }
    let rows = xt.numel() / in_f;
    let mut out_dims = xt.dims().to_vec();
    *out_dims.last_mut().unwrap() = out_f;
    let out_shape = Shape::new(out_dims);
    let dev = crate::tensor::same_device("linear", &[&xt, &wt])?;
    let y = if let Some(dev) = &dev {
        let bt = b.map(|b| b.value());
        if let Some(bt) = bt {
            crate::tensor::same_device("linear", &[&xt, bt])?;
        }
        let y = cuda::gemm(
            dev,
            "linear",
            &xt,
            false,
            &wt,
            true,
            [1, rows, in_f, out_f],
            bt,
            false,
        )?;
        y.reshape(out_shape)?
    } else {
        let mut y = product(&xt, false, &wt, true, rows, in_f, out_f)?;
        if let Some(b) = b {
            with_dtype!(y.dtype(), T => {
                let bv = b.value().data::<T>()?.to_vec();
                for row in y.data_mut::<T>()?.chunks_mut(out_f) {
                    row.iter_mut().zip(&bv).for_each(|(a, &c)| *a += c);
                }
            });
        }
        y.reshape(out_shape)?
    };
    tape.count_product((rows * in_f * out_f) as u64, [x, w]);
    let x_shape = xt.shape().clone();
    let mut inputs = vec![x, w];
    inputs.extend(b);
    tape.record("linear", &inputs, y, move |g, needs| {
        let g2 = g.reshape([rows, out_f])?;
        let gx = if needs[0] {
            Some(product(&g2, false, &wt, false, rows, out_f, in_f)?.reshape(x_shape)?)
        } else {
            None
        };
        let gw = if needs[1] {
            Some(product(&g2, true, &xt, false, out_f, rows, in_f)?)
        } else {
            None
        };
        let mut grads = vec![gx, gw];
        if needs.len() == 3 {
            grads.push(if !needs[2] {
                None
            } else if let Some(dev) = &dev {
                Some(crate::ops::reduce::cuda::sum_to_shape(
                    dev,
                    "linear",
                    &g2,
                    &Shape::new(vec![out_f]),
                    1.0,
                )?)
            } else {
                Some(with_dtype!(g2.dtype(), T => {
                    let mut s = vec![T::ZERO; out_f];
                    for row in g2.data::<T>()?.chunks(out_f) {
                        s.iter_mut().zip(row).for_each(|(a, &c)| *a += c);
                    }
                    Tensor::from_vec(s, [out_f])?
                }))
            });
        }
        Ok(grads)
    })
}

fn transpose_tensor(t: &Tensor) -> Result<Tensor> {
    if let Some(dev) = t.cuda_device() {
        return cuda::transpose2d(dev, t);
    }
    let (r, c) = (t.dims()[0], t.dims()[1]);
    with_dtype!(t.dtype(), T => {
        let d = t.data::<T>()?;
        let mut o = vec![T::ZERO; r * c];
        for i in 0..r {
            for j in 0..c {
                o[j * r + i] = d[i * c + j];
            }
        }
        Tensor::from_vec(o, [c, r])
    })
}

/// [r, c] -> [c, r].
pub fn transpose(tape: &Tape, x: &Var) -> Result<Var> {
    check_rank("transpose", "input", x.value(), 2)?;
    let y = transpose_tensor(x.value())?;
    tape.record("transpose", &[x], y, |g, _| {
        Ok(vec![Some(transpose_tensor(g)?)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    #[test]
    fn small_values_by_hand() {
        let tape = Tape::no_grad();
        let a = tape
            .constant(Tensor::from_f64s(&[1., 2., 3., 4., 5., 6.], [2, 3], DType::F32).unwrap());
        let b = tape
            .constant(Tensor::from_f64s(&[1., 0., 0., 1., 1., 1.], [3, 2], DType::F32).unwrap());
        assert_eq!(
            matmul(&tape, &a, &b).unwrap().value().to_f64_vec(),
            [4., 5., 10., 11.]
        );
        // linear: W [2,3], b [2]
        let w = tape
            .constant(Tensor::from_f64s(&[1., 1., 1., 0., 1., 0.], [2, 3], DType::F32).unwrap());
        let bias = tape.constant(Tensor::from_f64s(&[0.5, -1.], [2], DType::F32).unwrap());
        assert_eq!(
            linear(&tape, &a, &w, Some(&bias))
                .unwrap()
                .value()
                .to_f64_vec(),
            [6.5, 1., 15.5, 4.]
        );
        assert_eq!(
            transpose(&tape, &a).unwrap().value().to_f64_vec(),
            [1., 4., 2., 5., 3., 6.]
        );
    }

    #[test]
    fn shape_errors_name_both_shapes() {
        let tape = Tape::no_grad();
        let a = tape.constant(Tensor::zeros([2, 3], DType::F32));
        let e = matmul(&tape, &a, &a).unwrap_err().to_string();
        assert!(e.contains("[2, 3] x [2, 3]"), "{e}");
        let w = tape.constant(Tensor::zeros([4, 5], DType::F32));
        let e = linear(&tape, &a, &w, None).unwrap_err().to_string();
        assert!(e.contains("[2, 3]") && e.contains("[4, 5]"), "{e}");
    }

    #[test]
    fn gradcheck_matmul_linear_transpose() {
        let mut rng = Rng::new(2);
        let mut r = |s: &[usize]| Tensor::randn(s, 1.0, DType::F64, &mut rng);
        check_gradients(&[r(&[3, 5]), r(&[5, 7])], 1e-6, |t, v| {
            matmul(t, &v[0], &v[1])
        })
        .unwrap();
        check_gradients(&[r(&[1, 1]), r(&[1, 4])], 1e-6, |t, v| {
            matmul(t, &v[0], &v[1])
        })
        .unwrap();
        check_gradients(&[r(&[5, 3]), r(&[4, 3]), r(&[4])], 1e-6, |t, v| {
            linear(t, &v[0], &v[1], Some(&v[2]))
        })
        .unwrap();
        // Leading axes are flattened: a sequence batch [B, T, in].
        check_gradients(&[r(&[2, 3, 5]), r(&[3, 5])], 1e-6, |t, v| {
            linear(t, &v[0], &v[1], None)
        })
        .unwrap();
        check_gradients(&[r(&[3, 7])], 1e-6, |t, v| transpose(t, &v[0])).unwrap();
    }
}
