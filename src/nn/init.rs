//! Weight initialisations, named for the recipes that use them, so a layer
//! says which one it follows instead of computing bounds inline.

use crate::{DType, Rng, Tensor};

/// Weight initialisations, as torchvision's ResNet, PyTorch's Linear and
/// the ViT/MAE recipe use them.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    /// Normal(0, 2 / fan_out): He init in fan-out mode for ReLU networks.
    KaimingNormalFanOut,
    /// Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    UniformFanIn,
    /// Uniform(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot): the
    /// ViT/MAE recipe's linear layers and patch embedding.
    XavierUniform,
    /// Normal(0, std): the ViT class token (std 0.02).
    Normal(f64),
    Zeros,
}

impl Init {
    /// A tensor of `dims`; `fan_in`/`fan_out` count the inputs/outputs of one unit.
    pub fn make(self, dims: &[usize], fan_in: usize, fan_out: usize, rng: &mut Rng) -> Tensor {
        match self {
            Init::KaimingNormalFanOut => {
                Tensor::randn(dims, (2.0 / fan_out as f64).sqrt(), DType::F32, rng)
            }
            Init::UniformFanIn => {
                let b = 1.0 / (fan_in as f64).sqrt();
                Tensor::uniform(dims, -b, b, DType::F32, rng)
            }
            Init::XavierUniform => {
                let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
                Tensor::uniform(dims, -a, a, DType::F32, rng)
            }
            Init::Normal(std) => Tensor::randn(dims, std, DType::F32, rng),
            Init::Zeros => Tensor::zeros(dims, DType::F32),
        }
    }
}
