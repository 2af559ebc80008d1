//! Training: the run configuration, the multi-task objective, the loop,
//! checkpoints, run directories and metric logs, the NaN guard and plots;
//! feature extraction and the temporal models' training.

mod baseline;
pub mod checkpoint;
pub(crate) mod config;
mod cursor;
mod data_parallel;
mod data_prep;
pub mod ensemble;
pub mod features;
mod frame_run;
pub mod gan;
pub mod head_outputs;
pub mod image_grid;
pub mod init_from;
mod memory_budget;
mod mtl_loss;
pub mod plot;
pub mod predict;
pub mod pretrain;
pub mod run_dir;
pub mod runner;
pub mod seeds;
pub mod temporal;
pub(crate) mod trainer;

pub use baseline::chance_baseline;
pub use checkpoint::{Checkpoint, CheckpointRef, TrainProgress};
pub use config::{
    ConfigFile, DataConfig, DataSource, GanMixConfig, LoopConfig, OptimConfig, RunConfig,
    TrainConfig,
};
pub use cursor::BatchCursor;
pub use data_prep::{cache_root, loader_for, make_loader, prepare_data};
pub use ensemble::Ensemble;
pub use frame_run::{train_rank, train_run, FrameTask};
pub use head_outputs::HeadOutputs;
pub use init_from::{InitReport, ShapeMismatch};
pub use mtl_loss::{LossConfig, LossTerms, MtlLoss, MtlTargets, VaLoss, Weighting};
pub use run_dir::{BestTracker, MetricsLog, RunDir};
pub use trainer::{StepPhases, StepStats, Trainer};
