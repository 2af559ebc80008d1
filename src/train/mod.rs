//! Training infrastructure that does not depend on the model: run
//! configuration, checkpoints, run directories and metric logs, the NaN
//! guard, and end-of-run plots.

pub mod checkpoint;
pub mod config;
pub mod nan_guard;
pub mod plot;
pub mod run_dir;

pub use checkpoint::{Checkpoint, CheckpointRef, TrainProgress};
pub use config::TrainConfig;
pub use nan_guard::{check_finite, check_loss};
pub use run_dir::{BestTracker, MetricsLog, RunDir};
