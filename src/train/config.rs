//! A training run's configuration: TOML with every section optional, unknown
//! keys rejected, and errors that name the file, the key and what is allowed.

use super::LossConfig;
use crate::autograd::Precision;
use crate::data::video_share::valid_fraction;
use crate::data::{AugmentConfig, LabelSet, OnBadSample, SamplerKind};
use crate::model::{BackboneConfig, NetConfig, ParamGroup, SeResNetConfig};
use crate::optim::{AdamConfig, LrSchedule, ScheduleKind, SgdConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the frames come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The built-in synthetic face set, generated into `root` when missing.
    Synthetic,
    /// An ABAW multi-task layout: `root/cropped_aligned/` plus the annotation files.
    Abaw,
    /// Any folder of face images below `root` (recursive, JPEG/PNG), without
    /// labels: masked-autoencoder pretraining only.
    Folder,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub source: DataSource,
    /// Folder holding `cropped_aligned/` and the annotation files. Empty means
    /// the cache folder (synthetic data only).
    pub root: PathBuf,
    pub train_annotations: String,
    pub val_annotations: String,
    pub label_set: LabelSet,
    pub image_size: usize,
    pub batch_size: usize,
    pub workers: usize,
    pub sampler: SamplerKind,
    pub on_bad_sample: OnBadSample,
    /// With `on_bad_sample = "skip"`: the largest share of a split's samples
    /// that may be skipped as bad before the run stops.
    pub max_bad_fraction: f64,
    pub augment: AugmentConfig,
    /// Synthetic set size: videos and frames per video.
    pub synth_videos: usize,
    pub synth_frames: usize,
    /// Fraction of the synthetic videos held out for validation.
    pub synth_val_fraction: f64,
    /// The synthetic set's own seed: independent of `train.seed`, so the
    /// runs of a seed set train and are scored on the same faces.
    pub synth_seed: u64,
    /// Share of the training videos whose frames a supervised run trains
    /// on (the label-scarce protocol): that many videos, evenly spaced in
    /// name order, so every seed and configuration sees the same ones. 1:
    /// all. Validation always uses every video.
    pub train_video_fraction: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: DataSource::Synthetic,
            root: PathBuf::new(),
            train_annotations: "training_set_annotations.txt".into(),
            val_annotations: "validation_set_annotations.txt".into(),
            label_set: LabelSet::Abaw2022,
            image_size: 64,
            batch_size: 32,
            workers: 2,
            sampler: SamplerKind::Shuffle,
            on_bad_sample: OnBadSample::Fail,
            max_bad_fraction: 0.01,
            augment: AugmentConfig::default(),
            synth_videos: 120,
            synth_frames: 100,
            synth_val_fraction: 0.2,
            synth_seed: 0,
            train_video_fraction: 1.0,
        }
    }
}

impl DataConfig {
    /// Checks beyond the types; messages name the `data.` key.
    pub fn validate(&self) -> Result<()> {
        let bad = |k: &str, v: &dyn std::fmt::Display, allowed: &str| {
            Err(Error::Config(format!("data.{k} = {v}: {allowed}")))
        };
        if self.image_size < 16 {
            return bad("image_size", &self.image_size, "must be >= 16");
        }
        if self.batch_size < 2 {
            return bad(
                "batch_size",
                &self.batch_size,
                "must be >= 2 (batch norm needs it)",
            );
        }
        if self.workers == 0 {
            return bad("workers", &0, "must be >= 1");
        }
        if !(0.0..=1.0).contains(&self.max_bad_fraction) {
            return bad(
                "max_bad_fraction",
                &self.max_bad_fraction,
                "must be in [0, 1]",
            );
        }
        if !(self.synth_val_fraction > 0.0 && self.synth_val_fraction < 1.0) {
            return bad(
                "synth_val_fraction",
                &self.synth_val_fraction,
                "must lie in (0, 1): both splits need videos",
            );
        }
        if !valid_fraction(self.train_video_fraction) {
            return bad(
                "train_video_fraction",
                &self.train_video_fraction,
                "must lie in (0, 1] (1: every training video)",
            );
        }
        Ok(())
    }
}

/// The `[gan_mix]` section of a plain run's config: generated faces from a
/// GAN checkpoint mixed into each batch (`train::gan::GanMixer`). Here, not
/// in `gan/`, so the run config does not depend on the GAN.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GanMixConfig {
    /// A checkpoint of `mtaffect gan train`.
    pub checkpoint: PathBuf,
    /// Generated images added per real image (0 = off; at most 1): a batch
    /// of N gains round(ratio·N) faces, limited by its fully labelled rows.
    pub ratio: f64,
}

impl GanMixConfig {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.ratio) {
            return Err(Error::Config(format!(
                "gan_mix.ratio = {}: must be in [0, 1]",
                self.ratio
            )));
        }
        if self.ratio > 0.0 && self.checkpoint.as_os_str().is_empty() {
            return Err(Error::Config(
                "gan_mix.checkpoint: required when gan_mix.ratio > 0 (a checkpoint of `mtaffect gan train`)".into(),
            ));
        }
        Ok(())
    }
}

/// Which optimizer, with its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimConfig {
    Sgd(SgdConfig),
    Adam(AdamConfig),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// Optimizer steps in the whole run.
    pub steps: u64,
    pub log_every: u64,
    /// Evaluate on the validation set (and save `last`/`best`) this often.
    pub eval_every: u64,
    pub seed: u64,
    /// Global gradient-norm clip; 0 disables it.
    pub grad_clip: f64,
    /// "cpu", "cuda", "cuda:N" or "auto" (GPU 0 if there is one, else the CPU).
    pub device: String,
    /// "f32", or "bf16": the training steps' convolution forward products
    /// on bf16-rounded operands (tensor cores on a GPU), everything else
    /// f32 ([`Precision`]); evaluation and inference stay f32. The frame
    /// trainer only.
    pub precision: Precision,
    /// Parameter groups (backbone, neck, heads) that take no gradient and
    /// no update (fine-tuning); the frame trainer only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<ParamGroup>,
    /// The learning rate of a group's updates is the schedule's times this
    /// (1 for a group not named), e.g. `{ backbone = 0.1 }`; the frame
    /// trainer only.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub lr_mult: BTreeMap<ParamGroup, f64>,
    /// Layer-wise learning-rate decay (MAE's fine-tuning recipe, ViT
    /// backbones): block i of d gets `layer_decay^(d - i)` times the rate,
    /// the patch embedding and class token `layer_decay^(d + 1)`, the final
    /// norm, neck and heads the full rate; on top of `lr_mult`. 1: off.
    pub layer_decay: f64,
    /// false: no weight decay for parameters of one dimension or none
    /// (biases, norm weights), as the ViT/MAE recipes have it.
    pub decay_biases_and_norms: bool,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            steps: 3000,
            log_every: 20,
            eval_every: 500,
            seed: 0,
            grad_clip: 5.0,
            device: "cpu".into(),
            precision: Precision::F32,
            freeze: Vec::new(),
            lr_mult: BTreeMap::new(),
            layer_decay: 1.0,
            decay_biases_and_norms: true,
        }
    }
}

impl LoopConfig {
    /// The checks every run config (frame or temporal) makes of its `[train]` section.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |k: &str, v: &dyn std::fmt::Display, allowed: &str| {
            Err(Error::Config(format!("{k} = {v}: {allowed}")))
        };
        if self.steps == 0 || self.eval_every == 0 || self.log_every == 0 {
            return bad("train.steps/eval_every/log_every", &0, "must be >= 1");
        }
        if !(self.grad_clip >= 0.0) {
            return bad(
                "train.grad_clip",
                &self.grad_clip,
                "must be >= 0 (0 disables clipping)",
            );
        }
        if !["cpu", "auto"].contains(&self.device.as_str()) && !self.device.starts_with("cuda") {
            return bad(
                "train.device",
                &self.device,
                "allowed values: cpu, cuda, cuda:N, auto",
            );
        }
        if !(self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            return bad(
                "train.layer_decay",
                &self.layer_decay,
                "must be in (0, 1] (1: off)",
            );
        }
        if let Some((g, m)) = self
            .lr_mult
            .iter()
            .find(|(_, m)| !(m.is_finite() && **m >= 0.0))
        {
            return bad(
                &format!("train.lr_mult.{}", g.name()),
                m,
                "must be finite and >= 0",
            );
        }
        Ok(())
    }

    /// For the trainers whose models have no parameter groups (GAN, temporal).
    pub(crate) fn require_no_groups(&self, trainer: &str) -> Result<()> {
        if !self.freeze.is_empty() || !self.lr_mult.is_empty() || self.layer_decay != 1.0 {
            return Err(Error::Config(format!(
                "train.freeze / train.lr_mult / train.layer_decay: the {trainer} trainer trains every parameter at the scheduled rate (groups and layers are for the frame trainer)"
            )));
        }
        Ok(())
    }

    /// For the trainers that have no bf16 path (GAN, temporal).
    pub(crate) fn require_f32(&self, trainer: &str) -> Result<()> {
        if self.precision != Precision::F32 {
            return Err(Error::Config(format!(
                "train.precision = {}: the {trainer} trainer computes in f32 only (bf16 is for the frame trainer)",
                self.precision
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub runs_dir: PathBuf,
    /// Run folder name; empty = a fresh `run-<n>`.
    pub name: String,
    /// No progress bar; one log line per log step.
    pub quiet: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            runs_dir: "runs".into(),
            name: String::new(),
            quiet: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub model: NetConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub schedule: LrSchedule,
    pub train: LoopConfig,
    pub run: RunConfig,
    /// Generated faces mixed into the batches (off by default).
    pub gan_mix: GanMixConfig,
}

impl Default for TrainConfig {
    /// The built-in default: small enough for two CPU cores.
    fn default() -> Self {
        TrainConfig {
            data: DataConfig::default(),
            model: NetConfig {
                backbone: BackboneConfig::SeResnet(SeResNetConfig {
                    depth: 10,
                    width_mult: 0.25,
                    ..SeResNetConfig::default()
                }),
                ..NetConfig::default()
            },
            loss: LossConfig::default(),
            optim: OptimConfig::Adam(AdamConfig {
                weight_decay: 1e-4,
                decoupled: true,
                ..AdamConfig::default()
            }),
            schedule: LrSchedule {
                base_lr: 2e-3,
                warmup_steps: 100,
                decay: ScheduleKind::Cosine {
                    total_steps: 2900,
                    min_lr: 1e-5,
                },
            },
            train: LoopConfig::default(),
            run: RunConfig::default(),
            gan_mix: GanMixConfig::default(),
        }
    }
}

/// What every run config file shares: TOML in and out, unknown keys
/// rejected (by serde), checks beyond the types after parsing, and the
/// CLI's `--set section.key=value` overrides.
pub trait ConfigFile: Serialize + serde::de::DeserializeOwned {
    /// Checks beyond what the types express; the message names the key.
    fn validate(&self) -> Result<()>;

    /// Parses TOML; `origin` names the source in errors.
    fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self =
            toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        cfg.validate()
            .map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        Ok(cfg)
    }

    fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("every config value has a TOML form")
    }

    /// Applies `section.key=value` overrides, re-parsing the result so types
    /// and allowed values are checked as for a file.
    fn with_overrides(&self, sets: &[String]) -> Result<Self> {
        Self::from_toml(&apply_overrides(&self.to_toml(), sets)?, "--set")
    }
}

impl ConfigFile for TrainConfig {
    fn validate(&self) -> Result<()> {
        let bad = |k: &str, v: &dyn std::fmt::Display, allowed: &str| {
            Err(Error::Config(format!("{k} = {v}: {allowed}")))
        };
        self.model.backbone.validate("model")?;
        // The footprint refuses an image size the backbone cannot take (a
        // ViT's sides must be multiples of its patch): said when loaded.
        self.model.backbone.footprint(self.data.image_size)?;
        if self.train.layer_decay != 1.0 && self.model.backbone.lr_layer("").is_none() {
            return bad(
                "train.layer_decay",
                &self.train.layer_decay,
                &format!(
                    "layer-wise decay needs a backbone made of a stack of like layers (kind = \"vit\"), not {}",
                    self.model.backbone
                ),
            );
        }
        if self.model.init_strict && self.model.init_from.is_none() {
            return bad(
                "model.init_strict",
                &true,
                "needs model.init_from (the checkpoint to start from)",
            );
        }
        self.data.validate()?;
        self.model
            .backbone
            .check_image_size("model", self.data.image_size)?;
        self.train.validate()?;
        let (n_aus, n_expr) = (
            self.data.label_set.num_aus(),
            self.data.label_set.num_expressions(),
        );
        if self.model.n_aus != n_aus || self.model.n_expr != n_expr {
            return Err(Error::Config(format!(
                "model.n_aus/n_expr = {}/{} do not match data.label_set {:?} ({n_aus}/{n_expr})",
                self.model.n_aus, self.model.n_expr, self.data.label_set
            )));
        }
        self.gan_mix.validate()?;
        self.schedule.validate()
    }
}

/// `text` with each `section.key=value` of `sets` written in; the caller
/// re-parses the result, so types and allowed values are checked as for a file.
fn apply_overrides(text: &str, sets: &[String]) -> Result<String> {
    let mut doc: toml::Table = toml::from_str(text).expect("own TOML parses");
    for s in sets {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("--set {s}: expected section.key=value")))?;
        let path: Vec<&str> = key.trim().split('.').collect();
        // A value that is not valid TOML on its own is taken as a string; so is
        // one that parses only with more keys after it (`1\n[model]\ndepth = 50`),
        // which would otherwise be dropped without a word.
        let v: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", value.trim()))
            .ok()
            .filter(|t| t.len() == 1)
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.trim().to_string()));
        let (last, parents) = path.split_last().expect("split yields one part at least");
        let mut table = &mut doc;
        for p in parents {
            table = table
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| Error::Config(format!("--set {s}: '{p}' is not a section")))?;
        }
        table.insert(last.to_string(), v);
    }
    Ok(toml::to_string(&doc).expect("table serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roundtrips_through_toml() {
        let c = TrainConfig::default();
        let back = TrainConfig::from_toml(&c.to_toml(), "roundtrip").unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn the_built_in_default_is_configs_synthetic_cpu() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/synthetic-cpu.toml");
        assert_eq!(TrainConfig::load(&path).unwrap(), TrainConfig::default());
    }

    #[test]
    fn every_shipped_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                // Temporal, GAN and pretraining configs are other file kinds, checked as such.
                let parsed = if name.starts_with("temporal-") {
                    crate::train::temporal::TemporalConfig::load(&p).map(|_| ())
                } else if name.starts_with("gan-") {
                    crate::train::gan::GanConfig::load(&p).map(|_| ())
                } else if name.starts_with("mae-") {
                    crate::train::pretrain::PretrainConfig::load(&p).map(|_| ())
                } else {
                    TrainConfig::load(&p).map(|_| ())
                };
                parsed.unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 5, "expected the five shipped configs, found {n}");
    }

    #[test]
    fn errors_name_the_key_and_allowed_values() {
        let e = TrainConfig::from_toml(
            "[model.backbone]\nkind = \"se_resnet\"\ndepth = 20\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x.toml")
                && e.contains("model.backbone.depth")
                && e.contains("10, 18, 34, 50"),
            "{e}"
        );
        let e = TrainConfig::from_toml(
            "[model.backbone]\nkind = \"se_resnet\"\nstem = \"huge\"\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x.toml") && e.contains("imagenet") && e.contains("small"),
            "{e}"
        );
        let e = TrainConfig::from_toml("[train]\nstepz = 3\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("stepz") && e.contains("steps"), "{e}");
        let e = TrainConfig::from_toml("[schedule]\nbase_lr = 0.1\ndecay = { kind = \"cosine\", total_steps = 9, gamma = 2 }\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gamma"), "{e}");
        let e = TrainConfig::from_toml("[train]\ndevice = \"tpu\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.device") && e.contains("cuda:N"), "{e}");
    }

    #[test]
    fn overrides_are_typed_and_checked() {
        let c = TrainConfig::default()
            .with_overrides(&[
                "train.steps=7".into(),
                "model.backbone.stem=small".into(),
                "data.augment.enabled=false".into(),
            ])
            .unwrap();
        assert_eq!(c.train.steps, 7);
        let BackboneConfig::SeResnet(b) = &c.model.backbone else {
            panic!("the default backbone is an SE-ResNet")
        };
        assert_eq!(b.stem, crate::model::Stem::Small);
        assert!(!c.data.augment.enabled);
        assert!(TrainConfig::default()
            .with_overrides(&["train.steps=many".into()])
            .is_err());
        assert!(TrainConfig::default()
            .with_overrides(&["nokey".into()])
            .is_err());
    }
}
