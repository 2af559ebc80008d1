//! Data-parallel training's machinery (docs/distributed.md): the torchrun
//! environment ([`env`]), the TCP rendezvous that hands every rank rank 0's
//! NCCL unique id and stays open as a control channel ([`rendezvous`]), the
//! host collectives over that channel ([`group`]), each rank's shard of an
//! epoch ([`shard`]), the gradient bucket plan ([`buckets`]), NCCL loaded at
//! run time ([`nccl_lib`]) and the GPU gradient all-reduce on it ([`nccl`]),
//! and evaluation metrics from gathered predictions ([`gather`]). The
//! trainer's side is `train/data_parallel.rs`.

pub mod buckets;
pub mod env;
pub mod gather;
pub mod group;
pub mod nccl;
pub mod nccl_lib;
pub mod rendezvous;
pub mod shard;

pub use buckets::{Bucket, BucketPlan, DEFAULT_BUCKET_BYTES};
pub use env::DistEnv;
pub use gather::{gather_metrics, RankPredictions};
pub use group::ProcessGroup;
pub use nccl_lib::{nccl_available, nccl_version, require_nccl};
pub use rendezvous::{host, join, rendezvous, Control};
pub use shard::Shard;
