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
    /// The hidden width for `c` channels: `c / reduction` (at least 1)
    /// when `divisor` is 1, else `c / reduction` rounded to the nearest
    /// multiple of `divisor` and at least `divisor` (timm's SE-ResNets use
    /// 8, which changes only reduced widths: 256 / 16 stays 16).
    pub fn hidden(c: usize, reduction: usize, divisor: usize) -> usize {
        let r = reduction.max(1);
        if divisor <= 1 {
            return (c / r).max(1);
        }
        let v = c as f64 / r as f64;
        (((v + divisor as f64 / 2.0) as usize) / divisor * divisor).max(divisor)
    }

    /// Gates `c` channels through `hidden` ([`SeBlock::hidden`]).
    pub fn new(
        params: &mut Params,
        scope: &Scope,
        c: usize,
        hidden: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
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

#[cfg(test)]
mod tests {
    use super::SeBlock;

    #[test]
    fn hidden_widths_floor_or_round_to_the_divisor() {
        // C / r as it is (every SE-ResNet checkpoint so far), at least 1.
        assert_eq!([64, 40, 8].map(|c| SeBlock::hidden(c, 16, 1)), [4, 2, 1]);
        // timm: nearest multiple of 8, at least 8 (full widths unchanged).
        assert_eq!(
            [256, 2048, 32, 200, 72].map(|c| SeBlock::hidden(c, 16, 8)),
            [16, 128, 8, 16, 8]
        );
    }
}
