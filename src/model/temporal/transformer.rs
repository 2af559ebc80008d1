//! One post-norm Transformer encoder layer (Vaswani et al., PyTorch's
//! `norm_first = false`): `x = LN(x + Drop(MHA(x)))`, then
//! `x = LN(x + Drop(FF(x)))` with `FF = Linear -> ReLU -> Drop -> Linear`.
//! Self-attention takes the key-padding mask, so padded frames are never read.

use crate::nn::{Ctx, LayerNorm, Linear, Scope};
use crate::{ops, Params, Result, Rng, Var};

/// Layer-norm epsilon, PyTorch's default.
const LN_EPS: f64 = 1e-5;

#[derive(Clone, Debug)]
pub struct TransformerLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ff1: Linear,
    ff2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    heads: usize,
    dropout: f64,
}

impl TransformerLayer {
    /// `dim` must be a multiple of `heads`; `ff` is the feed-forward width.
    pub fn new(
        p: &mut Params,
        s: &Scope,
        dim: usize,
        heads: usize,
        ff: usize,
        dropout: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(crate::Error::Config(format!(
                "{s}: d_model = {dim} must be a positive multiple of heads = {heads}"
            )));
        }
        let lin = |p: &mut Params, part: &str, i: usize, o: usize, rng: &mut Rng| {
            Linear::new(p, &s.pp(part), i, o, true, rng)
        };
        Ok(TransformerLayer {
            q: lin(p, "attn.q", dim, dim, rng)?,
            k: lin(p, "attn.k", dim, dim, rng)?,
            v: lin(p, "attn.v", dim, dim, rng)?,
            out: lin(p, "attn.out", dim, dim, rng)?,
            ff1: lin(p, "ff1", dim, ff, rng)?,
            ff2: lin(p, "ff2", ff, dim, rng)?,
            norm1: LayerNorm::new(p, &s.pp("norm1"), dim, LN_EPS)?,
            norm2: LayerNorm::new(p, &s.pp("norm2"), dim, LN_EPS)?,
            heads,
            dropout,
        })
    }

    /// x [N, T, E] with `mask[n·T + t]` false at padded frames -> [N, T, E].
    pub fn forward(&self, cx: &mut Ctx, x: &Var, mask: &[bool]) -> Result<Var> {
        let &[n, t, e] = x.dims() else {
            return Err(crate::Error::shape(
                "transformer_layer",
                format!("input {} must be [N, T, E]", x.shape()),
            ));
        };
        let split = [n, t, self.heads, e / self.heads];
        let heads = |cx: &mut Ctx, l: &Linear| -> Result<Var> {
            ops::reshape(cx.tape, &l.forward(cx, x)?, split)
        };
        let (q, k, v) = (
            heads(cx, &self.q)?,
            heads(cx, &self.k)?,
            heads(cx, &self.v)?,
        );
        let a = ops::attention(cx.tape, &q, &k, &v, Some(mask))?;
        let a = self
            .out
            .forward(cx, &ops::reshape(cx.tape, &a, [n, t, e])?)?;
        let a = ops::dropout(cx.tape, &a, self.dropout, cx.training, cx.rng)?;
        let x = self.norm1.forward(cx, &ops::add(cx.tape, x, &a)?)?;
        let f = ops::relu(cx.tape, &self.ff1.forward(cx, &x)?)?;
        let f = ops::dropout(cx.tape, &f, self.dropout, cx.training, cx.rng)?;
        let f = self.ff2.forward(cx, &f)?;
        let f = ops::dropout(cx.tape, &f, self.dropout, cx.training, cx.rng)?;
        self.norm2.forward(cx, &ops::add(cx.tape, &x, &f)?)
    }
}
