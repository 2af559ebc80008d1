//! Adversarial losses on discriminator logits, for the face generator.

use super::cuda::{self as device, record_mean_terms, TermInputs};
use super::{record_scalar, sigmoid, softplus};
use crate::tensor::check_same_dtype;
use crate::{Error, Result, Tape, Var};
use serde::{Deserialize, Serialize};

/// A per-logit loss term or its derivative.
type Term = fn(f64) -> f64;

/// Which adversarial objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GanLoss {
    /// BCE on logits: D minimises `mean softplus(-real) + mean softplus(fake)`
    /// (BCE of real against 1 plus BCE of fake against 0); G minimises the
    /// non-saturating `mean softplus(-fake)` (BCE of fake against 1).
    NonSaturating,
    /// D minimises `mean relu(1 - real) + mean relu(1 + fake)`; G minimises `-mean fake`.
    Hinge,
}

/// GAN terms use only the logits: a plain mean over every element.
fn no_target() -> TermInputs<'static> {
    TermInputs {
        target: None,
        pos_weight: &[],
        invalid: None,
        count_all: true,
    }
}

fn check_nonempty(op: &'static str, v: &Var) -> Result<f64> {
    if v.value().numel() == 0 {
        return Err(Error::shape(op, format!("empty logits {}", v.shape())));
    }
    Ok(v.value().numel() as f64)
}

/// The discriminator's loss on its logits for real and for generated samples
/// (any shapes, e.g. [N, 1] or a patch map [N, H, W, 1]).
pub fn gan_discriminator_loss(tape: &Tape, kind: GanLoss, real: &Var, fake: &Var) -> Result<Var> {
    const OP: &str = "gan_discriminator_loss";
    check_same_dtype(OP, real.value(), fake.value())?;
    let (nr, nf) = (check_nonempty(OP, real)?, check_nonempty(OP, fake)?);
    if let Some(dev) = crate::tensor::same_device(OP, &[real.value(), fake.value()])? {
        let (rt, ft) = match kind {
            GanLoss::NonSaturating => (device::Term::SoftplusNeg, device::Term::SoftplusPos),
            GanLoss::Hinge => (device::Term::HingeReal, device::Term::HingeFake),
        };
        return record_mean_terms(
            tape,
            &dev,
            OP,
            &[(real, rt, no_target()), (fake, ft, no_target())],
        );
    }
    let (r, f) = (real.value().to_f64_vec(), fake.value().to_f64_vec());
    // Per-logit terms and their derivatives: real ones push up, fake ones down.
    let (real_term, real_grad): (Term, Term) = match kind {
        GanLoss::NonSaturating => (|x| softplus(-x), |x| -sigmoid(-x)),
        GanLoss::Hinge => (|x| (1.0 - x).max(0.0), |x| if x < 1.0 { -1.0 } else { 0.0 }),
    };
    let (fake_term, fake_grad): (Term, Term) = match kind {
        GanLoss::NonSaturating => (softplus, sigmoid),
        GanLoss::Hinge => (|x| (1.0 + x).max(0.0), |x| if x > -1.0 { 1.0 } else { 0.0 }),
    };
    let value = r.iter().map(|&x| real_term(x)).sum::<f64>() / nr
        + f.iter().map(|&x| fake_term(x)).sum::<f64>() / nf;
    record_scalar(tape, OP, &[real, fake], value, move |needs| {
        vec![
            needs[0].then(|| r.iter().map(|&x| real_grad(x) / nr).collect()),
            needs[1].then(|| f.iter().map(|&x| fake_grad(x) / nf).collect()),
        ]
    })
}

/// The generator's loss on the discriminator's logits for generated samples.
pub fn gan_generator_loss(tape: &Tape, kind: GanLoss, fake: &Var) -> Result<Var> {
    const OP: &str = "gan_generator_loss";
    let n = check_nonempty(OP, fake)?;
    if let Some(dev) = fake.value().cuda_device().cloned() {
        let term = match kind {
            GanLoss::NonSaturating => device::Term::SoftplusNeg,
            GanLoss::Hinge => device::Term::Neg,
        };
        return record_mean_terms(tape, &dev, OP, &[(fake, term, no_target())]);
    }
    let f = fake.value().to_f64_vec();
    let value = match kind {
        GanLoss::NonSaturating => f.iter().map(|&x| softplus(-x)).sum::<f64>() / n,
        GanLoss::Hinge => -f.iter().sum::<f64>() / n,
    };
    record_scalar(tape, OP, &[fake], value, move |_| {
        let g = match kind {
            GanLoss::NonSaturating => f.iter().map(|&x| -sigmoid(-x) / n).collect(),
            GanLoss::Hinge => vec![-1.0 / n; f.len()],
        };
        vec![Some(g)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng, Tensor};

    #[test]
    fn values_by_hand() {
        let tape = Tape::no_grad();
        let c = |v: &[f64]| tape.constant(Tensor::from_f64s(v, [v.len(), 1], DType::F64).unwrap());
        let (real, fake) = (c(&[0.0, 2.0]), c(&[0.0, -3.0, 0.5]));
        let item = |v: Result<Var>| v.unwrap().value().item().unwrap();
        // Hinge D: mean(1, 0) + mean(1, 0, 1.5) = 0.5 + 2.5/3; G: -mean(0, -3, 0.5) = 2.5/3.
        assert!(
            (item(gan_discriminator_loss(&tape, GanLoss::Hinge, &real, &fake)) - (0.5 + 2.5 / 3.0))
                .abs()
                < 1e-15
        );
        assert!((item(gan_generator_loss(&tape, GanLoss::Hinge, &fake)) - 2.5 / 3.0).abs() < 1e-15);
        // Non-saturating at logit 0: ln 2 per term.
        let zero = c(&[0.0]);
        let d = item(gan_discriminator_loss(
            &tape,
            GanLoss::NonSaturating,
            &zero,
            &zero,
        ));
        assert!((d - 2.0 * 2f64.ln()).abs() < 1e-15);
        // G at a very negative logit (D sure it is fake): ~|x|, finite.
        assert!(
            (item(gan_generator_loss(
                &tape,
                GanLoss::NonSaturating,
                &c(&[-700.0])
            )) - 700.0)
                .abs()
                < 1e-9
        );
        assert!(gan_generator_loss(
            &tape,
            GanLoss::Hinge,
            &tape.constant(Tensor::zeros([0], DType::F64))
        )
        .is_err());
    }

    #[test]
    fn gradcheck_both_kinds() {
        let mut rng = Rng::new(141);
        // Hinge kinks at ±1: keep the logits away from them.
        let real = Tensor::from_f64s(&[0.3, 1.6, -0.4, 2.2, 0.9], [5, 1], DType::F64).unwrap();
        let fake = Tensor::from_f64s(&[-1.5, -0.2, 0.7, -2.4], [2, 2, 1, 1], DType::F64).unwrap();
        let logits = Tensor::randn([3, 2], 2.0, DType::F64, &mut rng);
        for kind in [GanLoss::NonSaturating, GanLoss::Hinge] {
            check_gradients(&[real.clone(), fake.clone()], 1e-6, |t, v| {
                gan_discriminator_loss(t, kind, &v[0], &v[1])
            })
            .unwrap();
            check_gradients(std::slice::from_ref(&fake), 1e-6, |t, v| {
                gan_generator_loss(t, kind, &v[0])
            })
            .unwrap();
            check_gradients(std::slice::from_ref(&logits), 1e-6, |t, v| {
                gan_generator_loss(t, kind, &v[0])
            })
            .unwrap();
        }
    }
}
