//! Inverted dropout: zero each element with probability p and scale the
//! survivors by 1/(1-p), so eval needs no rescaling.

use crate::{with_dtype, Error, Result, Rng, Tape, Tensor, Var};

/// Applies dropout when `training`; the identity otherwise. The mask is drawn
/// from `rng`, so a seeded run drops the same elements every time.
pub fn dropout(tape: &Tape, x: &Var, p: f64, training: bool, rng: &mut Rng) -> Result<Var> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::arg("dropout", format!("p = {p} must be in [0, 1)")));
    }
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f64> = (0..x.value().numel())
        .map(|_| if rng.bernoulli(p) { 0.0 } else { keep })
        .collect();
    let mask = Tensor::from_f64s(&mask, x.shape().clone(), x.value().dtype())?;
    if let Some(dev) = x.value().cuda_device().cloned() {
        // The mask comes from the same seeded host generator as on the CPU
        // (identical runs on both), copied to the device explicitly.
        let mask = mask.to_device(&x.value().device())?;
        let y = crate::ops::elementwise::cuda::mul(&dev, x.value(), &mask)?;
        return tape.record("dropout", &[x], y, move |g, _| {
            Ok(vec![Some(crate::ops::elementwise::cuda::mul(
                &dev, g, &mask,
            )?)])
        });
    }
    let apply = |a: &Tensor, m: &Tensor| -> Result<Tensor> {
        with_dtype!(a.dtype(), T => {
            let v: Vec<T> = a.data::<T>()?.iter().zip(m.data::<T>()?).map(|(&u, &w)| u * w).collect();
            Tensor::from_vec(v, a.shape().clone())
        })
    };
    let y = apply(x.value(), &mask)?;
    tape.record("dropout", &[x], y, move |g, _| {
        Ok(vec![Some(apply(g, &mask)?)])
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
