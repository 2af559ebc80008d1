//! The TOML configuration of a training run.
//!
//! Every section and field has a default, so a file names only what differs;
//! unknown keys are errors (a typo must not silently train with a default).
//! Errors name the file and the key.

use crate::optim::{AdamConfig, LrSchedule, ScheduleKind, SgdConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
    pub train: TrainSection,
    pub run: RunConfig,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    /// Procedurally rendered faces with known labels: needs no download.
    #[default]
    Synthetic,
    /// Aff-Wild2 cropped-aligned frames with ABAW annotation files under `root`.
    Abaw,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnBadSample {
    /// Log the sample (file, line) and leave it out.
    #[default]
    Skip,
    /// Stop with the error.
    Fail,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LabelSet {
    /// ABAW 2022 MTL (static frames, 12 AUs, 8 expressions).
    #[default]
    Abaw2022,
    /// ABAW 2020 (per-task annotation folders, 7 expressions).
    Abaw2020,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub source: DataSource,
    /// Dataset root; required for `source = "abaw"`.
    pub root: Option<PathBuf>,
    /// Square input side in pixels (112 for Aff-Wild2's crops; 64 keeps CPU runs short).
    pub image_size: usize,
    pub batch_size: usize,
    /// Loader threads decoding and augmenting images.
    pub workers: usize,
    pub on_bad_sample: OnBadSample,
    pub label_set: LabelSet,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: DataSource::Synthetic,
            root: None,
            image_size: 112,
            batch_size: 64,
            workers: 2,
            on_bad_sample: OnBadSample::Skip,
            label_set: LabelSet::Abaw2022,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 7x7 stride-2 conv + 3x3 max pool (ImageNet ResNet).
    #[default]
    Imagenet,
    /// 3x3 stride-1 conv, no pool: keeps resolution for 64-112 px inputs.
    Small,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Neck {
    /// Per-task attention over the last feature map (MTANet-style).
    #[default]
    Mtanet,
    /// Global average pooling shared by all heads.
    Gap,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// SE-ResNet depth: 10, 18, 34 (basic blocks) or 50 (bottlenecks).
    pub depth: u32,
    /// Multiplies every stage's channel count (0.25 for a tiny CPU model).
    pub width: f64,
    pub se_reduction: usize,
    pub stem: Stem,
    pub neck: Neck,
    /// Dropout before the heads.
    pub dropout: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            depth: 50,
            width: 1.0,
            se_reduction: 16,
            stem: Stem::Imagenet,
            neck: Neck::Mtanet,
            dropout: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// `w_va * L_va + w_au * L_au + w_expr * L_expr`.
    #[default]
    Fixed,
    /// Learned homoscedastic-uncertainty weights (Kendall et al. 2018).
    Uncertainty,
    /// Dynamic weight averaging (Liu et al. 2019) with `dwa_temperature`.
    Dwa,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    pub weighting: Weighting,
    pub w_va: f64,
    pub w_au: f64,
    pub w_expr: f64,
    pub dwa_temperature: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            weighting: Weighting::Fixed,
            w_va: 1.0,
            w_au: 1.0,
            w_expr: 1.0,
            // The DWA paper's setting.
            dwa_temperature: 2.0,
        }
    }
}

/// `kind = "adam"` (AdamW with `decoupled = true`) or `kind = "sgd"`, plus
/// that optimizer's fields. The learning rate lives in `[schedule]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimConfig {
    Adam(AdamConfig),
    Sgd(SgdConfig),
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig::Adam(AdamConfig::default())
    }
}

/// `[schedule]`: the optimizer crate's [`LrSchedule`] with a default.
///
/// Deserialized by hand: `LrSchedule` combines `flatten` with
/// `deny_unknown_fields`, which serde does not support (every kind-specific
/// key, such as `gamma`, is reported unknown). Here the common keys are split
/// off and the rest is read as the internally tagged [`ScheduleKind`], which
/// still rejects unknown keys.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(transparent)]
pub struct ScheduleConfig(pub LrSchedule);

impl<'de> Deserialize<'de> for ScheduleConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Common {
            base_lr: f64,
            #[serde(default)]
            warmup_steps: u64,
        }
        let mut rest = toml::Table::deserialize(d)?;
        let mut common = toml::Table::new();
        for key in ["base_lr", "warmup_steps"] {
            if let Some(v) = rest.remove(key) {
                common.insert(key.into(), v);
            }
        }
        let common: Common = common.try_into().map_err(D::Error::custom)?;
        if !rest.contains_key("kind") {
            rest.insert("kind".into(), "constant".into());
        }
        let kind: ScheduleKind = rest.try_into().map_err(D::Error::custom)?;
        Ok(ScheduleConfig(LrSchedule {
            base_lr: common.base_lr,
            warmup_steps: common.warmup_steps,
            kind,
        }))
    }
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig(LrSchedule::constant(1e-3))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Length of the run: set exactly one of `epochs` and `steps`.
    pub epochs: Option<u64>,
    pub steps: Option<u64>,
    /// Steps between training-loss records in metrics.jsonl.
    pub log_every: u64,
    /// Steps between validation passes (and `last`/`best` checkpoints).
    pub eval_every: u64,
    pub seed: u64,
    /// Global gradient-norm clip; absent means no clipping.
    pub grad_clip: Option<f64>,
    /// "cpu" or "cuda:N".
    pub device: String,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            epochs: None,
            steps: None,
            log_every: 50,
            eval_every: 1000,
            seed: 0,
            grad_clip: None,
            device: "cpu".into(),
        }
    }
}

/// How long a run lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunLength {
    Epochs(u64),
    Steps(u64),
}

/// Where a run executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl TrainSection {
    /// The run length; `validate` guarantees exactly one is set.
    pub fn length(&self) -> Result<RunLength> {
        match (self.epochs, self.steps) {
            (Some(e), None) if e > 0 => Ok(RunLength::Epochs(e)),
            (None, Some(s)) if s > 0 => Ok(RunLength::Steps(s)),
            (Some(_), Some(_)) => Err(Error::Config(
                "train: set only one of 'epochs' and 'steps'".into(),
            )),
            (None, None) => Err(Error::Config(
                "train: set 'epochs' or 'steps' (the run length)".into(),
            )),
            _ => Err(Error::Config(
                "train: 'epochs'/'steps' must be greater than 0".into(),
            )),
        }
    }

    pub fn device(&self) -> Result<DeviceSpec> {
        if self.device == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        self.device
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceSpec::Cuda)
            .ok_or_else(|| {
                Error::Config(format!(
                    "train.device: '{}' is not \"cpu\" or \"cuda:N\"",
                    self.device
                ))
            })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub runs_dir: PathBuf,
    /// Run directory name; absent: a fresh timestamped name.
    pub name: Option<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            runs_dir: PathBuf::from("runs"),
            name: None,
        }
    }
}

impl TrainConfig {
    /// Reads and validates a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<TrainConfig> {
        Self::load_with_overrides(path, &[])
    }

    /// Reads a config file, applies `key.path=value` overrides (command line
    /// style, see [`TrainConfig::apply_override`]) and validates the result.
    pub fn load_with_overrides(
        path: impl AsRef<Path>,
        overrides: &[String],
    ) -> Result<TrainConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        for spec in overrides {
            set_dotted(&mut table, spec)?;
        }
        let cfg: TrainConfig = table
            .try_into()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        cfg.validate()
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), strip_prefix(e))))?;
        Ok(cfg)
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<TrainConfig> {
        let cfg: TrainConfig =
            toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        cfg.validate()
            .map_err(|e| Error::Config(format!("{origin}: {}", strip_prefix(e))))?;
        Ok(cfg)
    }

    /// The resolved config (defaults filled in) as TOML: what a run directory
    /// keeps and a checkpoint embeds, so a run can be reproduced from either.
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Config(format!("cannot write config: {e}")))
    }

    /// Sets one key from a `section.key=value` string, e.g. `train.steps=100`
    /// or `data.source=abaw`. The value is read as TOML (numbers, booleans,
    /// quoted strings, arrays); anything that is not valid TOML is taken as a
    /// bare string. The result is validated; on error `self` is unchanged.
    pub fn apply_override(&mut self, spec: &str) -> Result<()> {
        let mut table = toml::Table::try_from(&*self)
            .map_err(|e| Error::Config(format!("override '{spec}': {e}")))?;
        set_dotted(&mut table, spec)?;
        let cfg: TrainConfig = table
            .try_into()
            .map_err(|e| Error::Config(format!("override '{spec}': {e}")))?;
        cfg.validate()
            .map_err(|e| Error::Config(format!("override '{spec}': {}", strip_prefix(e))))?;
        *self = cfg;
        Ok(())
    }

    /// Checks values serde cannot: ranges, combinations, required fields.
    /// Messages name the key as `section.field`.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| Err(Error::Config(format!("{key}: {msg}")));
        let d = &self.data;
        if d.source == DataSource::Abaw && d.root.is_none() {
            return bad("data.root", "required when data.source = \"abaw\"".into());
        }
        if d.image_size < 16 {
            return bad("data.image_size", format!("{} is below 16", d.image_size));
        }
        if d.batch_size == 0 {
            return bad("data.batch_size", "must be at least 1".into());
        }
        let m = &self.model;
        if ![10, 18, 34, 50].contains(&m.depth) {
            return bad(
                "model.depth",
                format!("{} is not one of 10, 18, 34, 50", m.depth),
            );
        }
        if !(m.width > 0.0 && m.width <= 4.0) {
            return bad("model.width", format!("{} is outside (0, 4]", m.width));
        }
        if m.se_reduction == 0 {
            return bad("model.se_reduction", "must be at least 1".into());
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return bad("model.dropout", format!("{} is outside [0, 1)", m.dropout));
        }
        let l = &self.loss;
        for (key, w) in [
            ("loss.w_va", l.w_va),
            ("loss.w_au", l.w_au),
            ("loss.w_expr", l.w_expr),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                return bad(key, format!("{w} is not a finite weight >= 0"));
            }
        }
        // Written so that NaN is rejected too.
        if l.dwa_temperature.is_nan() || l.dwa_temperature <= 0.0 {
            return bad("loss.dwa_temperature", "must be > 0".into());
        }
        self.schedule
            .0
            .validate()
            .map_err(|e| Error::Config(format!("schedule: {}", strip_prefix(e))))?;
        let t = &self.train;
        t.length()?;
        t.device()?;
        if t.log_every == 0 || t.eval_every == 0 {
            return bad("train.log_every/eval_every", "must be at least 1".into());
        }
        if let Some(c) = t.grad_clip {
            if !(c > 0.0 && c.is_finite()) {
                return bad("train.grad_clip", format!("{c} is not a positive number"));
            }
        }
        if let Some(name) = &self.run.name {
            if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
                return bad(
                    "run.name",
                    format!("'{name}' is not a plain directory name"),
                );
            }
        }
        Ok(())
    }
}

/// The message of a `Config` error without the enum's "config: " prefix, so
/// wrapping it with the file name does not repeat it.
fn strip_prefix(e: Error) -> String {
    match e {
        Error::Config(m) => m,
        other => other.to_string(),
    }
}

/// Applies `a.b.c=value` to a TOML table, creating missing tables.
fn set_dotted(table: &mut toml::Table, spec: &str) -> Result<()> {
    let bad = |msg: &str| Error::Config(format!("override '{spec}': {msg}"));
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected key.path=value"))?;
    let (key, raw) = (key.trim(), raw.trim());
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").ok_or_else(|| bad("empty value"))?,
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| bad("empty key"))?;
    let mut node = table;
    for part in parts {
        node = node
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| bad(&format!("'{part}' is not a table")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(name)
    }

    #[test]
    fn shipped_configs_parse() {
        let cpu = TrainConfig::load(shipped("synthetic-cpu.toml")).unwrap();
        assert_eq!(cpu.data.source, DataSource::Synthetic);
        assert_eq!((cpu.model.depth, cpu.data.image_size), (10, 64));
        assert_eq!(cpu.train.device().unwrap(), DeviceSpec::Cpu);
        let gpu = TrainConfig::load(shipped("affwild2-gpu.toml")).unwrap();
        assert_eq!(gpu.data.source, DataSource::Abaw);
        assert_eq!((gpu.model.depth, gpu.data.image_size), (50, 112));
        assert_eq!(gpu.data.batch_size, 256);
        assert_eq!(gpu.train.device().unwrap(), DeviceSpec::Cuda(0));
        assert!(matches!(gpu.optim, OptimConfig::Sgd(_)));
        assert!(matches!(gpu.schedule.0.kind, ScheduleKind::Cosine { .. }));
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = TrainConfig::from_toml_str("[train]\nsteps = 10\n", "t.toml").unwrap();
        assert_eq!(c.train.length().unwrap(), RunLength::Steps(10));
        assert_eq!(c.model, ModelConfig::default());
        assert_eq!(c.optim, OptimConfig::Adam(AdamConfig::default()));
        assert_eq!(c.schedule.0, LrSchedule::constant(1e-3));
    }

    #[test]
    fn optimizer_and_schedule_sections() {
        let text = r#"
            [optim]
            kind = "sgd"
            momentum = 0.8
            nesterov = true
            [schedule]
            base_lr = 0.1
            warmup_steps = 5
            kind = "step"
            step_size = 100
            gamma = 0.5
            [train]
            epochs = 3
        "#;
        let c = TrainConfig::from_toml_str(text, "t.toml").unwrap();
        let OptimConfig::Sgd(s) = &c.optim else {
            panic!("{:?}", c.optim)
        };
        assert_eq!((s.momentum, s.nesterov), (0.8, true));
        assert_eq!(c.schedule.0.warmup_steps, 5);
        assert_eq!(
            c.schedule.0.kind,
            ScheduleKind::Step {
                step_size: 100,
                gamma: 0.5
            }
        );
    }

    #[test]
    fn errors_name_file_and_key() {
        let err = |text: &str| {
            TrainConfig::from_toml_str(text, "my.toml")
                .unwrap_err()
                .to_string()
        };
        let e = err("[train]\nsteps = 1\n[model]\ndepht = 18\n");
        assert!(e.contains("my.toml") && e.contains("depht"), "{e}");
        let e = err("[train]\nsteps = 1\n[model]\ndepth = 19\n");
        assert!(e.contains("my.toml") && e.contains("model.depth"), "{e}");
        let e = err("[train]\nsteps = 1\n[optim]\nkind = \"adam\"\nmomentum = 0.9\n");
        assert!(e.contains("momentum"), "{e}");
        let e = err("[train]\nsteps = 1\n[schedule]\nbase_lr = 0.1\nkind = \"linear\"\ntotal_steps = 9\ngama = 1\n");
        assert!(e.contains("my.toml") && e.contains("gama"), "{e}");
        let e = err("[train]\nsteps = 1\n[schedule]\nbase_lr = 0.1\nkind = \"cosine\"\n");
        assert!(e.contains("total_steps"), "{e}");
        let e = err("[train]\nsteps = 1\nepochs = 2\n");
        assert!(e.contains("only one of"), "{e}");
        let e = err("[train]\nsteps = 1\ndevice = \"gpu\"\n");
        assert!(e.contains("train.device"), "{e}");
        let e = err("[train]\nsteps = 1\n[data]\nsource = \"abaw\"\n");
        assert!(e.contains("data.root"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let e = TrainConfig::load(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.toml"), "{e}");
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[train]\nsteps = \"ten\"\n").unwrap();
        let e = TrainConfig::load(&file).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("steps"), "{e}");
    }

    #[test]
    fn resolved_config_round_trips_through_toml() {
        for name in ["affwild2-gpu.toml", "synthetic-cpu.toml"] {
            let c = TrainConfig::load(shipped(name)).unwrap();
            let text = c.to_toml_string().unwrap();
            assert_eq!(TrainConfig::from_toml_str(&text, "resolved").unwrap(), c);
        }
        // Absent options (no grad clip, no run name, no data root) stay absent.
        let mut c = TrainConfig::from_toml_str("[train]\nepochs = 2\n", "t").unwrap();
        c.train.grad_clip = None;
        let text = c.to_toml_string().unwrap();
        assert_eq!(TrainConfig::from_toml_str(&text, "resolved").unwrap(), c);
    }

    #[test]
    fn overrides_set_keys_and_validate() {
        let mut c = TrainConfig::load(shipped("synthetic-cpu.toml")).unwrap();
        c.apply_override("train.steps=100").unwrap();
        assert_eq!(c.train.steps, Some(100));
        c.apply_override("data.on_bad_sample=fail").unwrap();
        assert_eq!(c.data.on_bad_sample, OnBadSample::Fail);
        c.apply_override("schedule.base_lr = 0.05").unwrap();
        assert_eq!(c.schedule.0.base_lr, 0.05);
        c.apply_override("run.name=\"abc\"").unwrap();
        assert_eq!(c.run.name.as_deref(), Some("abc"));
        let before = c.clone();
        let e = c.apply_override("model.depth=11").unwrap_err().to_string();
        assert!(e.contains("model.depth"), "{e}");
        assert!(c.apply_override("model.nope=1").is_err());
        assert!(c.apply_override("train.steps").is_err());
        assert_eq!(c, before);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[train]\nepochs = 1\n").unwrap();
        let c = TrainConfig::load_with_overrides(&file, &["model.depth=18".into()]).unwrap();
        assert_eq!(c.model.depth, 18);
    }
}
