use crate::{DType, Rng, Tensor};

/// Weight initialisations, as torchvision's ResNet and PyTorch's Linear use them.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    /// Normal(0, 2 / fan_out): He init in fan-out mode for ReLU networks.
    KaimingNormalFanOut,
    /// Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    UniformFanIn,
    Zeros,
    Ones,
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
            Init::Zeros => Tensor::zeros(dims, DType::F32),
            Init::Ones => Tensor::ones(dims, DType::F32),
        }
    }
}
