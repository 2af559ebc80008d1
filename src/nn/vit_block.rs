//! The pre-norm Transformer block of the Vision Transformer and a stack of
//! them, as one reusable piece: the ViT backbone's encoder and the
//! masked-autoencoder decoder are both a [`VitStack`], each with its own
//! depth and width.
//!
//! Block: `x = x + DropPath(Attn(LN(x)))`, then `x = x + DropPath(MLP(LN(x)))`
//! with `MLP = Linear -> GELU (erf) -> Linear`. Parameter names are timm's
//! `VisionTransformer` ones under the stack's scope (`{i}.norm1.weight`,
//! `{i}.attn.qkv.weight` (one fused [3·D, D] projection, rows q then k then
//! v, heads contiguous inside each), `{i}.attn.proj.*`, `{i}.norm2.*`,
//! `{i}.mlp.fc1.*`, `{i}.mlp.fc2.*`), so MAE and timm checkpoints map one
//! to one. Initialisation is MAE's: xavier-uniform linear weights (the fused
//! qkv as one [3·D, D] matrix), zero biases, layer norms ones and zeros.

use super::{Ctx, Init, LayerNorm, Linear, Scope};
use crate::{ops, Error, Params, Result, Rng, Var};

/// Layer-norm epsilon of ViT and MAE (timm's `partial(nn.LayerNorm, eps=1e-6)`).
pub const VIT_LN_EPS: f64 = 1e-6;

/// The shape of a [`VitStack`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VitStackSpec {
    pub depth: usize,
    /// Token width D; a multiple of `heads`.
    pub width: usize,
    pub heads: usize,
    /// MLP hidden width over D (4 in every ViT preset).
    pub mlp_ratio: f64,
    /// Drop-path rate of the last block; block i of `depth` drops with
    /// `drop_path · i/(depth-1)` (the ViT/MAE schedule: 0 at the first block).
    pub drop_path: f64,
}

impl VitStackSpec {
    /// Hidden width of each block's MLP: `round(width · mlp_ratio)`, at least 1.
    pub fn mlp_hidden(&self) -> usize {
        ((self.width as f64 * self.mlp_ratio).round() as usize).max(1)
    }

    /// The drop-path rate of every block, rising linearly from 0 to `drop_path`.
    pub fn drop_path_rates(&self) -> Vec<f64> {
        (0..self.depth)
            .map(|i| match self.depth {
                1 => 0.0,
                d => self.drop_path * i as f64 / (d - 1) as f64,
            })
            .collect()
    }
}

/// Multi-head self-attention with a fused q/k/v projection.
#[derive(Clone, Debug)]
pub(crate) struct SelfAttention {
    pub(crate) qkv: Linear,
    pub(crate) proj: Linear,
    pub(crate) heads: usize,
}

impl SelfAttention {
    /// x [N, T, D] -> [N, T, D]. q, k and v come from row slices of the fused
    /// weight (cheap: the weight is small), not from slicing the [N, T, 3·D]
    /// activation, whose backward would zero-pad three activation-sized
    /// gradients.
    fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let &[n, t, d] = x.dims() else {
            return Err(Error::shape(
                "vit_attention",
                format!("input {} must be [N, T, D]", x.shape()),
            ));
        };
        let (w, b) = (
            cx.param(self.qkv.weight),
            self.qkv.bias.map(|b| cx.param(b)),
        );
        let split = [n, t, self.heads, d / self.heads];
        let mut qkv = Vec::with_capacity(3);
        for part in 0..3 {
            let wp = ops::narrow(cx.tape, &w, 0, part * d, d)?;
            let bp = match &b {
                Some(b) => Some(ops::narrow(cx.tape, b, 0, part * d, d)?),
                None => None,
            };
            let y = ops::linear(cx.tape, x, &wp, bp.as_ref())?;
            qkv.push(ops::reshape(cx.tape, &y, split)?);
        }
        let a = ops::attention(cx.tape, &qkv[0], &qkv[1], &qkv[2], None)?;
        self.proj
            .forward(cx, &ops::reshape(cx.tape, &a, [n, t, d])?)
    }
}

/// One pre-norm ViT block.
#[derive(Clone, Debug)]
pub struct VitBlock {
    pub(crate) norm1: LayerNorm,
    pub(crate) attn: SelfAttention,
    pub(crate) norm2: LayerNorm,
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
    /// Probability of skipping each residual branch for a sample in training.
    pub drop_path: f64,
}

/// A linear layer as MAE initialises it: xavier-uniform weight, zero bias.
fn xavier(p: &mut Params, s: &Scope, in_f: usize, out_f: usize, rng: &mut Rng) -> Result<Linear> {
    Linear::with_init(
        p,
        s,
        in_f,
        out_f,
        Init::XavierUniform,
        Some(Init::Zeros),
        rng,
    )
}

impl VitBlock {
    /// Registers the block under `s` (`s.norm1.weight`, `s.attn.qkv.weight`, ...).
    pub fn new(
        p: &mut Params,
        s: &Scope,
        spec: &VitStackSpec,
        drop_path: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (d, heads) = (spec.width, spec.heads);
        if heads == 0 || d == 0 || !d.is_multiple_of(heads) {
            return Err(Error::Config(format!(
                "{s}: width = {d} must be a positive multiple of heads = {heads}"
            )));
        }
        let hidden = spec.mlp_hidden();
        let a = s.pp("attn");
        Ok(VitBlock {
            norm1: LayerNorm::new(p, &s.pp("norm1"), d, VIT_LN_EPS)?,
            attn: SelfAttention {
                qkv: xavier(p, &a.pp("qkv"), d, 3 * d, rng)?,
                proj: xavier(p, &a.pp("proj"), d, d, rng)?,
                heads,
            },
            norm2: LayerNorm::new(p, &s.pp("norm2"), d, VIT_LN_EPS)?,
            fc1: xavier(p, &s.pp("mlp").pp("fc1"), d, hidden, rng)?,
            fc2: xavier(p, &s.pp("mlp").pp("fc2"), hidden, d, rng)?,
            drop_path,
        })
    }

    /// x [N, T, D] -> [N, T, D].
    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let h = self.norm1.forward(cx, x)?;
        let h = self.attn.forward(cx, &h)?;
        let x = self.residual(cx, x, &h)?;
        let h = self.norm2.forward(cx, &x)?;
        let h = ops::gelu(cx.tape, &self.fc1.forward(cx, &h)?)?;
        let h = self.fc2.forward(cx, &h)?;
        self.residual(cx, &x, &h)
    }

    /// `x + DropPath(branch)`.
    fn residual(&self, cx: &mut Ctx, x: &Var, branch: &Var) -> Result<Var> {
        let b = ops::drop_path(cx.tape, branch, self.drop_path, cx.training, cx.rng)?;
        ops::add(cx.tape, x, &b)
    }
}

/// `depth` [`VitBlock`]s applied in order, block i named `{scope}.{i}`.
#[derive(Clone, Debug)]
pub struct VitStack {
    pub blocks: Vec<VitBlock>,
    pub spec: VitStackSpec,
}

impl VitStack {
    /// Registers the blocks under `s` (`s.0.norm1.weight`, ...) with the
    /// drop-path schedule of `spec`.
    pub fn new(p: &mut Params, s: &Scope, spec: VitStackSpec, rng: &mut Rng) -> Result<Self> {
        let blocks = spec
            .drop_path_rates()
            .into_iter()
            .enumerate()
            .map(|(i, rate)| VitBlock::new(p, &s.pp(i), &spec, rate, rng))
            .collect::<Result<_>>()?;
        Ok(VitStack { blocks, spec })
    }

    /// x [N, T, D] -> [N, T, D].
    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for b in &self.blocks {
            h = b.forward(cx, &h)?;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_path_rises_linearly_from_zero_to_the_rate() {
        let spec = VitStackSpec {
            depth: 5,
            width: 8,
            heads: 2,
            mlp_ratio: 4.0,
            drop_path: 0.2,
        };
        let r = spec.drop_path_rates();
        let want = [0.0, 0.05, 0.1, 0.15, 0.2];
        assert!(
            r.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{r:?}"
        );
        let one = VitStackSpec { depth: 1, ..spec };
        assert_eq!(one.drop_path_rates(), [0.0]);
        assert_eq!(spec.mlp_hidden(), 32);
    }

    #[test]
    fn names_are_timms_and_width_must_split_into_heads() {
        let spec = VitStackSpec {
            depth: 2,
            width: 8,
            heads: 2,
            mlp_ratio: 2.0,
            drop_path: 0.0,
        };
        let mut p = Params::new();
        VitStack::new(&mut p, &Scope::root().pp("blocks"), spec, &mut Rng::new(1)).unwrap();
        let names: Vec<&str> = p.ids().map(|id| p.name(id)).collect();
        for n in [
            "blocks.0.norm1.weight",
            "blocks.0.attn.qkv.weight",
            "blocks.0.attn.qkv.bias",
            "blocks.0.attn.proj.bias",
            "blocks.1.norm2.bias",
            "blocks.1.mlp.fc1.weight",
            "blocks.1.mlp.fc2.weight",
        ] {
            assert!(names.contains(&n), "{n} not in {names:?}");
        }
        let qkv = p.find("blocks.0.attn.qkv.weight").unwrap();
        assert_eq!(p.get(qkv).dims(), [24, 8]);
        let fc1 = p.find("blocks.1.mlp.fc1.weight").unwrap();
        assert_eq!(p.get(fc1).dims(), [16, 8]);
        let e = VitStack::new(
            &mut Params::new(),
            &Scope::root().pp("blocks"),
            VitStackSpec { heads: 3, ..spec },
            &mut Rng::new(1),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("blocks.0") && e.contains("heads = 3"), "{e}");
    }
}
