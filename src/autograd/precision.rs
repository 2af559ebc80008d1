//! The numeric precision a tape's convolutions compute in: its autocast
//! setting, in PyTorch's terms.

use serde::{Deserialize, Serialize};

/// `F32` (the default) computes everything in f32. Under `Bf16` the conv2d
/// forward products read bf16-rounded activations and weights and
/// accumulate in f32 (tensor cores on a GPU), and so do the input
/// gradients' (bf16 output gradient and weights) and the weight gradients'
/// (bf16 activations and output gradient; TF32 for grouped convolutions,
/// which have no bf16 kernel). What they produce, batch norm, the losses
/// and the optimizer stay f32, and the weights are kept in f32 (the master
/// copy).
/// Backward treats the rounding as the identity (a straight-through
/// estimate, as autocast does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}
