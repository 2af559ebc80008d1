//! Temporal training over per-frame features: configuration, the trainer,
//! scoring with moving-average smoothing, and the run session.

mod config;
pub mod eval;
mod run;
mod trainer;

pub use config::{SequenceDataConfig, SmoothingConfig, TemporalConfig};
pub use eval::{moving_average, score, score_with_smoothing, SmoothedEval};
pub use run::{eval_temporal, read_split, train_temporal, TemporalTask};
pub use trainer::{reset_rows, TemporalTrainer};
