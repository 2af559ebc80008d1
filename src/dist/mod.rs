//! Data-parallel training, the parts that need no GPU: the torchrun
//! environment ([`env`]), the TCP rendezvous that hands every rank the same
//! bytes (later the NCCL unique id) and stays open as a control channel
//! ([`rendezvous`]), each rank's shard of an epoch ([`shard`]), the gradient
//! bucket plan for the all-reduce ([`buckets`]) and evaluation metrics from
//! gathered predictions ([`gather`]). The NCCL all-reduce itself is not here.

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
