//! The GAN run configuration (`mtaffect gan train --config`): the data and
//! loop sections of a plain run, the generator, the discriminator (the
//! multi-task network with a real/fake head), the loss weights and the two
//! optimizers. Same TOML rules as [`TrainConfig`]: every key optional,
//! unknown keys rejected, errors naming the key.

use crate::model::{GeneratorConfig, NetConfig, Upsample};
use crate::ops::loss::GanLoss;
use crate::train::{
    ConfigFile, DataConfig, LoopConfig, LossConfig, RunConfig, TrainConfig, Weighting,
};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The `[gan]` section: objective, weights, update ratio and optimizers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GanSettings {
    pub loss: GanLoss,
    /// Discriminator: adversarial term and multi-task term on labelled real frames.
    pub d_adv_weight: f64,
    pub d_mtl_weight: f64,
    /// Generator: adversarial term and the discriminator's multi-task loss on
    /// generated images against the requested condition.
    pub g_adv_weight: f64,
    pub g_mtl_weight: f64,
    /// Discriminator steps per generator step (each on a fresh real batch).
    pub d_steps_per_g_step: usize,
    pub lr_g: f64,
    pub lr_d: f64,
    /// Adam betas of both optimizers (beta1 = 0.5 as in DCGAN).
    pub beta1: f64,
    pub beta2: f64,
    /// Decay of an exponential moving average of the generator's weights,
    /// updated after every generator step; sampling, judging and mixing use
    /// the average (0: off, they use the live weights). Adversarial training
    /// oscillates: the live generator's samples swing from step to step, the
    /// average of its recent weights does not.
    pub g_ema_decay: f64,
    /// Extra factor on the generator's expression term (its multi-task
    /// expression weight is `mtl.w_expr * g_expr_weight`; 1: the same as the
    /// discriminator's).
    pub g_expr_weight: f64,
    /// Std of Gaussian noise added to every image the discriminator sees in
    /// training (real and generated, both players' steps), decaying linearly
    /// from this value at step 0 to 0 at `train.steps` (0: off). Blurs the
    /// two distributions into each other early on, so the discriminator
    /// cannot separate them perfectly and its gradients stay informative,
    /// without a gradient penalty (which would need a double backward).
    pub instance_noise: f64,
    /// Weight of the mode-seeking term (MSGAN): the generator step pairs its
    /// rows (row i and row i + n/2 get the same condition, different noise)
    /// and adds `1 / (image distance / noise distance + eps)`, so different
    /// noise must give different faces (0: off).
    pub mode_seeking_weight: f64,
    /// Model selection without the judge: at every evaluation the weight
    /// average's faces for this many fixed noise vectors per expression are
    /// classified by the discriminator's own expression head; the best-scoring
    /// checkpoint is kept as `best.safetensors` (0: off).
    pub select_per_class: usize,
}

impl Default for GanSettings {
    fn default() -> Self {
        GanSettings {
            loss: GanLoss::NonSaturating,
            d_adv_weight: 1.0,
            d_mtl_weight: 1.0,
            g_adv_weight: 1.0,
            g_mtl_weight: 1.0,
            d_steps_per_g_step: 1,
            // Two time scales: a 5x faster generator keeps the discriminator
            // from running away (at 2e-4 each it won within 100 steps here).
            lr_g: 5e-4,
            lr_d: 1e-4,
            beta1: 0.5,
            beta2: 0.999,
            g_ema_decay: 0.999,
            g_expr_weight: 1.0,
            instance_noise: 0.0,
            mode_seeking_weight: 0.0,
            select_per_class: 32,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GanConfig {
    pub data: DataConfig,
    pub generator: GeneratorConfig,
    /// The multi-task network; its real/fake head is added whatever
    /// `real_fake_head` says.
    pub discriminator: NetConfig,
    /// Task weights of the multi-task terms (fixed weighting only).
    pub mtl: LossConfig,
    pub gan: GanSettings,
    /// `steps` counts generator steps; `eval_every` scores the discriminator's
    /// heads on the validation set, writes a sample grid and the checkpoint.
    pub train: LoopConfig,
    pub run: RunConfig,
}

impl Default for GanConfig {
    /// The CPU default (configs/gan-synthetic.toml): the default multi-task
    /// network as discriminator, a 128-channel nearest+conv generator that
    /// learns 5x faster than the discriminator, 1200 steps.
    fn default() -> Self {
        let plain = TrainConfig::default();
        GanConfig {
            data: plain.data,
            generator: GeneratorConfig {
                channels: 128,
                upsample: Upsample::NearestConv,
                ..GeneratorConfig::default()
            },
            discriminator: NetConfig {
                real_fake_head: true,
                ..plain.model
            },
            mtl: plain.loss,
            gan: GanSettings::default(),
            train: LoopConfig {
                steps: 1200,
                log_every: 50,
                eval_every: 300,
                grad_clip: 10.0,
                ..plain.train
            },
            run: plain.run,
        }
    }
}

impl GanConfig {
    /// The data and loop halves as a plain run's config, so the data
    /// preparation and loaders of plain training serve the GAN unchanged.
    pub fn plain(&self) -> TrainConfig {
        TrainConfig {
            data: self.data.clone(),
            model: NetConfig {
                real_fake_head: false,
                ..self.discriminator.clone()
            },
            loss: self.mtl.clone(),
            train: self.train.clone(),
            run: self.run.clone(),
            ..TrainConfig::default()
        }
    }
}

impl ConfigFile for GanConfig {
    fn validate(&self) -> Result<()> {
        // The shared sections follow the plain run's rules.
        let text = self.plain().to_toml();
        TrainConfig::from_toml(&text, "the data/model/loop sections")?;
        self.train.require_f32("GAN")?;
        self.train.require_no_groups("GAN")?;
        if self.discriminator.init_from.is_some() {
            return Err(Error::Config(
                "discriminator.init_from: the GAN trainer starts both players from the seed".into(),
            ));
        }
        let g = &self.generator;
        if g.image_size != self.data.image_size {
            return Err(Error::Config(format!(
                "generator.image_size = {} must equal data.image_size = {}",
                g.image_size, self.data.image_size
            )));
        }
        if (g.n_aus, g.n_expr) != (self.discriminator.n_aus, self.discriminator.n_expr) {
            return Err(Error::Config(format!(
                "generator.n_aus/n_expr = {}/{} must match the discriminator's {}/{}",
                g.n_aus, g.n_expr, self.discriminator.n_aus, self.discriminator.n_expr
            )));
        }
        g.layout()?;
        if self.mtl.weighting != Weighting::Fixed {
            return Err(Error::Config(format!(
                "mtl.weighting = {:?}: the GAN supports \"fixed\" only (learned weights would have to train in both players' steps)",
                self.mtl.weighting
            )));
        }
        let s = &self.gan;
        for (k, w) in [
            ("d_adv_weight", s.d_adv_weight),
            ("d_mtl_weight", s.d_mtl_weight),
            ("g_adv_weight", s.g_adv_weight),
            ("g_mtl_weight", s.g_mtl_weight),
            ("g_expr_weight", s.g_expr_weight),
            ("instance_noise", s.instance_noise),
            ("mode_seeking_weight", s.mode_seeking_weight),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(Error::Config(format!(
                    "gan.{k} = {w}: must be a finite number >= 0"
                )));
            }
        }
        for (k, v) in [("lr_g", s.lr_g), ("lr_d", s.lr_d)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Error::Config(format!("gan.{k} = {v}: must be > 0")));
            }
        }
        for (k, v) in [
            ("beta1", s.beta1),
            ("beta2", s.beta2),
            ("g_ema_decay", s.g_ema_decay),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(Error::Config(format!("gan.{k} = {v}: must be in [0, 1)")));
            }
        }
        if s.d_steps_per_g_step == 0 {
            return Err(Error::Config(
                "gan.d_steps_per_g_step = 0: must be >= 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_built_in_default_is_configs_gan_synthetic() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/gan-synthetic.toml");
        assert_eq!(GanConfig::load(&path).unwrap(), GanConfig::default());
    }

    #[test]
    fn default_roundtrips_and_errors_name_the_key() {
        let c = GanConfig::default();
        assert_eq!(GanConfig::from_toml(&c.to_toml(), "rt").unwrap(), c);
        for (text, want) in [
            ("[gan]\nloss = \"wasserstein\"\n", "hinge"),
            ("[gan]\nbeta1 = 1.5\n", "gan.beta1"),
            ("[gan]\nd_steps_per_g_step = 0\n", "d_steps_per_g_step"),
            ("[generator]\nimage_size = 48\n", "generator.image_size"),
            ("[generator]\nimage_size = 112\n", "data.image_size"),
            ("[mtl]\nweighting = \"dwa\"\n", "fixed"),
            ("[train]\nsteps = 0\n", "train.steps"),
            ("[gan]\nlr_d = -1\n", "gan.lr_d"),
            ("[gan]\ninstance_noise = -0.1\n", "gan.instance_noise"),
            ("[gan]\ng_expr_weight = inf\n", "gan.g_expr_weight"),
        ] {
            let e = GanConfig::from_toml(text, "g.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains("g.toml") && e.contains(want), "{text}: {e}");
        }
        let c = c
            .with_overrides(&["gan.loss=hinge".into(), "train.steps=9".into()])
            .unwrap();
        assert_eq!((c.gan.loss, c.train.steps), (GanLoss::Hinge, 9));
    }
}
