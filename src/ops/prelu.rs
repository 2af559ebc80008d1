//! PReLU, the learned leaky ReLU of face-recognition networks (IResNet):
//! `y = x` where x > 0, `a[c] · x` elsewhere, with one slope per channel of
//! the last axis (NHWC activations, or [N, F] vectors) or one slope shared
//! by every element. The shared form is the per-channel one on x seen as
//! [numel, 1], so both run the same code.
//!
//! Backward, following PyTorch (the derivative at x = 0 is the slope's):
//! dx = dy where x > 0, a·dy elsewhere; da[c] = Σ dy·x over the elements of
//! channel c with x <= 0, summed in a fixed order on both backends, so the
//! slope gradient is deterministic.

mod cuda;

use crate::backend::cpu::Float;
use crate::tensor::check_same_dtype;
use crate::{with_dtype, Error, Result, Tape, Tensor, Var};

const OP: &str = "prelu";

/// PReLU of x (any rank >= 1) with slopes `a`: [C] for C = x's last dim, or
/// [1] for one shared slope.
pub fn prelu(tape: &Tape, x: &Var, a: &Var) -> Result<Var> {
    check_same_dtype(OP, x.value(), a.value())?;
    let last = x.dims().last().copied();
    let c = match a.dims() {
        [1] => 1,
        &[c] if Some(c) == last => c,
        _ => {
            return Err(Error::shape(
                OP,
                format!(
                    "slopes {} must be [C] for the input's last dim C, or [1], with input {}",
                    a.shape(),
                    x.shape()
                ),
            ))
        }
    };
    let (xt, at) = (x.value().clone(), a.value().clone());
    if let Some(dev) = crate::tensor::same_device(OP, &[&xt, &at])? {
        let y = cuda::forward(&dev, &xt, &at, c)?;
        return tape.record(OP, &[x, a], y, move |dy, needs| {
            cuda::backward(&dev, dy, &xt, &at, c, needs)
        });
    }
    let y = with_dtype!(xt.dtype(), T => {
        let v = forward_ref(xt.data::<T>()?, at.data::<T>()?);
        Tensor::from_vec(v, xt.shape().clone())?
    });
    tape.record(OP, &[x, a], y, move |dy, needs| {
        with_dtype!(dy.dtype(), T => {
            let (dx, da) = backward_ref(dy.data::<T>()?, xt.data::<T>()?, at.data::<T>()?, needs);
            Ok(vec![
                dx.map(|v| Tensor::from_vec(v, xt.shape().clone())).transpose()?,
                da.map(|v| Tensor::from_vec(v, at.shape().clone())).transpose()?,
            ])
        })
    })
}

/// y over x seen as rows of `a.len()` channels.
fn forward_ref<T: Float>(x: &[T], a: &[T]) -> Vec<T> {
    let mut y = x.to_vec();
    for row in y.chunks_exact_mut(a.len()) {
        for (v, &s) in row.iter_mut().zip(a) {
            if *v <= T::ZERO {
                *v *= s;
            }
        }
    }
    y
}

/// (dx, da), each only where `needs` asks; da sums the rows in order.
fn backward_ref<T: Float>(
    dy: &[T],
    x: &[T],
    a: &[T],
    needs: &[bool],
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    let c = a.len();
    let mut dx = needs[0].then(|| dy.to_vec());
    let mut da = needs[1].then(|| vec![T::ZERO; c]);
    for (r, (gr, xr)) in dy.chunks_exact(c).zip(x.chunks_exact(c)).enumerate() {
        for j in 0..c {
            if xr[j] > T::ZERO {
                continue;
            }
            if let Some(dx) = &mut dx {
                dx[r * c + j] = gr[j] * a[j];
            }
            if let Some(da) = &mut da {
                da[j] += gr[j] * xr[j];
            }
        }
    }
    (dx, da)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    /// Values pinned by PyTorch:
    /// ```python
    /// x = torch.tensor([[-2.0, 0.5, 0.0], [3.0, -1.5, -0.25]], dtype=torch.float64, requires_grad=True)
    /// a = torch.tensor([0.25, -0.5, 2.0], dtype=torch.float64, requires_grad=True)
    /// y = torch.nn.functional.prelu(x, a)   # on [N, C] PyTorch's channel axis is the last
    /// y.backward(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64))
    /// y      -> [[-0.5, 0.5, 0.0], [3.0, 0.75, -0.5]]
    /// x.grad -> [[0.25, 2.0, 6.0], [4.0, -2.5, 12.0]]
    /// a.grad -> [-2.0, -7.5, -1.5]
    /// ```
    #[test]
    fn matches_pytorch_values() {
        let mut p = crate::Params::new();
        let x = Tensor::from_f64s(&[-2.0, 0.5, 0.0, 3.0, -1.5, -0.25], [2, 3], DType::F64).unwrap();
        let a = Tensor::from_f64s(&[0.25, -0.5, 2.0], [3], DType::F64).unwrap();
        let (xi, ai) = (p.add("x", x).unwrap(), p.add("a", a).unwrap());
        let tape = Tape::new();
        let (xv, av) = (tape.param(&p, xi), tape.param(&p, ai));
        let y = prelu(&tape, &xv, &av).unwrap();
        assert_eq!(y.value().to_f64_vec(), [-0.5, 0.5, 0.0, 3.0, 0.75, -0.5]);
        let w = tape.constant(
            Tensor::from_f64s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], DType::F64).unwrap(),
        );
        let loss = crate::ops::sum(
            &tape,
            &crate::ops::mul(&tape, &y, &w).unwrap(),
            &[0, 1],
            false,
        )
        .unwrap();
        let g = tape.backward(&loss).unwrap();
        assert_eq!(
            g.get(xi).unwrap().to_f64_vec(),
            [0.25, 2.0, 6.0, 4.0, -2.5, 12.0]
        );
        assert_eq!(g.get(ai).unwrap().to_f64_vec(), [-2.0, -7.5, -1.5]);
    }

    /// Inputs kept off the kink at 0, where the derivative jumps.
    fn off_kink(shape: &[usize], rng: &mut Rng) -> Tensor {
        let x = Tensor::randn(shape, 1.0, DType::F64, rng);
        let v: Vec<f64> = x
            .to_f64_vec()
            .iter()
            .map(|&v| if v.abs() < 0.05 { v + 0.1 } else { v })
            .collect();
        Tensor::from_f64s(&v, shape, DType::F64).unwrap()
    }

    #[test]
    fn gradcheck_per_channel_and_shared_slopes_on_odd_shapes() {
        let mut rng = Rng::new(24);
        for shape in [&[7][..], &[3, 5], &[2, 3, 5, 7]] {
            let x = off_kink(shape, &mut rng);
            let c = *shape.last().unwrap();
            for slopes in [c, 1] {
                let a = Tensor::randn([slopes], 0.5, DType::F64, &mut rng);
                check_gradients(&[x.clone(), a], 1e-6, |t, v| prelu(t, &v[0], &v[1])).unwrap();
            }
        }
    }

    #[test]
    fn the_shared_slope_equals_equal_per_channel_slopes_in_f32() {
        let mut rng = Rng::new(25);
        let x = Tensor::randn([2, 3, 4, 5], 1.0, DType::F32, &mut rng);
        let tape = Tape::no_grad();
        let xv = tape.constant(x);
        let one = tape.constant(Tensor::from_f64s(&[0.3], [1], DType::F32).unwrap());
        let five = tape.constant(Tensor::from_f64s(&[0.3; 5], [5], DType::F32).unwrap());
        let y1 = prelu(&tape, &xv, &one).unwrap().value().to_f64_vec();
        let y5 = prelu(&tape, &xv, &five).unwrap().value().to_f64_vec();
        assert_eq!(y1, y5);
        assert!(y1.iter().any(|&v| v < 0.0) && y1.iter().any(|&v| v > 0.0));
    }

    #[test]
    fn wrong_slope_shapes_and_dtypes_are_errors() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::zeros([2, 3, 3, 4], DType::F32));
        for bad in [&[3][..], &[1, 4], &[2]] {
            let a = tape.constant(Tensor::zeros(bad, DType::F32));
            let e = prelu(&tape, &x, &a).unwrap_err().to_string();
            assert!(e.contains("prelu") && e.contains("[2, 3, 3, 4]"), "{e}");
        }
        let a = tape.constant(Tensor::zeros([4], DType::F64));
        assert!(prelu(&tape, &x, &a).is_err());
    }
}
