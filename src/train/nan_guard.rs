//! Stops a run at the first non-finite loss, pointing at the checkpoint to
//! resume from. Saving is skipped for the bad step, so that checkpoint is the
//! last one written from finite weights.

use crate::{Error, Result};
use std::path::Path;

/// Returns `loss` when it is finite, otherwise `Error::NonFinite` naming the
/// step, the value and the last good checkpoint (or that there is none yet).
pub fn check_loss(step: u64, loss: f64, last_good: Option<&Path>) -> Result<f64> {
    check_finite("loss", step, loss, last_good)
}

/// [`check_loss`] for any per-step quantity (`what` names it in the message),
/// e.g. the gradient norm before clipping, which overflows a step earlier
/// than the loss does.
pub fn check_finite(what: &str, step: u64, value: f64, last_good: Option<&Path>) -> Result<f64> {
    if value.is_finite() {
        return Ok(value);
    }
    let resume = match last_good {
        Some(p) => format!("last good checkpoint: {} (left intact)", p.display()),
        None => "no checkpoint was saved before this step".to_string(),
    };
    Err(Error::NonFinite(format!(
        "{what} is {value} at step {step}; training stopped, {resume}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_loss_passes_through() {
        assert_eq!(check_loss(3, 0.25, None).unwrap(), 0.25);
    }

    #[test]
    fn non_finite_loss_names_step_and_checkpoint() {
        let ck = Path::new("runs/a/last.safetensors");
        let e = check_loss(1200, f64::NAN, Some(ck)).unwrap_err();
        assert!(matches!(e, Error::NonFinite(_)));
        let msg = e.to_string();
        assert!(msg.contains("NaN") && msg.contains("step 1200"), "{msg}");
        assert!(msg.contains("runs/a/last.safetensors"), "{msg}");
        let msg = check_loss(7, f64::NEG_INFINITY, None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("-inf") && msg.contains("no checkpoint"),
            "{msg}"
        );
    }
}
