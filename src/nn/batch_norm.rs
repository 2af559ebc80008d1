//! Batch norm with running statistics.

use super::{Buffers, Ctx, Scope};
use crate::ops::batch_norm::BatchNormParams;
use crate::{ops, DType, ParamId, Params, Result, Tensor, Var};

/// Batch norm over the channel (last) axis with running statistics in [`Buffers`].
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    pub weight: ParamId,
    pub bias: ParamId,
    pub running_mean: ParamId,
    pub running_var: ParamId,
    pub momentum: f64,
    pub eps: f64,
}

impl BatchNorm2d {
    pub fn new(
        params: &mut Params,
        buffers: &mut Buffers,
        scope: &Scope,
        c: usize,
    ) -> Result<Self> {
        Ok(BatchNorm2d {
            weight: params.add(scope.name("weight"), Tensor::ones([c], DType::F32))?,
            bias: params.add(scope.name("bias"), Tensor::zeros([c], DType::F32))?,
            running_mean: buffers
                .add(scope.name("running_mean"), Tensor::zeros([c], DType::F32))?,
            running_var: buffers.add(scope.name("running_var"), Tensor::ones([c], DType::F32))?,
            momentum: 0.1,
            eps: 1e-5,
        })
    }

    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        self.run(cx, x, ops::batch_norm2d)
    }

    /// `relu(self.forward(x))` as the one fused op [`ops::batch_norm_relu`].
    pub fn forward_relu(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        self.run(cx, x, ops::batch_norm_relu)
    }

    fn run(&self, cx: &mut Ctx, x: &Var, op: BatchNormOp) -> Result<Var> {
        let prm = BatchNormParams {
            momentum: self.momentum,
            eps: self.eps,
            training: cx.training,
        };
        let (w, b) = (cx.param(self.weight), cx.param(self.bias));
        let (rm, rv) = cx
            .buffers
            .get_pair_mut(self.running_mean, self.running_var)?;
        op(cx.tape, x, &w, &b, rm, rv, prm)
    }
}

/// The signature [`ops::batch_norm2d`] and [`ops::batch_norm_relu`] share.
type BatchNormOp =
    fn(&crate::Tape, &Var, &Var, &Var, &mut Tensor, &mut Tensor, BatchNormParams) -> Result<Var>;
