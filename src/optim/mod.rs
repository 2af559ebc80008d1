//! Optimizers (SGD, Adam, AdamW), learning-rate schedules and gradient clipping.
//!
//! Optimizer state (moments, step count) is public through `state_dict` /
//! `load_state_dict`, so checkpoints restore a run exactly.

mod adam;
mod clip;
pub(crate) mod cuda;
mod guard;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use clip::{checked_grad_norm, clip_grad_norm};
pub use guard::{StepGuard, StepReadout};
pub use schedule::{LrSchedule, ScheduleKind};
pub use sgd::{Sgd, SgdConfig};

use crate::{Gradients, ParamId, Params, Result, Tensor};
use std::collections::BTreeMap;

pub trait Optimizer {
    /// One update of every parameter that has a gradient, at learning rate `lr`.
    fn step(&mut self, params: &mut Params, grads: &Gradients, lr: f64) -> Result<()>;

    /// Queues [`Optimizer::step`]'s update on the GPU behind `guard`: the
    /// kernels scale every gradient by its clip factor and change nothing
    /// (weights and state) when it marks the step skipped. The host state
    /// waits for [`Optimizer::settle`].
    fn step_guarded(
        &mut self,
        params: &mut Params,
        grads: &Gradients,
        lr: f64,
        guard: &StepGuard,
    ) -> Result<()>;

    /// After a guarded step's read-back: `applied` counts the step (Adam's
    /// bias correction); otherwise state buffers the skipped step created
    /// are dropped, so the state is exactly what it was before it.
    fn settle(&mut self, applied: bool);

    /// Named state tensors (per-parameter buffers keyed by parameter index, and the step).
    fn state_dict(&self) -> BTreeMap<String, Tensor>;

    /// Restores what `state_dict` returned.
    fn load_state_dict(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()>;

    /// From now on each parameter's update uses `lr` times its multiplier.
    fn set_lr_mults(&mut self, mults: LrMults);
}

/// Learning-rate and weight-decay multipliers by parameter (fine-tuning's
/// per-group and per-layer rates, `train.lr_mult` and `train.layer_decay`;
/// no decay for biases and norms with `train.decay_biases_and_norms =
/// false`); 1 where none is set, which leaves an update exactly as it is
/// without multipliers (`lr * 1.0 == lr`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LrMults {
    lr: Vec<f64>,
    decay: Vec<f64>,
}

impl LrMults {
    /// Learning-rate multipliers by parameter index.
    pub fn new(by_index: Vec<f64>) -> Self {
        LrMults {
            lr: by_index,
            decay: Vec::new(),
        }
    }

    /// The same with weight-decay multipliers by parameter index.
    pub fn with_decay(self, by_index: Vec<f64>) -> Self {
        LrMults {
            decay: by_index,
            ..self
        }
    }

    pub fn of(&self, id: ParamId) -> f64 {
        self.lr.get(id.index()).copied().unwrap_or(1.0)
    }

    pub fn decay_of(&self, id: ParamId) -> f64 {
        self.decay.get(id.index()).copied().unwrap_or(1.0)
    }

    /// `items` grouped by their parameter's (learning-rate, decay)
    /// multipliers, each group in the given order (one group, unchanged,
    /// when all are equal): the fused CUDA update takes one rate and one
    /// decay per launch.
    fn split<T>(&self, items: Vec<(ParamId, T)>) -> Vec<((f64, f64), Vec<T>)> {
        let mut groups: Vec<((f64, f64), Vec<T>)> = Vec::new();
        for (id, item) in items {
            let m = (self.of(id), self.decay_of(id));
            match groups.iter_mut().find(|(g, _)| *g == m) {
                Some((_, v)) => v.push(item),
                None => groups.push((m, vec![item])),
            }
        }
        groups
    }
}

/// A per-parameter buffer list, grown on demand.
fn slot(buffers: &mut Vec<Option<Tensor>>, i: usize) -> &mut Option<Tensor> {
    if buffers.len() <= i {
        buffers.resize(i + 1, None);
    }
    &mut buffers[i]
}

fn save_buffers(out: &mut BTreeMap<String, Tensor>, prefix: &str, buffers: &[Option<Tensor>]) {
    for (i, b) in buffers.iter().enumerate() {
        if let Some(b) = b {
            out.insert(format!("{prefix}.{i}"), b.clone());
        }
    }
}

fn load_buffers(state: &BTreeMap<String, Tensor>, prefix: &str) -> Result<Vec<Option<Tensor>>> {
    let mut v = Vec::new();
    for (k, t) in state {
        let Some(idx) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        let i: usize = idx.parse().map_err(|_| {
            crate::Error::Config(format!("optimizer state key '{k}' has no parameter index"))
        })?;
        *slot(&mut v, i) = Some(t.clone());
    }
    Ok(v)
}
