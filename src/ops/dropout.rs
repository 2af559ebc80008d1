//! Inverted dropout: zero each element with probability p and scale the
//! survivors by 1/(1-p), so eval needs no rescaling.
//!
//! The mask is a hash of (seed, element index) with one seed drawn from the
//! caller's generator per call, so the host reference and the CUDA kernel
//! (kernels/dropout.cu) compute the same mask independently, nothing is
//! stored for backward, and a GPU step draws one number on the host instead
//! of one per element.

use crate::backend::cpu::Float;
use crate::{with_dtype, Error, Result, Rng, Tape, Tensor, Var};

mod cuda;

/// One call's mask: element i is dropped when `mask_bits(seed, i) < threshold`.
#[derive(Clone, Copy, Debug)]
struct Mask {
    seed: u64,
    /// p in units of 2^-24, the resolution of `mask_bits`.
    threshold: u32,
    scale: f64,
}

/// 24 uniform bits for element `i`: the SplitMix64 finaliser over the seed
/// advanced by i + 1 golden-ratio steps (kernels/dropout.cu repeats it).
fn mask_bits(seed: u64, i: u64) -> u32 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as u32
}

impl Mask {
    /// `x` times the mask, on the backend `x` lives on.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(dev) = x.cuda_device() {
            return cuda::apply(dev, self, x);
        }
        with_dtype!(x.dtype(), T => {
            let keep = T::from_f64(self.scale);
            let v: Vec<T> = x.data::<T>()?.iter().enumerate()
                .map(|(i, &u)| if mask_bits(self.seed, i as u64) < self.threshold { T::ZERO } else { u * keep })
                .collect();
            Tensor::from_vec(v, x.shape().clone())
        })
    }
}

/// Applies dropout when `training`; the identity otherwise. The mask's seed
/// is drawn from `rng`, so a seeded run drops the same elements every time,
/// on the CPU and on the GPU alike.
pub fn dropout(tape: &Tape, x: &Var, p: f64, training: bool, rng: &mut Rng) -> Result<Var> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::arg("dropout", format!("p = {p} must be in [0, 1)")));
    }
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let mask = Mask {
        seed: rng.next_u64(),
        threshold: (p * (1u32 << 24) as f64).round() as u32,
        scale: 1.0 / (1.0 - p),
    };
    let y = mask.apply(x.value())?;
    tape.record("dropout", &[x], y, move |g, _| {
        Ok(vec![Some(mask.apply(g)?)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::DType;

    #[test]
    fn seeded_rate_and_scale() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::ones([10_000], DType::F32));
        let y = dropout(&tape, &x, 0.3, true, &mut Rng::new(1))
            .unwrap()
            .value()
            .to_f64_vec();
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / 1e4;
        assert!((dropped - 0.3).abs() < 0.02, "{dropped}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        let y2 = dropout(&tape, &x, 0.3, true, &mut Rng::new(1))
            .unwrap()
            .value()
            .to_f64_vec();
        assert_eq!(y, y2);
        let eval = dropout(&tape, &x, 0.3, false, &mut Rng::new(1)).unwrap();
        assert!(eval.value().shares_storage(x.value()));
        assert!(dropout(&tape, &x, 1.0, true, &mut Rng::new(1)).is_err());
    }

    #[test]
    fn gradcheck_with_fixed_mask() {
        let x = Tensor::randn([3, 7], 1.0, DType::F64, &mut Rng::new(2));
        check_gradients(&[x], 1e-6, |t, v| {
            dropout(t, &v[0], 0.4, true, &mut Rng::new(9))
        })
        .unwrap();
    }
}
