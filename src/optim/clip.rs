use crate::{Error, Gradients, Result};

/// Scales all gradients together so their global L2 norm is at most
/// `max_norm`; returns the norm before clipping. A NaN/Inf norm is an error
/// (the step must not be applied).
pub fn clip_grad_norm(grads: &mut Gradients, max_norm: f64) -> Result<f64> {
    let norm = grads.global_norm();
    if !norm.is_finite() {
        return Err(Error::NonFinite(format!("gradient norm is {norm}")));
    }
    if norm > max_norm {
        grads.scale(max_norm / (norm + 1e-6))?;
    }
    Ok(norm)
}

/// What a training step does with its gradients: clips them to `max_norm`
/// when it is > 0 (`train.grad_clip = 0` turns clipping off) and returns the
/// norm before clipping; a NaN/Inf norm is an error either way.
pub fn checked_grad_norm(grads: &mut Gradients, max_norm: f64) -> Result<f64> {
    if max_norm > 0.0 {
        return clip_grad_norm(grads, max_norm);
    }
    let norm = grads.global_norm();
    if norm.is_finite() {
        Ok(norm)
    } else {
        Err(Error::NonFinite(format!("gradient norm is {norm}")))
    }
}
