//! Binary cross-entropy on logits for multi-label action units, with a
//! per-element ignore mask and an optional per-class positive weight.

use super::{check_target, cuda, record_scalar, sigmoid, softplus};
use crate::{Error, Result, Tape, Tensor, Var};

/// The marker for a missing action-unit label.
const IGNORE: f64 = -1.0;

/// Mean over valid elements of
/// `-(pw·t·ln σ(x) + (1 - t)·ln(1 - σ(x)))` for logits x and targets t of the
/// same shape [.., classes], computed as `(1 - t)·x + (1 + (pw - 1)·t)·softplus(-x)`
/// with a softplus that cannot overflow (PyTorch's BCEWithLogits formula).
/// Targets equal to -1 are ignored; others must lie in [0, 1]. `pos_weight`
/// (length = last axis) weighs positives per class. No valid element: 0.
pub fn bce_with_logits(
    tape: &Tape,
    logits: &Var,
    targets: &Tensor,
    pos_weight: Option<&[f64]>,
) -> Result<Var> {
    const OP: &str = "bce_with_logits";
    check_target(OP, logits, targets)?;
    let classes = *logits.dims().last().unwrap_or(&1);
    let pw: Vec<f64> = pos_weight.map_or_else(|| vec![1.0; classes], <[f64]>::to_vec);
    if pw.len() != classes {
        return Err(Error::shape(
            OP,
            format!(
                "pos_weight has {} entries for logits {}",
                pw.len(),
                logits.shape()
            ),
        ));
    }
    if let Some(dev) = crate::tensor::same_device(OP, &[logits.value(), targets])? {
        // Target values are checked on the host path only: reading them here
        // would synchronise; an out-of-range target gives a wrong loss, not UB.
        let inp = cuda::TermInputs {
            target: Some(targets),
            pos_weight: &pw,
            invalid: Some(IGNORE),
            count_all: false,
        };
        return cuda::record_mean_terms(tape, &dev, OP, &[(logits, cuda::Term::Bce, inp)]);
    }
    let (x, t) = (logits.value().to_f64_vec(), targets.to_f64_vec());
    if let Some(bad) = t
        .iter()
        .find(|&&v| v != IGNORE && !(0.0..=1.0).contains(&v))
    {
        return Err(Error::arg(
            OP,
            format!("target {bad} is neither -1 (ignore) nor in [0, 1]"),
        ));
    }
    let count = t.iter().filter(|&&v| v != IGNORE).count();
    let scale = if count == 0 { 0.0 } else { 1.0 / count as f64 };
    let mut sum = 0.0;
    for (i, (&xv, &tv)) in x.iter().zip(&t).enumerate() {
        if tv != IGNORE {
            sum += (1.0 - tv) * xv + (1.0 + (pw[i % classes] - 1.0) * tv) * softplus(-xv);
        }
    }
    record_scalar(tape, OP, &[logits], sum * scale, move |_| {
        // d/dx = (1 - t) - (1 + (pw - 1)·t)·σ(-x)  (σ(x) - t when pw = 1).
        let g = (x.iter().zip(&t).enumerate())
            .map(|(i, (&xv, &tv))| {
                if tv == IGNORE {
                    0.0
                } else {
                    ((1.0 - tv) - (1.0 + (pw[i % classes] - 1.0) * tv) * sigmoid(-xv)) * scale
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

    fn t(v: &[f64], s: &[usize]) -> Tensor {
        Tensor::from_f64s(v, s, DType::F64).unwrap()
    }

    fn loss(x: &[f64], tg: &[f64], classes: usize, pw: Option<&[f64]>) -> f64 {
        let tape = Tape::no_grad();
        let s = [x.len() / classes, classes];
        bce_with_logits(&tape, &tape.constant(t(x, &s)), &t(tg, &s), pw)
            .unwrap()
            .value()
            .item()
            .unwrap()
    }

    #[test]
    fn values_by_hand_and_extremes() {
        // x = 0: ln 2 whatever the target; the ignored element does not count.
        assert!((loss(&[0., 0., 7.], &[1., 0., -1.], 3, None) - 2f64.ln()).abs() < 1e-15);
        // Confidently right: ~0; confidently wrong: ~|x|; never inf or NaN.
        assert!(loss(&[800., -800.], &[1., 0.], 2, None).abs() < 1e-300);
        assert!((loss(&[-800., 800.], &[1., 0.], 2, None) - 800.0).abs() < 1e-9);
        // pos_weight 3 on a positive triples its term.
        assert!((loss(&[0.], &[1.], 1, Some(&[3.])) - 3.0 * 2f64.ln()).abs() < 1e-15);
        assert_eq!(loss(&[1., 2.], &[-1., -1.], 2, None), 0.0);
    }

    #[test]
    fn matches_pytorch_values() {
        // import torch; F = torch.nn.functional
        // x = torch.sin(torch.arange(4*3, dtype=torch.float64) * 1.3).reshape(4,3) * 4
        // t = torch.tensor([[1,0,-1],[0.3,1,0],[-1,-1,1],[0,0,1]], dtype=torch.float64)
        // m = t != -1; pw = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
        // l = F.binary_cross_entropy_with_logits(x, t.clamp(min=0), pos_weight=pw, reduction='none')
        // print(round((l[m].sum() / m.sum()).item(), 12))
        let x: Vec<f64> = (0..12).map(|i| (i as f64 * 1.3).sin() * 4.0).collect();
        let tg = [1., 0., -1., 0.3, 1., 0., -1., -1., 1., 0., 0., 1.];
        let l = loss(&x, &tg, 3, Some(&[2.0, 0.5, 1.0]));
        assert!((l - PT).abs() < 1e-11, "{l} vs {PT}");
    }

    const PT: f64 = 1.694578489065;

    #[test]
    fn gradcheck_masks_and_pos_weight() {
        let mut rng = Rng::new(131);
        let x = Tensor::randn([4, 3], 2.0, DType::F64, &mut rng);
        let masked = t(
            &[1., 0., -1., 0.3, 1., 0., -1., -1., 1., 0., 0., 1.],
            &[4, 3],
        );
        let mut one = vec![-1.0; 12];
        one[5] = 1.0;
        let single = t(&one, &[4, 3]);
        let none = Tensor::full([4, 3], -1.0, DType::F64);
        for tg in [&masked, &single, &none] {
            for pw in [None, Some(&[2.0, 0.5, 1.0][..])] {
                check_gradients(std::slice::from_ref(&x), 1e-6, |tp, v| {
                    bce_with_logits(tp, &v[0], tg, pw)
                })
                .unwrap();
            }
        }
    }

    #[test]
    fn bad_targets_are_errors() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::zeros([2, 2], DType::F32));
        let e = bce_with_logits(&tape, &x, &t(&[0., 2., 1., 0.], &[2, 2]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("target 2"), "{e}");
        assert!(bce_with_logits(&tape, &x, &t(&[0., 1.], &[2]), None).is_err());
        assert!(bce_with_logits(&tape, &x, &t(&[0.; 4], &[2, 2]), Some(&[1.0])).is_err());
    }
}
