//! The layer-norm layer: a weight (ones) and bias (zeros) over the last axis
//! and its epsilon, shared by every Transformer in the crate (the temporal
//! encoder's post-norm layers, the ViT's pre-norm blocks).

use super::{Ctx, Scope};
use crate::{ops, DType, ParamId, Params, Result, Tensor, Var};

/// `y = weight·(x - mean)/sqrt(var + eps) + bias` over the last axis.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: ParamId,
    pub bias: ParamId,
    pub eps: f64,
}

impl LayerNorm {
    /// Registers `scope.weight` (ones) and `scope.bias` (zeros) of width `dim`.
    /// Draws nothing from the run's RNG.
    pub fn new(params: &mut Params, scope: &Scope, dim: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: params.add(scope.name("weight"), Tensor::ones([dim], DType::F32))?,
            bias: params.add(scope.name("bias"), Tensor::zeros([dim], DType::F32))?,
            eps,
        })
    }

    /// x [.., dim] -> the same shape.
    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let (w, b) = (cx.param(self.weight), cx.param(self.bias));
        ops::layer_norm(cx.tape, x, &w, &b, self.eps)
    }
}
