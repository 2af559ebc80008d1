//! add, sub, mul, div with NumPy broadcasting (batch, channel, scalar, or any
//! axes of size 1). The forward is tensor_math/binary.rs; backward sums the
//! gradient over the broadcast axes.

pub(crate) mod cuda;

use crate::tensor_math::binary::{forward as binary_forward, BinOp};
use crate::tensor_math::strided::{broadcast_strides, for_each_offset, sum_to_shape};
use crate::{with_dtype, Result, Shape, Tape, Tensor, Var};

fn binary(tape: &Tape, op: BinOp, a: &Var, b: &Var) -> Result<Var> {
    let out = binary_forward(op, a.value(), b.value())?;
    let (ta, tb) = (a.value().clone(), b.value().clone());
    let out_shape = out.shape().clone();
    let dev = out.cuda_device().cloned();
    tape.record(op.name(), &[a, b], out, move |g, needs| {
        if let Some(dev) = &dev {
            return cuda::backward(dev, op, g, &ta, &tb, needs);
        }
        with_dtype!(g.dtype(), T => {
            let gd = g.data::<T>()?;
            let (x, y) = (ta.data::<T>()?, tb.data::<T>()?);
            // Per-element partials over the broadcast output, then reduced.
            let sa = broadcast_strides(ta.shape(), out_shape.rank());
            let sb = broadcast_strides(tb.shape(), out_shape.rank());
            let mut oa = Vec::with_capacity(gd.len());
            for_each_offset(out_shape.dims(), &sa, |_, o| oa.push(o));
            let mut ob = Vec::with_capacity(gd.len());
            for_each_offset(out_shape.dims(), &sb, |_, o| ob.push(o));
            let partial = |f: &dyn Fn(T, T, T) -> T, shape: &Shape| -> Result<Tensor> {
                let full: Vec<T> = (0..gd.len()).map(|i| f(gd[i], x[oa[i]], y[ob[i]])).collect();
                Tensor::from_vec(sum_to_shape(&full, &out_shape, shape), shape.clone())
            };
            let ga = if needs[0] {
                Some(match op {
                    BinOp::Add | BinOp::Sub => partial(&|g, _, _| g, ta.shape())?,
                    BinOp::Mul => partial(&|g, _, q| g * q, ta.shape())?,
                    BinOp::Div => partial(&|g, _, q| g / q, ta.shape())?,
                })
            } else {
                None
            };
            let gb = if needs[1] {
                Some(match op {
                    BinOp::Add => partial(&|g, _, _| g, tb.shape())?,
                    BinOp::Sub => partial(&|g, _, _| -g, tb.shape())?,
                    BinOp::Mul => partial(&|g, p, _| g * p, tb.shape())?,
                    BinOp::Div => partial(&|g, p, q| -g * p / (q * q), tb.shape())?,
                })
            } else {
                None
            };
            Ok(vec![ga, gb])
        })
    })
}

/// `a + b`, broadcasting.
pub fn add(tape: &Tape, a: &Var, b: &Var) -> Result<Var> {
    binary(tape, BinOp::Add, a, b)
}

/// `a - b`, broadcasting.
pub fn sub(tape: &Tape, a: &Var, b: &Var) -> Result<Var> {
    binary(tape, BinOp::Sub, a, b)
}

/// `a * b` elementwise, broadcasting.
pub fn mul(tape: &Tape, a: &Var, b: &Var) -> Result<Var> {
    binary(tape, BinOp::Mul, a, b)
}

/// `a / b` elementwise, broadcasting.
pub fn div(tape: &Tape, a: &Var, b: &Var) -> Result<Var> {
    binary(tape, BinOp::Div, a, b)
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
    fn broadcast_values_over_channels_and_batch() {
        let tape = Tape::no_grad();
        let x = tape.constant(t(&[1., 2., 3., 4., 5., 6.], &[2, 3]));
        let c = tape.constant(t(&[10., 20., 30.], &[3]));
        let r = tape.constant(t(&[100., 200.], &[2, 1]));
        assert_eq!(
            add(&tape, &x, &c).unwrap().value().to_f64_vec(),
            [11., 22., 33., 14., 25., 36.]
        );
        assert_eq!(
            sub(&tape, &x, &r).unwrap().value().to_f64_vec(),
            [-99., -98., -97., -196., -195., -194.]
        );
        assert_eq!(
            mul(&tape, &r, &c).unwrap().value().to_f64_vec(),
            [1000., 2000., 3000., 2000., 4000., 6000.]
        );
        assert_eq!(div(&tape, &x, &c).unwrap().value().to_f64_vec()[5], 0.2);
    }

    #[test]
    fn mismatched_shapes_name_both() {
        let tape = Tape::no_grad();
        let a = tape.constant(Tensor::zeros([2, 3], DType::F32));
        let b = tape.constant(Tensor::zeros([4], DType::F32));
        let e = add(&tape, &a, &b).unwrap_err().to_string();
        assert!(
            e.contains("add") && e.contains("[2, 3]") && e.contains("[4]"),
            "{e}"
        );
        let c = tape.constant(Tensor::zeros([2, 3], DType::F64));
        assert!(mul(&tape, &a, &c)
            .unwrap_err()
            .to_string()
            .contains("dtype"));
    }

    #[test]
    fn gradcheck_all_four_with_broadcasting() {
        let mut rng = Rng::new(11);
        // NHWC activation with a per-channel vector, a per-sample [N,1,1,1] factor and a scalar.
        let shapes: [(&[usize], &[usize]); 4] = [
            (&[3, 5, 2, 7], &[7]),
            (&[3, 5, 2, 7], &[3, 1, 1, 1]),
            (&[2, 3], &[]),
            (&[1, 4], &[3, 1]),
        ];
        for (sa, sb) in shapes {
            let a = Tensor::randn(sa, 1.0, DType::F64, &mut rng);
            // Keep divisors away from zero so central differences stay accurate.
            let b = Tensor::uniform(sb, 0.5, 2.0, DType::F64, &mut rng);
            for f in [add, sub, mul, div] {
                check_gradients(&[a.clone(), b.clone()], 1e-6, |tape, v| {
                    f(tape, &v[0], &v[1])
                })
                .unwrap();
            }
        }
    }
}
