//! Mean squared error with an invalid-label mask.

use super::{check_target, cuda, record_scalar};
use crate::{Result, Tape, Tensor, Var};

/// What the squared errors of the valid positions are divided by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MseDenominator {
    /// The number of valid positions (a true masked mean).
    #[default]
    Valid,
    /// The number of all positions, masked ones included: what ABAW code that
    /// zeroes masked errors and then calls `.mean()` computes.
    All,
}

/// `Σ_valid (pred - target)² / denominator`; positions whose target equals
/// `invalid` (when given) are ignored. No valid position: 0.
pub fn mse_loss(
    tape: &Tape,
    pred: &Var,
    target: &Tensor,
    invalid: Option<f64>,
    denom: MseDenominator,
) -> Result<Var> {
    check_target("mse_loss", pred, target)?;
    if let Some(dev) = crate::tensor::same_device("mse_loss", &[pred.value(), target])? {
        let inp = cuda::TermInputs {
            target: Some(target),
            pos_weight: &[],
            invalid,
            count_all: denom == MseDenominator::All,
        };
        return cuda::record_mean_terms(tape, &dev, "mse_loss", &[(pred, cuda::Term::Mse, inp)]);
    }
    let (p, t) = (pred.value().to_f64_vec(), target.to_f64_vec());
    let valid = move |tv: f64| invalid != Some(tv);
    let count = match denom {
        MseDenominator::Valid => t.iter().filter(|&&tv| valid(tv)).count(),
        MseDenominator::All => t.len(),
    };
    let scale = if count == 0 { 0.0 } else { 1.0 / count as f64 };
    let sum: f64 = p
        .iter()
        .zip(&t)
        .filter(|(_, &tv)| valid(tv))
        .map(|(pv, tv)| (pv - tv) * (pv - tv))
        .sum();
    let value = if count == 0 { 0.0 } else { sum / count as f64 };
    record_scalar(tape, "mse_loss", &[pred], value, move |_| {
        let g = p
            .iter()
            .zip(&t)
            .map(|(pv, &tv)| {
                if valid(tv) {
                    2.0 * (pv - tv) * scale
                } else {
                    0.0
                }
            })
            .collect();
        vec![Some(g)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    #[test]
    fn values_by_hand() {
        let tape = Tape::no_grad();
        let p = tape.constant(Tensor::from_f64s(&[1., 2., 3., 4.], [2, 2], DType::F64).unwrap());
        let tg = Tensor::from_f64s(&[0., -5., 1., 4.], [2, 2], DType::F64).unwrap();
        let l = |inv, d| {
            mse_loss(&tape, &p, &tg, inv, d)
                .unwrap()
                .value()
                .item()
                .unwrap()
        };
        assert_eq!(l(Some(-5.0), MseDenominator::Valid), 5.0 / 3.0);
        assert_eq!(l(Some(-5.0), MseDenominator::All), 5.0 / 4.0);
        assert_eq!(l(None, MseDenominator::Valid), (1.0 + 49.0 + 4.0) / 4.0);
        let all_bad = Tensor::full([2, 2], -5.0, DType::F64);
        assert_eq!(
            mse_loss(&tape, &p, &all_bad, Some(-5.0), MseDenominator::Valid)
                .unwrap()
                .value()
                .item()
                .unwrap(),
            0.0
        );
        assert!(mse_loss(
            &tape,
            &p,
            &Tensor::zeros([4], DType::F32),
            None,
            MseDenominator::Valid
        )
        .is_err());
    }

    #[test]
    fn gradcheck_masked_and_all_denominators() {
        let mut rng = Rng::new(111);
        let p = Tensor::randn([5, 3], 1.0, DType::F64, &mut rng);
        let mut tv = Tensor::randn([5, 3], 1.0, DType::F64, &mut rng).to_f64_vec();
        tv[2] = -5.0;
        tv[7] = -5.0;
        let tg = Tensor::from_f64s(&tv, [5, 3], DType::F64).unwrap();
        for d in [MseDenominator::Valid, MseDenominator::All] {
            check_gradients(std::slice::from_ref(&p), 1e-6, |t, v| {
                mse_loss(t, &v[0], &tg, Some(-5.0), d)
            })
            .unwrap();
        }
        let mut single = vec![-5.0; 15];
        single[4] = 0.7;
        let tg = Tensor::from_f64s(&single, [5, 3], DType::F64).unwrap();
        check_gradients(std::slice::from_ref(&p), 1e-6, |t, v| {
            mse_loss(t, &v[0], &tg, Some(-5.0), MseDenominator::Valid)
        })
        .unwrap();
        let none = Tensor::full([5, 3], -5.0, DType::F64);
        let r = check_gradients(&[p], 1e-6, |t, v| {
            mse_loss(t, &v[0], &none, Some(-5.0), MseDenominator::Valid)
        })
        .unwrap();
        assert_eq!((r.analytic, r.numeric), (0.0, 0.0));
    }
}
