//! Squeeze-and-excitation channel gating.

use super::{Ctx, Linear, Scope};
use crate::{ops, Params, Result, Rng, Var};

/// Squeeze-and-excitation: global average pool -> FC (C -> C/r) -> ReLU ->
/// FC (C/r -> C) -> sigmoid -> scale each channel of the input by its gate.
#[derive(Clone, Debug)]
pub struct SeBlock {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl SeBlock {
    pub fn new(
        params: &mut Params,
        scope: &Scope,
        c: usize,
        reduction: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let hidden = (c / reduction.max(1)).max(1);
        Ok(SeBlock {
            fc1: Linear::new(params, &scope.pp("fc1"), c, hidden, true, rng)?,
            fc2: Linear::new(params, &scope.pp("fc2"), hidden, c, true, rng)?,
        })
    }

    /// x with every channel scaled by its gate.
    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let gate = self.gate(cx, x)?;
        ops::channel_scale(cx.tape, x, &gate)
    }

    /// `relu(forward(x) + res)`, the end of an SE residual block, as one op
    /// ([`ops::channel_scale_add_relu`]).
    pub fn forward_add_relu(&self, cx: &mut Ctx, x: &Var, res: &Var) -> Result<Var> {
        let gate = self.gate(cx, x)?;
        ops::channel_scale_add_relu(cx.tape, x, &gate, res)
    }

    /// The gates [N, C] of x [N, H, W, C].
    fn gate(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let s = ops::global_avg_pool(cx.tape, x)?;
        let h = ops::relu(cx.tape, &self.fc1.forward(cx, &s)?)?;
        ops::sigmoid(cx.tape, &self.fc2.forward(cx, &h)?)
    }
}
