use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// The decay after warm-up.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleKind {
    Constant,
    /// Multiply by `gamma` every `step_size` steps.
    Step {
        step_size: u64,
        gamma: f64,
    },
    /// Cosine from the base rate to `min_lr` at `total_steps`.
    Cosine {
        total_steps: u64,
        min_lr: f64,
    },
    /// `(1 - t/T)^power`, reaching 0 at `total_steps`.
    Poly {
        total_steps: u64,
        power: f64,
    },
    /// Linear decay to 0 at `total_steps` (the ABAW4 temporal recipe).
    Linear {
        total_steps: u64,
    },
}

/// Learning rate as a function of the step: optional linear warm-up from 0
/// over `warmup_steps`, then `kind` counted from the end of the warm-up.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LrSchedule {
    pub base_lr: f64,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(flatten)]
    pub kind: ScheduleKind,
}

impl LrSchedule {
    pub fn constant(base_lr: f64) -> Self {
        LrSchedule {
            base_lr,
            warmup_steps: 0,
            kind: ScheduleKind::Constant,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("lr schedule: {m}")));
        if !(self.base_lr > 0.0 && self.base_lr.is_finite()) {
            return bad("base_lr must be a positive number");
        }
        match self.kind {
            ScheduleKind::Step { step_size: 0, .. } => bad("step_size must be > 0"),
            ScheduleKind::Cosine { total_steps: 0, .. }
            | ScheduleKind::Poly { total_steps: 0, .. }
            | ScheduleKind::Linear { total_steps: 0 } => bad("total_steps must be > 0"),
            _ => Ok(()),
        }
    }

    /// Learning rate for (0-based) `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        let b = self.base_lr;
        if step < self.warmup_steps {
            return b * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let t = step - self.warmup_steps;
        let frac = |total: u64| (t as f64 / total as f64).min(1.0);
        match self.kind {
            ScheduleKind::Constant => b,
            ScheduleKind::Step { step_size, gamma } => b * gamma.powi((t / step_size) as i32),
            ScheduleKind::Cosine {
                total_steps,
                min_lr,
            } => min_lr + (b - min_lr) * 0.5 * (1.0 + (PI * frac(total_steps)).cos()),
            ScheduleKind::Poly { total_steps, power } => b * (1.0 - frac(total_steps)).powf(power),
            ScheduleKind::Linear { total_steps } => b * (1.0 - frac(total_steps)),
        }
    }
}
