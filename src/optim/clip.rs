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
