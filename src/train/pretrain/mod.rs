//! Self-supervised pretraining of a ViT as a masked autoencoder on images
//! without labels (`mtaffect pretrain`): the run config, the images read,
//! the patch targets, the trainer and its runner task. The encoder of its
//! checkpoints is what a `kind = "vit"` fine-tuning run starts from.

mod config;
mod data;
pub mod patches;
mod run;
mod trainer;

pub use config::{PretrainConfig, PretrainEval};
pub use data::pretrain_loaders;
pub use run::{pretrain_run, PretrainTask};
pub use trainer::{grid_row, PretrainTrainer, Reconstruction};
