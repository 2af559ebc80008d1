//! The multi-task objective: masked CCC (valence/arousal), masked BCE (AUs)
//! and cross-entropy with ignore_index (expressions), combined by fixed
//! weights, learned homoscedastic uncertainty, or dynamic weight averaging.

use crate::model::MtlOutput;
use crate::ops::loss::{
    bce_with_logits, ccc_loss, cross_entropy, mse_loss, CrossEntropyParams, MseDenominator,
    INVALID_VA,
};
use crate::{ops, DType, Error, ParamId, Params, Result, Tape, Tensor, Var};
use serde::{Deserialize, Serialize};

/// How the three task losses are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// `w_va·L_va + w_au·L_au + w_expr·L_expr`.
    Fixed,
    /// Kendall et al.: `Σ_k exp(-s_k)·L_k + s_k` with learned log-variances `s_k`.
    Uncertainty,
    /// Liu et al. (DWA): `w_k = K·softmax_k(r_k / T)` with `r_k` the ratio of
    /// the task's last two period-mean losses; equal weights until two periods exist.
    Dwa,
}

/// The valence/arousal objective.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaLoss {
    /// `(1 - CCC_V) + (1 - CCC_A)` over the valid frames of the batch.
    #[default]
    Ccc,
    /// Mean squared error over the valid values.
    Mse,
}

/// The `[loss]` section of a run config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    pub weighting: Weighting,
    pub va_loss: VaLoss,
    pub w_va: f64,
    pub w_au: f64,
    pub w_expr: f64,
    /// DWA temperature T.
    pub dwa_temperature: f64,
    /// Label smoothing of the expression cross-entropy.
    pub label_smoothing: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            weighting: Weighting::Fixed,
            va_loss: VaLoss::Ccc,
            w_va: 1.0,
            w_au: 1.0,
            w_expr: 1.0,
            dwa_temperature: 2.0,
            label_smoothing: 0.0,
        }
    }
}

/// Labels of a batch in the loss functions' conventions.
pub struct MtlTargets<'a> {
    /// [N, 2], -5 where invalid.
    pub va: &'a Tensor,
    /// [N, n_aus] of 0/1, -1 where invalid.
    pub au: &'a Tensor,
    /// N class indices, -1 where invalid.
    pub expr: &'a [i64],
}

/// The weighted total (on the tape) and each task's unweighted value, as
/// scalars where the loss was computed: on a GPU the training step reads
/// them back together with the gradient norm (one sync, optim/guard.rs).
pub struct LossTerms {
    pub total: Var,
    pub va: Tensor,
    pub au: Tensor,
    pub expr: Tensor,
}

impl LossTerms {
    /// A loss of one term (masked-autoencoder pretraining): the multi-task
    /// values are zero, on the loss's device, so the step's read-back is
    /// the same as a multi-task step's.
    pub fn single(total: Var) -> Result<LossTerms> {
        let v = total.value();
        let zero = Tensor::scalar(0.0, v.dtype()).to_device(&v.device())?;
        Ok(LossTerms {
            total,
            va: zero.clone(),
            au: zero.clone(),
            expr: zero,
        })
    }

    /// The task values (va, au, expr) on the host (a read-back each on a GPU).
    pub fn values(&self) -> Result<[f64; 3]> {
        Ok([self.va.item()?, self.au.item()?, self.expr.item()?])
    }
}

#[derive(Debug)]
pub struct MtlLoss {
    pub config: LossConfig,
    /// Log-variances of (va, au, expr) under uncertainty weighting.
    log_vars: Option<[ParamId; 3]>,
    /// Period means of (va, au, expr), newest last, for DWA.
    history: Vec<[f64; 3]>,
}

impl MtlLoss {
    /// Uncertainty weighting registers its three log-variances in `params`
    /// (names `loss.log_var.{va,au,expr}`), so they train and checkpoint with the model.
    pub fn new(config: &LossConfig, params: &mut Params) -> Result<Self> {
        for (k, w) in [
            ("w_va", config.w_va),
            ("w_au", config.w_au),
            ("w_expr", config.w_expr),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(Error::Config(format!(
                    "loss.{k} = {w}: must be a finite number >= 0"
                )));
            }
        }
        if !(config.dwa_temperature > 0.0) {
            return Err(Error::Config(format!(
                "loss.dwa_temperature = {}: must be > 0",
                config.dwa_temperature
            )));
        }
        let log_vars = if config.weighting == Weighting::Uncertainty {
            let mut add =
                |t: &str| params.add(format!("loss.log_var.{t}"), Tensor::zeros([1], DType::F32));
            Some([add("va")?, add("au")?, add("expr")?])
        } else {
            None
        };
        Ok(MtlLoss {
            config: config.clone(),
            log_vars,
            history: Vec::new(),
        })
    }

    /// Current (va, au, expr) weights for fixed and DWA weighting.
    pub fn weights(&self) -> [f64; 3] {
        let c = &self.config;
        match (c.weighting, self.history.as_slice()) {
            (Weighting::Dwa, [.., prev, last]) => {
                let r: Vec<f64> = (0..3)
                    .map(|k| last[k] / prev[k].max(1e-12) / c.dwa_temperature)
                    .collect();
                let m = r.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = r.iter().map(|v| (v - m).exp()).collect();
                let s: f64 = e.iter().sum();
                [3.0 * e[0] / s, 3.0 * e[1] / s, 3.0 * e[2] / s]
            }
            (Weighting::Dwa, _) => [1.0; 3],
            _ => [c.w_va, c.w_au, c.w_expr],
        }
    }

    /// Records the mean task losses of a finished period (epoch or eval interval) for DWA.
    pub fn end_period(&mut self, means: [f64; 3]) {
        self.history.push(means);
        if self.history.len() > 2 {
            self.history.remove(0);
        }
    }

    /// The DWA history (oldest first), for checkpoints.
    pub fn history(&self) -> &[[f64; 3]] {
        &self.history
    }

    pub fn set_history(&mut self, history: Vec<[f64; 3]>) {
        self.history = history;
    }

    pub fn forward(
        &self,
        tape: &Tape,
        params: &Params,
        out: &MtlOutput,
        t: &MtlTargets,
    ) -> Result<LossTerms> {
        self.forward_scaled(tape, params, out, t, [1.0; 3])
    }

    /// [`MtlLoss::forward`] with each task term (va, au, expr) multiplied
    /// by `scales` before weighting (a data-parallel rank's share of the
    /// global masked mean); the values returned are the scaled terms. A
    /// scale of 1 records nothing.
    pub fn forward_scaled(
        &self,
        tape: &Tape,
        params: &Params,
        out: &MtlOutput,
        t: &MtlTargets,
        scales: [f64; 3],
    ) -> Result<LossTerms> {
        let l_va = match self.config.va_loss {
            VaLoss::Ccc => ccc_loss(tape, &out.va, t.va, INVALID_VA)?,
            VaLoss::Mse => mse_loss(tape, &out.va, t.va, Some(INVALID_VA), MseDenominator::Valid)?,
        };
        let l_au = bce_with_logits(tape, &out.au, t.au, None)?;
        let ce = CrossEntropyParams {
            label_smoothing: self.config.label_smoothing,
            ..CrossEntropyParams::default()
        };
        let l_expr = cross_entropy(tape, &out.expr, t.expr, &ce)?;
        let scaled = |l: Var, k: usize| {
            if scales[k] == 1.0 {
                Ok(l)
            } else {
                ops::scale(tape, &l, scales[k])
            }
        };
        let (l_va, l_au, l_expr) = (scaled(l_va, 0)?, scaled(l_au, 1)?, scaled(l_expr, 2)?);
        let values = [&l_va, &l_au, &l_expr].map(|l| l.value().clone());
        let terms = [l_va, l_au, l_expr];
        let mut total: Option<Var> = None;
        for (k, term) in terms.iter().enumerate() {
            let weighted = match self.log_vars {
                Some(ids) => {
                    let s = tape.param(params, ids[k]);
                    let prec = ops::exp(tape, &ops::scale(tape, &s, -1.0)?)?;
                    ops::add(tape, &ops::mul(tape, &prec, term)?, &s)?
                }
                None => ops::scale(tape, term, self.weights()[k])?,
            };
            total = Some(match total {
                None => weighted,
                Some(acc) => ops::add(tape, &acc, &weighted)?,
            });
        }
        let total = ops::sum(tape, &total.expect("three terms"), &[], false)?;
        let [va, au, expr] = values;
        Ok(LossTerms {
            total,
            va,
            au,
            expr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    /// Head outputs and targets for 4 samples with mixed label subsets.
    fn batch(tape: &Tape) -> (MtlOutput, Tensor, Tensor, Vec<i64>) {
        let mut rng = Rng::new(5);
        let mut v = |d: &[usize]| tape.constant(Tensor::randn(d, 1.0, DType::F32, &mut rng));
        let out = MtlOutput {
            va: v(&[4, 2]),
            au: v(&[4, 3]),
            expr: v(&[4, 5]),
            features: v(&[4, 1]),
            real_fake: None,
        };
        let va = Tensor::from_f64s(
            &[0.1, 0.2, -0.5, 0.4, -5.0, -5.0, 0.7, -0.3],
            [4, 2],
            DType::F32,
        )
        .unwrap();
        let au = Tensor::from_f64s(
            &[1., 0., 1., -1., -1., -1., 0., 1., 1., 0., 0., 0.],
            [4, 3],
            DType::F32,
        )
        .unwrap();
        (out, va, au, vec![1, -1, 4, 0])
    }

    #[test]
    fn fixed_weights_scale_each_task() {
        let tape = Tape::no_grad();
        let (out, va, au, expr) = batch(&tape);
        let t = MtlTargets {
            va: &va,
            au: &au,
            expr: &expr,
        };
        let mut params = Params::new();
        let cfg = LossConfig {
            w_va: 2.0,
            w_au: 0.5,
            w_expr: 0.0,
            ..LossConfig::default()
        };
        let l = MtlLoss::new(&cfg, &mut params)
            .unwrap()
            .forward(&tape, &params, &out, &t)
            .unwrap();
        let [va, au, expr] = l.values().unwrap();
        let want = 2.0 * va + 0.5 * au;
        assert!((l.total.value().item().unwrap() - want).abs() < 1e-5);
        assert!(va > 0.0 && au > 0.0 && expr > 0.0);
        let bad = LossConfig {
            w_au: -1.0,
            ..LossConfig::default()
        };
        assert!(MtlLoss::new(&bad, &mut params)
            .unwrap_err()
            .to_string()
            .contains("loss.w_au"));
    }

    #[test]
    fn mse_va_loss_is_the_mean_over_valid_values() {
        let tape = Tape::no_grad();
        let (out, va, au, expr) = batch(&tape);
        let t = MtlTargets {
            va: &va,
            au: &au,
            expr: &expr,
        };
        let cfg = LossConfig {
            va_loss: VaLoss::Mse,
            ..LossConfig::default()
        };
        let l = MtlLoss::new(&cfg, &mut Params::new())
            .and_then(|loss| loss.forward(&tape, &Params::new(), &out, &t))
            .unwrap();
        // Rows 0, 1 and 3 carry VA labels (row 2 is marked -5).
        let (p, y) = (out.va.value().to_f64_vec(), va.to_f64_vec());
        let sq: f64 = [0, 1, 2, 3, 6, 7]
            .iter()
            .map(|&i| (p[i] - y[i]).powi(2))
            .sum();
        let va = l.va.item().unwrap();
        assert!((va - sq / 6.0).abs() < 1e-6, "{va} vs {}", sq / 6.0);
    }

    #[test]
    fn uncertainty_weighting_learns_log_variances() {
        let tape = Tape::new();
        let (out, va, au, expr) = batch(&tape);
        let t = MtlTargets {
            va: &va,
            au: &au,
            expr: &expr,
        };
        let mut params = Params::new();
        let cfg = LossConfig {
            weighting: Weighting::Uncertainty,
            ..LossConfig::default()
        };
        let loss = MtlLoss::new(&cfg, &mut params).unwrap();
        assert_eq!(params.len(), 3);
        let l = loss.forward(&tape, &params, &out, &t).unwrap();
        // All s_k = 0 at the start: exp(0)·L_k + 0.
        let lk = l.values().unwrap();
        assert!((l.total.value().item().unwrap() - lk.iter().sum::<f64>()).abs() < 1e-5);
        let grads = tape.backward(&l.total).unwrap();
        // d/ds_k [exp(-s_k) L_k + s_k] at s_k = 0 is 1 - L_k.
        for (id, lk) in params.ids().zip(lk) {
            let g = grads.get(id).unwrap().item().unwrap();
            assert!(
                (g - (1.0 - lk)).abs() < 1e-5,
                "{} {g} vs {}",
                params.name(id),
                1.0 - lk
            );
        }
    }

    #[test]
    fn dwa_weights_follow_the_loss_ratios() {
        let mut params = Params::new();
        let cfg = LossConfig {
            weighting: Weighting::Dwa,
            dwa_temperature: 2.0,
            ..LossConfig::default()
        };
        let mut loss = MtlLoss::new(&cfg, &mut params).unwrap();
        assert_eq!(
            loss.weights(),
            [1.0; 3],
            "equal weights until two periods exist"
        );
        loss.end_period([1.0, 1.0, 1.0]);
        assert_eq!(loss.weights(), [1.0; 3]);
        loss.end_period([0.5, 1.0, 2.0]);
        // r = (0.5, 1, 2); w_k = 3·exp(r_k/2) / Σ exp(r_j/2).
        let e = [0.25f64.exp(), 0.5f64.exp(), 1.0f64.exp()];
        let s: f64 = e.iter().sum();
        for (w, ek) in loss.weights().iter().zip(e) {
            assert!((w - 3.0 * ek / s).abs() < 1e-12);
        }
        // Only the last two periods count.
        loss.end_period([0.5, 1.0, 2.0]);
        assert!(loss.weights().iter().all(|w| (w - 1.0).abs() < 1e-12));
    }
}
