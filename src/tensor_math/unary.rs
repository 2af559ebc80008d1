//! Elementwise unary functions on plain tensors: the forward that
//! ops/unary.rs records on the tape (with the derivatives), and the scaling
//! of a gradient in place. No tape here, so autograd can build on it.

pub(crate) mod cuda;

use crate::backend::cpu::Float;
use crate::{with_dtype, Result, Tensor};

/// Φ(x), the standard normal CDF, from erfc on the side where it is small,
/// so neither tail loses digits to `1 + erf(x/√2)` cancelling.
pub(crate) fn normal_cdf(x: f64) -> f64 {
    let z = x * std::f64::consts::FRAC_1_SQRT_2;
    if x >= 0.0 {
        1.0 - 0.5 * libm::erfc(z)
    } else {
        0.5 * libm::erfc(-z)
    }
}

/// One elementwise function (`UnaryOp` in kernels/unary.cu).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Unary {
    Scale(f64),
    Relu,
    LeakyRelu(f64),
    Sigmoid,
    Tanh,
    Exp,
    Log,
    /// `x * Phi(x)`, the exact (erf) form.
    Gelu,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, PyTorch's
    /// `approximate="tanh"`.
    GeluTanh,
}

/// sqrt(2/pi), the tanh approximation's scale.
pub(crate) const GELU_TANH_C: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of the tanh approximation.
pub(crate) const GELU_TANH_A: f64 = 0.044_715;

impl Unary {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Unary::Scale(_) => "scale",
            Unary::Relu => "relu",
            Unary::LeakyRelu(_) => "leaky_relu",
            Unary::Sigmoid => "sigmoid",
            Unary::Tanh => "tanh",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Gelu => "gelu",
            Unary::GeluTanh => "gelu_tanh",
        }
    }

    fn f<T: Float>(self, x: T) -> T {
        match self {
            Unary::Scale(s) => x * T::from_f64(s),
            Unary::Relu => x.max(T::ZERO),
            Unary::LeakyRelu(a) => {
                if x > T::ZERO {
                    x
                } else {
                    x * T::from_f64(a)
                }
            }
            Unary::Sigmoid => x.sigmoid(),
            Unary::Tanh => x.tanh(),
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            // In f64 for both dtypes (std has no erf): the f32 result is
            // the f64 value's rounding.
            Unary::Gelu => {
                let v = x.to_f64();
                T::from_f64(v * normal_cdf(v))
            }
            Unary::GeluTanh => {
                let (half, a, c) = (
                    T::from_f64(0.5),
                    T::from_f64(GELU_TANH_A),
                    T::from_f64(GELU_TANH_C),
                );
                half * x * (T::ONE + (c * (x + a * x * x * x)).tanh())
            }
        }
    }
}

/// `op(x)` elementwise, on the tensor's device.
pub(crate) fn forward(op: Unary, x: &Tensor) -> Result<Tensor> {
    if let Some(dev) = x.cuda_device() {
        return cuda::forward(dev, op, x);
    }
    with_dtype!(x.dtype(), T => {
        let v: Vec<T> = x.data::<T>()?.iter().map(|&a| op.f(a)).collect();
        Tensor::from_vec(v, x.shape().clone())
    })
}

/// Multiplies `x` by `s`: in place on the host; on a GPU the product (one
/// launch) replaces it.
pub fn scale_in_place(x: &mut Tensor, s: f64) -> Result<()> {
    if x.is_cuda() {
        *x = forward(Unary::Scale(s), x)?;
        return Ok(());
    }
    with_dtype!(x.dtype(), T => {
        let s = T::from_f64(s);
        for v in x.data_mut::<T>()? {
            *v *= s;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn scale_in_place_multiplies_each_element_in_its_dtype() {
        for dtype in [DType::F32, DType::F64] {
            let mut x = Tensor::from_f64s(&[1.5, -2.0, 0.0], [3], dtype).unwrap();
            scale_in_place(&mut x, -0.5).unwrap();
            assert_eq!(x.to_f64_vec(), [-0.75, 1.0, -0.0]);
            assert_eq!(x.dtype(), dtype);
        }
    }
}
