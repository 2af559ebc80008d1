//! A temporal run's configuration (`mtaffect temporal train --config`): TOML
//! with every section optional and unknown keys rejected, like frame runs.

use crate::data::video_share::valid_fraction;
use crate::data::LabelSet;
use crate::model::temporal::{EncoderKind, TemporalNetConfig};
use crate::optim::{AdamConfig, LrSchedule, ScheduleKind};
use crate::train::{ConfigFile, LoopConfig, LossConfig, OptimConfig, RunConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequenceDataConfig {
    /// Folder of feature files (`mtaffect features --out`), which also holds
    /// copies of the annotation files they were extracted for.
    pub features: PathBuf,
    pub train_annotations: String,
    pub val_annotations: String,
    pub label_set: LabelSet,
    /// Frames per chunk.
    pub chunk: usize,
    /// Chunks per training batch (parallel streams of videos).
    pub lanes: usize,
    /// Chunks per evaluation batch.
    pub eval_lanes: usize,
    /// Share of the training videos trained on (the label-scarce protocol):
    /// the same evenly spaced videos a frame run with this
    /// `data.train_video_fraction` trains on. 1: all. Validation always
    /// uses every video.
    pub train_video_fraction: f64,
}

impl Default for SequenceDataConfig {
    fn default() -> Self {
        SequenceDataConfig {
            features: PathBuf::from("runs/frame-synth/features"),
            train_annotations: "training_set_annotations.txt".into(),
            val_annotations: "validation_set_annotations.txt".into(),
            label_set: LabelSet::Abaw2022,
            chunk: 64,
            lanes: 16,
            eval_lanes: 32,
            train_video_fraction: 1.0,
        }
    }
}

/// Moving-average smoothing of the per-frame outputs at evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmoothingConfig {
    /// Odd window lengths tried on the validation set (1 = no smoothing); each
    /// task keeps the one that scores best.
    pub windows: Vec<usize>,
}

impl Default for SmoothingConfig {
    fn default() -> Self {
        SmoothingConfig {
            windows: vec![1, 3, 5, 9, 15, 25, 41],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemporalConfig {
    pub data: SequenceDataConfig,
    pub model: TemporalNetConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub schedule: LrSchedule,
    pub train: LoopConfig,
    pub smoothing: SmoothingConfig,
    pub run: RunConfig,
}

impl Default for TemporalConfig {
    /// The ABAW4 temporal recipe at CPU size: GRU, Adam with warm-up then linear decay.
    fn default() -> Self {
        TemporalConfig {
            data: SequenceDataConfig::default(),
            model: TemporalNetConfig::default(),
            loss: LossConfig::default(),
            optim: OptimConfig::Adam(AdamConfig {
                weight_decay: 1e-4,
                decoupled: true,
                ..AdamConfig::default()
            }),
            schedule: LrSchedule {
                base_lr: 1e-3,
                warmup_steps: 50,
                decay: ScheduleKind::Linear { total_steps: 950 },
            },
            train: LoopConfig {
                steps: 1000,
                eval_every: 100,
                log_every: 20,
                ..LoopConfig::default()
            },
            smoothing: SmoothingConfig::default(),
            run: RunConfig::default(),
        }
    }
}

impl ConfigFile for TemporalConfig {
    fn validate(&self) -> Result<()> {
        let d = &self.data;
        if d.chunk == 0 || d.lanes == 0 || d.eval_lanes == 0 {
            return Err(Error::Config(format!(
                "data.chunk/lanes/eval_lanes = {}/{}/{}: must be >= 1",
                d.chunk, d.lanes, d.eval_lanes
            )));
        }
        if !valid_fraction(d.train_video_fraction) {
            return Err(Error::Config(format!(
                "data.train_video_fraction = {}: must lie in (0, 1] (1: every training video)",
                d.train_video_fraction
            )));
        }
        if let Some(w) = self.smoothing.windows.iter().find(|&&w| w % 2 == 0) {
            return Err(Error::Config(format!(
                "smoothing.windows: {w} is even; windows are centred, so they must be odd"
            )));
        }
        let m = &self.model;
        m.validate()?;
        if m.encoder == EncoderKind::Transformer
            && (m.heads == 0 || !m.d_model.is_multiple_of(m.heads))
        {
            return Err(Error::Config(format!(
                "model.d_model = {} must be a multiple of model.heads = {}",
                m.d_model, m.heads
            )));
        }
        let (n_aus, n_expr) = (d.label_set.num_aus(), d.label_set.num_expressions());
        if m.n_aus != n_aus || m.n_expr != n_expr {
            return Err(Error::Config(format!(
                "model.n_aus/n_expr = {}/{} do not match data.label_set {:?} ({n_aus}/{n_expr})",
                m.n_aus, m.n_expr, d.label_set
            )));
        }
        self.train.validate()?;
        self.train.require_f32("temporal")?;
        self.train.require_no_groups("temporal")?;
        self.schedule.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roundtrips() {
        let c = TemporalConfig::default();
        assert_eq!(TemporalConfig::from_toml(&c.to_toml(), "rt").unwrap(), c);
    }

    #[test]
    fn errors_name_the_key() {
        let e = TemporalConfig::from_toml("[model]\nencoder = \"tcn\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml") && e.contains("gru") && e.contains("transformer"),
            "{e}"
        );
        let e = TemporalConfig::from_toml("[smoothing]\nwindows = [1, 4]\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("smoothing.windows") && e.contains('4'), "{e}");
        let e = TemporalConfig::from_toml(
            "[model]\nencoder = \"transformer\"\nd_model = 30\nheads = 4\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("model.heads"), "{e}");
        let e = TemporalConfig::from_toml("[data]\ntrain_video_fraction = 0.0\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.train_video_fraction = 0"), "{e}");
        let c = TemporalConfig::default()
            .with_overrides(&["model.encoder=lstm".into(), "data.chunk=32".into()])
            .unwrap();
        assert_eq!((c.model.encoder, c.data.chunk), (EncoderKind::Lstm, 32));
    }

    #[test]
    fn label_feedback_roundtrips_and_is_checked() {
        use crate::model::temporal::{Feedback, FeedbackMode, Task};
        let text = "[model]\nlabel_feedback_start = 0.8\nfeedback = [\n  { source = \"valence\", target = \"arousal\", mode = \"label\" },\n  { source = \"au\", target = \"arousal\" },\n]\n";
        let c = TemporalConfig::from_toml(text, "t.toml").unwrap();
        assert_eq!(
            c.model.feedback,
            [
                Feedback {
                    source: Task::Valence,
                    target: Task::Arousal,
                    mode: FeedbackMode::Label,
                },
                // Written before label feedback existed: feature feedback.
                Feedback {
                    source: Task::Au,
                    target: Task::Arousal,
                    mode: FeedbackMode::Feature,
                },
            ]
        );
        assert_eq!(c.model.label_feedback_start, 0.8);
        assert_eq!(TemporalConfig::from_toml(&c.to_toml(), "rt").unwrap(), c);
        let err = |text: &str| {
            TemporalConfig::from_toml(text, "t.toml")
                .unwrap_err()
                .to_string()
        };
        let e = err(
            "[model]\nfeedback = [{ source = \"au\", target = \"expr\", mode = \"logits\" }]\n",
        );
        assert!(e.contains("feature") && e.contains("label"), "{e}");
        let e = err("[model]\nlabel_feedback_end = 1.5\n");
        assert!(
            e.contains("model.label_feedback_end") && e.contains("1.5"),
            "{e}"
        );
        // A label pair orders its tasks like a feature pair.
        let e = err("[model]\nfeedback = [{ source = \"au\", target = \"expr\", mode = \"label\" }, { source = \"expr\", target = \"au\" }]\n");
        assert!(e.contains("model.feedback") && e.contains("cycle"), "{e}");
    }
}
