//! Training losses with label masks, each a scalar with a dedicated fused
//! backward. Losses are computed in f64 whatever the dtype (they touch only
//! [N, outputs] values) and return a scalar of the prediction's dtype.
//!
//! Masking conventions: a label equal to the task's invalid marker is
//! ignored; when nothing valid remains a loss is 0 with zero gradient,
//! never NaN.

mod bce;
mod ccc;
mod cross_entropy;
mod cuda;
mod gan;
mod mse;

pub use bce::bce_with_logits;
pub use ccc::{ccc_loss, INVALID_VA};
pub use cross_entropy::{cross_entropy, CrossEntropyParams};
pub use gan::{gan_discriminator_loss, gan_generator_loss, GanLoss};
pub use mse::{mse_loss, MseDenominator};

use crate::{Error, Result, Shape, Tape, Tensor, Var};

/// Records a scalar loss `value` of `inputs`; `grads(needs)` returns, per
/// input, dloss/dinput (row-major f64) or None, and runs only in backward.
fn record_scalar<F>(
    tape: &Tape,
    name: &'static str,
    inputs: &[&Var],
    value: f64,
    grads: F,
) -> Result<Var>
where
    F: FnOnce(&[bool]) -> Vec<Option<Vec<f64>>> + 'static,
{
    let dtype = inputs[0].value().dtype();
    let shapes: Vec<Shape> = inputs.iter().map(|v| v.shape().clone()).collect();
    tape.record(
        name,
        inputs,
        Tensor::scalar(value, dtype),
        move |seed, needs| {
            let s = seed.item()?;
            grads(needs)
                .into_iter()
                .zip(shapes)
                .map(|(g, shape)| {
                    g.map(|g| {
                        Tensor::from_f64s(
                            &g.iter().map(|v| v * s).collect::<Vec<_>>(),
                            shape,
                            dtype,
                        )
                    })
                    .transpose()
                })
                .collect()
        },
    )
}

/// The target must have the prediction's shape.
fn check_target(op: &'static str, pred: &Var, target: &Tensor) -> Result<()> {
    if pred.shape() != target.shape() {
        return Err(Error::shape(
            op,
            format!("prediction {} vs target {}", pred.shape(), target.shape()),
        ));
    }
    Ok(())
}

/// `ln(1 + e^x)` without overflow: `max(x, 0) + ln(1 + e^-|x|)`.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}
