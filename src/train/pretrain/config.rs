//! The pretraining run configuration (`mtaffect pretrain --config`): the
//! data and loop sections of a plain run, the ViT encoder, the masked
//! autoencoder's masking and decoder, optimizer and schedule. Same TOML
//! rules as every run config: keys optional, unknown keys rejected, errors
//! naming the key.

use crate::model::{MaeConfig, VitConfig, VitPreset};
use crate::optim::{AdamConfig, LrSchedule, ScheduleKind};
use crate::train::{ConfigFile, DataConfig, DataSource, LoopConfig, OptimConfig, RunConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// What a pretraining run evaluates on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainEval {
    /// Images whose masked reconstruction error is measured at every
    /// evaluation (the same images and masks each time). Synthetic or ABAW
    /// data: frames of the validation videos; a plain folder: every k-th
    /// image of the folder (which training also sees).
    pub images: usize,
    /// Rows of the reconstruction grid written at every evaluation.
    pub grid_rows: usize,
}

impl Default for PretrainEval {
    fn default() -> Self {
        PretrainEval {
            images: 256,
            grid_rows: 8,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// `source`: `synthetic` (every frame of the training videos, labelled
    /// or not), `abaw` (the same from an ABAW layout) or `folder` (every
    /// image below `root`). Labels are never read.
    pub data: DataConfig,
    /// The ViT to pretrain: `[model.backbone]`'s keys of a `kind = "vit"`
    /// fine-tuning run (its pooling must be `cls`).
    pub encoder: VitConfig,
    pub mae: MaeConfig,
    pub eval: PretrainEval,
    pub optim: OptimConfig,
    pub schedule: LrSchedule,
    pub train: LoopConfig,
    pub run: RunConfig,
}

impl Default for PretrainConfig {
    /// The CPU default (configs/mae-synthetic-cpu.toml): the encoder of
    /// configs/vit-synthetic-cpu.toml (ViT-Ti cut to 4 blocks of width 64,
    /// 8x8 patches of the 64x64 synthetic faces), a 2-block decoder 64 wide, AdamW with MAE's betas and weight decay, warm-up and
    /// cosine decay over 2000 steps.
    fn default() -> Self {
        let steps = 2000;
        PretrainConfig {
            data: DataConfig {
                batch_size: 64,
                ..DataConfig::default()
            },
            encoder: VitConfig {
                preset: VitPreset::Tiny,
                depth: Some(4),
                width: Some(64),
                heads: Some(2),
                patch: 8,
                ..VitConfig::default()
            },
            mae: MaeConfig {
                decoder_depth: 2,
                decoder_width: 64,
                decoder_heads: 2,
                ..MaeConfig::default()
            },
            eval: PretrainEval::default(),
            optim: OptimConfig::Adam(AdamConfig {
                beta2: 0.95,
                weight_decay: 0.05,
                decoupled: true,
                ..AdamConfig::default()
            }),
            schedule: LrSchedule {
                base_lr: 1e-3,
                warmup_steps: 100,
                decay: ScheduleKind::Cosine {
                    total_steps: steps - 100,
                    min_lr: 1e-5,
                },
            },
            train: LoopConfig {
                steps,
                log_every: 20,
                eval_every: 250,
                grad_clip: 0.0,
                ..LoopConfig::default()
            },
            run: RunConfig::default(),
        }
    }
}

impl ConfigFile for PretrainConfig {
    fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.train.validate()?;
        self.train.require_no_groups("pretraining")?;
        self.train.require_f32("pretraining")?;
        self.schedule.validate()?;
        self.encoder.validate("encoder")?;
        self.encoder.grid_side(self.data.image_size).map_err(|e| {
            Error::Config(format!(
                "encoder.patch = {} with data.image_size = {}: {e}",
                self.encoder.patch, self.data.image_size
            ))
        })?;
        self.mae.validate()?;
        if self.eval.images == 0 || self.eval.grid_rows == 0 {
            return Err(Error::Config(format!(
                "eval.images = {}, eval.grid_rows = {}: both must be >= 1",
                self.eval.images, self.eval.grid_rows
            )));
        }
        if self.data.source == DataSource::Folder && self.data.root.as_os_str().is_empty() {
            return Err(Error::Config(
                "data.root: required for source = \"folder\" (a folder of face images, searched recursively)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_default_is_configs_mae_synthetic_cpu() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/mae-synthetic-cpu.toml");
        assert_eq!(
            PretrainConfig::load(&path).unwrap(),
            PretrainConfig::default()
        );
    }

    #[test]
    fn default_validates_and_round_trips() {
        let c = PretrainConfig::default();
        c.validate().unwrap();
        let back = PretrainConfig::from_toml(&c.to_toml(), "test").unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn errors_name_the_key() {
        let err = |toml: &str| {
            PretrainConfig::from_toml(toml, "cfg.toml")
                .unwrap_err()
                .to_string()
        };
        let e = err("[mae]\nmask_ratio = 1.0\n");
        assert!(e.contains("mae.mask_ratio"), "{e}");
        let e = err("[mae]\ndecoder_width = 30\ndecoder_heads = 4\n");
        assert!(e.contains("decoder_width = 30"), "{e}");
        let e = err("[data]\nimage_size = 60\n");
        assert!(
            e.contains("encoder.patch = 8") && e.contains("image_size = 60"),
            "{e}"
        );
        let e = err("[data]\nsource = \"folder\"\n");
        assert!(e.contains("data.root"), "{e}");
        let e = err("[mae]\nmask = 3\n");
        assert!(e.contains("unknown field") && e.contains("mask"), "{e}");
        let e = err("[train]\nprecision = \"bf16\"\n");
        assert!(e.contains("pretraining"), "{e}");
    }
}
