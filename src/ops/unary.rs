//! Elementwise unary ops: scale, relu, leaky_relu, sigmoid, tanh, exp, log,
//! gelu (exact, and its tanh approximation).
//! The forward is tensor_math/unary.rs; each derivative is written in terms
//! of the input or the output, and only that one is saved for backward.

mod cuda;

use crate::backend::cpu::Float;
use crate::tensor_math::unary::{
    forward as unary_forward, normal_cdf, Unary, GELU_TANH_A, GELU_TANH_C,
};
use crate::{with_dtype, Result, Tape, Tensor, Var};

/// Which tensor the derivative needs.
enum Saves {
    Nothing,
    Input,
    Output,
}

impl Unary {
    fn saves(self) -> Saves {
        match self {
            Unary::Scale(_) => Saves::Nothing,
            Unary::Relu | Unary::LeakyRelu(_) | Unary::Log | Unary::Gelu | Unary::GeluTanh => {
                Saves::Input
            }
            Unary::Sigmoid | Unary::Tanh | Unary::Exp => Saves::Output,
        }
    }

    /// dy/dx from the saved value `s` (input or output, per `saves`).
    fn df<T: Float>(self, s: T) -> T {
        match self {
            Unary::Scale(c) => T::from_f64(c),
            Unary::Relu => {
                if s > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            Unary::LeakyRelu(a) => {
                if s > T::ZERO {
                    T::ONE
                } else {
                    T::from_f64(a)
                }
            }
            Unary::Sigmoid => s * (T::ONE - s),
            Unary::Tanh => T::ONE - s * s,
            Unary::Exp => s,
            Unary::Log => T::ONE / s,
            // Phi(x) + x phi(x), in f64 as the forward is.
            Unary::Gelu => {
                let v = s.to_f64();
                let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
                T::from_f64(normal_cdf(v) + v * pdf)
            }
            // With u = c (x + a x^3) and t = tanh(u):
            // 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2).
            Unary::GeluTanh => {
                let (half, a, c) = (
                    T::from_f64(0.5),
                    T::from_f64(GELU_TANH_A),
                    T::from_f64(GELU_TANH_C),
                );
                let t = (c * (s + a * s * s * s)).tanh();
                let three = T::from_f64(3.0);
                half * (T::ONE + t) + half * s * (T::ONE - t * t) * c * (T::ONE + three * a * s * s)
            }
        }
    }
}

fn unary(tape: &Tape, op: Unary, x: &Var) -> Result<Var> {
    let xt = x.value();
    let dev = xt.cuda_device().cloned();
    let y = unary_forward(op, xt)?;
    let saved = match op.saves() {
        Saves::Nothing => None,
        Saves::Input => Some(xt.clone()),
        Saves::Output => Some(y.clone()),
    };
    tape.record(op.name(), &[x], y, move |g, _| {
        if let Some(d) = &dev {
            return Ok(vec![Some(cuda::backward(d, op, saved.as_ref(), g)?)]);
        }
        let gx = with_dtype!(g.dtype(), T => {
            let gd = g.data::<T>()?;
            let v: Vec<T> = match &saved {
                None => gd.iter().map(|&a| a * op.df(T::ZERO)).collect(),
                Some(s) => gd.iter().zip(s.data::<T>()?).map(|(&a, &b)| a * op.df(b)).collect(),
            };
            Tensor::from_vec(v, g.shape().clone())?
        });
        Ok(vec![Some(gx)])
    })
}

/// `s * x`.
pub fn scale(tape: &Tape, x: &Var, s: f64) -> Result<Var> {
    unary(tape, Unary::Scale(s), x)
}

/// `max(x, 0)`; the derivative at 0 is taken as 0.
pub fn relu(tape: &Tape, x: &Var) -> Result<Var> {
    unary(tape, Unary::Relu, x)
}

/// `x` for x > 0, `slope * x` otherwise.
pub fn leaky_relu(tape: &Tape, x: &Var, slope: f64) -> Result<Var> {
    unary(tape, Unary::LeakyRelu(slope), x)
}

/// Logistic sigmoid, overflow-free for large |x|.
pub fn sigmoid(tape: &Tape, x: &Var) -> Result<Var> {
    unary(tape, Unary::Sigmoid, x)
}

pub fn tanh(tape: &Tape, x: &Var) -> Result<Var> {
    unary(tape, Unary::Tanh, x)
}

pub fn exp(tape: &Tape, x: &Var) -> Result<Var> {
    unary(tape, Unary::Exp, x)
}

/// Natural log (NaN for negative inputs, as in IEEE arithmetic).
pub fn log(tape: &Tape, x: &Var) -> Result<Var> {
    unary(tape, Unary::Log, x)
}

/// GELU, the exact form `x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))`
/// (PyTorch's default `gelu`, and the Vision Transformer's).
pub fn gelu(tape: &Tape, x: &Var) -> Result<Var> {
    unary(tape, Unary::Gelu, x)
}

/// GELU's tanh approximation, `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`
/// (PyTorch's `gelu(x, approximate="tanh")`): within 5e-4 of the exact form.
pub fn gelu_tanh(tape: &Tape, x: &Var) -> Result<Var> {
    unary(tape, Unary::GeluTanh, x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    #[test]
    fn values() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::from_f64s(&[-2.0, 0.5, 3.0], [3], DType::F64).unwrap());
        let v = |r: Result<Var>| r.unwrap().value().to_f64_vec();
        assert_eq!(v(relu(&tape, &x)), [0.0, 0.5, 3.0]);
        assert_eq!(v(leaky_relu(&tape, &x, 0.1)), [-0.2, 0.5, 3.0]);
        assert_eq!(v(scale(&tape, &x, -2.0)), [4.0, -1.0, -6.0]);
        assert!((v(sigmoid(&tape, &x))[1] - 1.0 / (1.0 + (-0.5f64).exp())).abs() < 1e-15);
        assert!((v(tanh(&tape, &x))[2] - 3.0f64.tanh()).abs() < 1e-15);
        assert!((v(exp(&tape, &x))[0] - (-2.0f64).exp()).abs() < 1e-15);
        assert!((v(log(&tape, &x))[2] - 3.0f64.ln()).abs() < 1e-15);
        // torch.nn.functional.gelu(torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64))
        // and the same with approximate="tanh".
        let gelu_torch = [-0.04550026389635842, 0.34573123063700656, 2.99595030590511];
        let tanh_torch = [-0.04540230591222494, 0.34571400982514394, 2.996362607918227];
        // Ours uses libm's erfc (within an ulp), PyTorch libm's erf; the tanh
        // form uses std's tanh.
        for (got, want) in v(gelu(&tape, &x)).iter().zip(gelu_torch) {
            assert!(
                (got - want).abs() < 1e-15 * want.abs(),
                "gelu {got} vs {want}"
            );
        }
        for (got, want) in v(gelu_tanh(&tape, &x)).iter().zip(tanh_torch) {
            assert!((got - want).abs() < 1e-15, "gelu_tanh {got} vs {want}");
        }
        // The far negative tail, where `1 + erf` cancels to nothing even in
        // f64 (Python's math.erfc: x/2 erfc(-x/√2) at x = -6 and -9.5).
        let tail = tape.constant(Tensor::from_f64s(&[-6.0, -9.5], [2], DType::F64).unwrap());
        for (got, want) in v(gelu(&tape, &tail))
            .iter()
            .zip([-5.919525870226207e-09, -9.969789321594591e-21])
        {
            assert!(
                (got - want).abs() < 1e-13 * want.abs(),
                "gelu {got} vs {want}"
            );
        }
        // f32 gelu is the f64 value rounded; its tanh form, computed in f32,
        // is within a few ulp of it.
        let x32 = tape.constant(x.value().to_dtype(DType::F32));
        let rounded: Vec<f64> = gelu_torch.iter().map(|&g| g as f32 as f64).collect();
        assert_eq!(v(gelu(&tape, &x32)), rounded);
        for (got, want) in v(gelu_tanh(&tape, &x32)).iter().zip(tanh_torch) {
            assert!((got - want).abs() < 1e-6, "gelu_tanh f32 {got} vs {want}");
        }
        // Sigmoid stays finite and exact at the extremes.
        let big = tape.constant(Tensor::from_f64s(&[-1000.0, 1000.0], [2], DType::F32).unwrap());
        assert_eq!(v(sigmoid(&tape, &big)), [0.0, 1.0]);
    }

    #[test]
    fn gradcheck_every_unary_op_on_odd_shapes() {
        let mut rng = Rng::new(5);
        for shape in [&[7][..], &[3, 5], &[2, 3, 3, 5]] {
            // Inputs kept off relu's kink (|x| >= 0.05) so differences are smooth.
            let x = Tensor::randn(shape, 1.0, DType::F64, &mut rng);
            let x = Tensor::from_f64s(
                &x.to_f64_vec()
                    .iter()
                    .map(|v| if v.abs() < 0.05 { v + 0.1 } else { *v })
                    .collect::<Vec<_>>(),
                shape,
                DType::F64,
            )
            .unwrap();
            let pos = Tensor::uniform(shape, 0.2, 3.0, DType::F64, &mut rng);
            check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| scale(t, &v[0], 1.7)).unwrap();
            check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| relu(t, &v[0])).unwrap();
            check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| {
                leaky_relu(t, &v[0], 0.2)
            })
            .unwrap();
            check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| sigmoid(t, &v[0])).unwrap();
            check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| tanh(t, &v[0])).unwrap();
            check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| exp(t, &v[0])).unwrap();
            check_gradients(&[pos], 1e-6, |t, v| log(t, &v[0])).unwrap();
            check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| gelu(t, &v[0])).unwrap();
            check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| gelu_tanh(t, &v[0])).unwrap();
        }
    }
}
