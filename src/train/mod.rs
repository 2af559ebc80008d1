//! Training: the run configuration, the multi-task objective, the loop,
//! checkpoints, run directories and metric logs, the NaN guard and plots;
//! feature extraction and the temporal models' training.

mod baseline;
pub mod checkpoint;
pub(crate) mod config;
pub mod features;
pub mod gan;
pub mod init_from;
mod mtl_loss;
pub mod nan_guard;
pub mod plot;
pub mod predict;
pub mod run_dir;
mod session;
pub mod temporal;
pub(crate) mod trainer;

pub use baseline::chance_baseline;
pub use checkpoint::{Checkpoint, CheckpointRef, TrainProgress};
pub use config::{
    ConfigFile, DataConfig, DataSource, LoopConfig, OptimConfig, RunConfig, TrainConfig,
};
pub use init_from::{InitReport, ShapeMismatch};
pub use mtl_loss::{LossConfig, LossTerms, MtlLoss, MtlTargets, VaLoss, Weighting};
pub use nan_guard::{check_finite, check_loss};
pub use run_dir::{BestTracker, MetricsLog, RunDir};
pub use session::{cache_root, make_loader, prepare_data, train_run, RunSummary};
pub use trainer::{StepPhases, StepStats, Trainer};
