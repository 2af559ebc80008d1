//! Training: the multi-task objective and the loop.

mod mtl_loss;

pub use mtl_loss::{LossConfig, LossTerms, MtlLoss, MtlTargets, Weighting};
