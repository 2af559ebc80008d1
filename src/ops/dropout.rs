//! Inverted dropout: zero each element with probability p and scale the
//! survivors by 1/(1-p), so eval needs no rescaling; and drop path
//! (stochastic depth), the same with one draw per sample, which zeroes a
//! residual branch for a whole sample.
//!
//! The mask is a hash of (seed, draw index) with one seed drawn from the
//! caller's generator per call, so the host reference and the CUDA kernel
//! (kernels/dropout.cu) compute the same mask independently, nothing is
//! stored for backward, and a GPU step draws one number on the host instead
//! of one per element. Dropout's draw index is the element's; drop path's is
//! the sample's (element index / elements per sample).

use crate::backend::cpu::Float;
use crate::{with_dtype, Error, Result, Rng, Tape, Tensor, Var};

mod cuda;

/// One call's mask: element i is dropped when
/// `mask_bits(seed, i / group) < threshold`.
#[derive(Clone, Copy, Debug)]
struct Mask {
    /// "dropout" or "drop_path", for errors.
    op: &'static str,
    seed: u64,
    /// Consecutive elements that share a draw: 1 for dropout, the elements
    /// of one sample for drop path.
    group: u64,
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
    /// A fresh mask for drop probability `p` (checked by the caller), its
    /// seed drawn from `rng`.
    fn draw(op: &'static str, p: f64, group: u64, rng: &mut Rng) -> Mask {
        Mask {
            op,
            seed: rng.next_u64(),
            group,
            threshold: (p * (1u32 << 24) as f64).round() as u32,
            scale: 1.0 / (1.0 - p),
        }
    }

    /// `x` times the mask, on the backend `x` lives on.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(dev) = x.cuda_device() {
            return cuda::apply(dev, self, x);
        }
        with_dtype!(x.dtype(), T => {
            let keep = T::from_f64(self.scale);
            let v: Vec<T> = x.data::<T>()?.iter().enumerate()
                .map(|(i, &u)| if mask_bits(self.seed, i as u64 / self.group) < self.threshold { T::ZERO } else { u * keep })
                .collect();
            Tensor::from_vec(v, x.shape().clone())
        })
    }
}

/// Records `x` times a fresh mask of `group`-element draws, or passes `x`
/// through when not `training` or p == 0.
fn masked(
    op: &'static str,
    tape: &Tape,
    x: &Var,
    p: f64,
    group: u64,
    training: bool,
    rng: &mut Rng,
) -> Result<Var> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::arg(op, format!("p = {p} must be in [0, 1)")));
    }
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let mask = Mask::draw(op, p, group, rng);
    let y = mask.apply(x.value())?;
    tape.record(op, &[x], y, move |g, _| Ok(vec![Some(mask.apply(g)?)]))
}

/// Applies dropout when `training`; the identity otherwise. The mask's seed
/// is drawn from `rng`, so a seeded run drops the same elements every time,
/// on the CPU and on the GPU alike.
pub fn dropout(tape: &Tape, x: &Var, p: f64, training: bool, rng: &mut Rng) -> Result<Var> {
    masked("dropout", tape, x, p, 1, training, rng)
}

/// Drop path (stochastic depth) when `training`; the identity otherwise.
/// Each sample (index 0 of `x`) is kept with probability 1 - p and scaled
/// by 1/(1-p), or zeroed whole: applied to a residual branch before the
/// add, it skips that block for the sample (timm's `drop_path` with
/// `scale_by_keep`). Seeded from `rng` like [`dropout`].
pub fn drop_path(tape: &Tape, x: &Var, p: f64, training: bool, rng: &mut Rng) -> Result<Var> {
    let n = match x.dims().first() {
        Some(&n) if n > 0 => n,
        _ => {
            return Err(Error::shape(
                "drop_path",
                format!("input {} needs a non-empty batch axis", x.shape()),
            ))
        }
    };
    let group = (x.shape().numel() / n).max(1) as u64;
    masked("drop_path", tape, x, p, group, training, rng)
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

    #[test]
    fn drop_path_keeps_or_drops_whole_samples_at_the_seeded_rate() {
        let tape = Tape::no_grad();
        for dtype in [DType::F32, DType::F64] {
            let x = tape.constant(Tensor::ones([4000, 3, 5], dtype));
            let y = drop_path(&tape, &x, 0.25, true, &mut Rng::new(4))
                .unwrap()
                .value()
                .to_f64_vec();
            let mut dropped = 0;
            for sample in y.chunks_exact(15) {
                if sample[0] == 0.0 {
                    dropped += 1;
                } else {
                    assert!((sample[0] - 1.0 / 0.75).abs() < 1e-6, "{}", sample[0]);
                }
                assert!(
                    sample.iter().all(|&v| v == sample[0]),
                    "one draw per sample"
                );
            }
            let rate = dropped as f64 / 4000.0;
            assert!((rate - 0.25).abs() < 0.03, "{rate}");
            let again = drop_path(&tape, &x, 0.25, true, &mut Rng::new(4)).unwrap();
            assert_eq!(again.value().to_f64_vec(), y);
            let eval = drop_path(&tape, &x, 0.25, false, &mut Rng::new(4)).unwrap();
            assert!(eval.value().shares_storage(x.value()));
        }
        let x = tape.constant(Tensor::ones([2, 3], DType::F32));
        assert!(drop_path(&tape, &x, 1.0, true, &mut Rng::new(1)).is_err());
        let empty = tape.constant(Tensor::ones([0, 3], DType::F32));
        let e = drop_path(&tape, &empty, 0.1, true, &mut Rng::new(1)).unwrap_err();
        assert!(e.to_string().contains("drop_path"), "{e}");
    }

    #[test]
    fn drop_path_gradient_is_the_mask_times_the_scale() {
        // Seed 9 keeps some of the 6 samples and drops others (asserted, so
        // the check covers both).
        let x = Tensor::randn([6, 2, 3], 1.0, DType::F64, &mut Rng::new(2));
        let tape = Tape::no_grad();
        let y = drop_path(
            &tape,
            &tape.constant(x.clone()),
            0.5,
            true,
            &mut Rng::new(9),
        )
        .unwrap()
        .value()
        .to_f64_vec();
        let kept = y.chunks_exact(6).filter(|s| s[0] != 0.0).count();
        assert!(kept > 0 && kept < 6, "{kept} of 6 kept");
        check_gradients(&[x], 1e-6, |t, v| {
            drop_path(t, &v[0], 0.5, true, &mut Rng::new(9))
        })
        .unwrap();
    }
}
