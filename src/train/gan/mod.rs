//! The multi-task GAN: a conditional generator and, as discriminator, the
//! multi-task network itself with an extra real/fake logit, so adversarial
//! and supervised learning share one representation (and frames with
//! missing labels still train the adversarial part). Also: sample grids,
//! judging generated expressions with a separate network, and mixing
//! generated faces into plain multi-task training.

pub mod condition;
mod config;
pub mod grid;
pub mod judge;
pub mod loss;
pub mod mix;
mod run;
mod trainer;

pub use crate::train::GanMixConfig;
pub use condition::{ConditionBank, Conditions, LabelRow};
pub use config::{GanConfig, GanSettings};
pub use grid::{sample_grid, write_grid, GridKind};
pub use judge::{discriminator_agreement, judge_expressions, Agreement, JUDGE_SEED, SELECT_SEED};
pub use mix::GanMixer;
pub use run::{gan_run, GanTask};
pub use trainer::{GanTrainer, PlayerStats};
