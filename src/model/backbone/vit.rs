//! The Vision Transformer backbone (`kind = "vit"`): a strided-convolution
//! patch embedding, fixed 2-D sin-cos position embeddings, a class token,
//! pre-norm blocks ([`VitStack`]) and a final layer norm; class-token or
//! mean pooling to one vector per image.
//!
//! Parameter names are timm's `VisionTransformer` ones (`cls_token`,
//! `patch_embed.proj.*`, `blocks.{i}.*`, `norm.*` or `fc_norm.*`), so that
//! MAE and timm checkpoints map one to one; the patch-embedding weight is
//! [D, P, P, 3] (NHWC convolution), timm's is [D, 3, P, P]. The position
//! embedding is not a parameter: it is computed from the patch grid, so
//! any image whose sides are multiples of the patch runs on the same weights.

use super::{Backbone, BuiltIn, Features};
use crate::model::footprint::{product, Footprint};
use crate::nn::{
    Conv2d, Ctx, Init, LayerNorm, PosEmbedCache, Scope, VitStack, VitStackSpec, VIT_LN_EPS,
};
use crate::ops::conv::Conv2dParams;
use crate::{ops, Error, ParamId, Params, Result, Rng, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Depth, width and heads of the standard ViT sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitPreset {
    /// ViT-Ti: 12 blocks, width 192, 3 heads.
    Tiny,
    /// ViT-S: 12 blocks, width 384, 6 heads.
    Small,
    /// ViT-B: 12 blocks, width 768, 12 heads.
    Base,
}

impl VitPreset {
    /// (depth, width, heads).
    fn dims(self) -> (usize, usize, usize) {
        match self {
            VitPreset::Tiny => (12, 192, 3),
            VitPreset::Small => (12, 384, 6),
            VitPreset::Base => (12, 768, 12),
        }
    }

    /// The letter(s) of the usual short name ("ViT-S/16").
    fn short(self) -> &'static str {
        match self {
            VitPreset::Tiny => "Ti",
            VitPreset::Small => "S",
            VitPreset::Base => "B",
        }
    }
}

/// How the token sequence becomes one vector per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The class token after the final layer norm (`norm`).
    Cls,
    /// The mean of the patch tokens (the class token still runs through the
    /// blocks, as in MAE's fine-tuning), then a layer norm (`fc_norm`).
    Mean,
}

/// `[model.backbone] kind = "vit"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VitConfig {
    /// tiny, small or base: depth, width and heads unless overridden.
    pub preset: VitPreset,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// Patch side in pixels: 8 or 16; the image side must be a multiple.
    pub patch: usize,
    pub pooling: Pooling,
    /// Drop-path rate of the last block (rising linearly from 0 at the first).
    pub drop_path: f64,
    /// MLP hidden width over the token width.
    pub mlp_ratio: f64,
}

impl Default for VitConfig {
    fn default() -> Self {
        VitConfig {
            preset: VitPreset::Small,
            depth: None,
            width: None,
            heads: None,
            patch: 16,
            pooling: Pooling::Cls,
            drop_path: 0.0,
            mlp_ratio: 4.0,
        }
    }
}

impl VitConfig {
    /// The blocks' shape: the preset with the overrides applied.
    pub fn stack_spec(&self) -> VitStackSpec {
        let (depth, width, heads) = self.preset.dims();
        VitStackSpec {
            depth: self.depth.unwrap_or(depth),
            width: self.width.unwrap_or(width),
            heads: self.heads.unwrap_or(heads),
            mlp_ratio: self.mlp_ratio,
            drop_path: self.drop_path,
        }
    }

    /// `section` prefixes the keys in messages (`model.backbone`).
    pub fn validate(&self, section: &str) -> Result<()> {
        let bad = |key: &str, v: &dyn fmt::Display, why: &str| {
            Err(Error::Config(format!("{section}.{key} = {v}: {why}")))
        };
        let s = self.stack_spec();
        if ![8, 16].contains(&self.patch) {
            return bad("patch", &self.patch, "allowed values: 8, 16");
        }
        if s.depth == 0 {
            return bad("depth", &s.depth, "must be at least 1");
        }
        if s.heads == 0 {
            return bad("heads", &s.heads, "must be at least 1");
        }
        // Sin-cos position embeddings split the width in four blocks.
        if s.width == 0 || !s.width.is_multiple_of(4) || !s.width.is_multiple_of(s.heads) {
            return bad(
                "width",
                &s.width,
                &format!(
                    "must be a positive multiple of 4 and of heads = {}",
                    s.heads
                ),
            );
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return bad("drop_path", &self.drop_path, "must be in [0, 1)");
        }
        if !(self.mlp_ratio > 0.0 && self.mlp_ratio.is_finite()) {
            return bad("mlp_ratio", &self.mlp_ratio, "must be > 0");
        }
        Ok(())
    }

    /// Patches per side of an image `image_size` pixels high or wide; an
    /// error naming `model.backbone.patch` unless it divides the side.
    pub fn grid_side(&self, image_size: usize) -> Result<usize> {
        grid_side(self.patch, image_size)
    }

    /// Parameters and training activations per image of `image_size`
    /// pixels a side, lower bounds ([`Footprint`]): the patch embedding's
    /// weights and output, the class token, and per block its weight
    /// matrices and, per token, the two normalised inputs, q, k, v, the
    /// attention output, the MLP's hidden pre- and post-activation, and the
    /// attention's per-row log-sum-exp (heads x tokens: the CUDA kernels
    /// recompute the weights in backward; the CPU reference keeps heads x
    /// tokens² instead, above this bound).
    /// Biases, norms and residual sums are left out.
    pub fn footprint(&self, image_size: usize) -> Result<Footprint> {
        self.validate("model.backbone")?;
        let g = self.grid_side(image_size)?;
        let s = self.stack_spec();
        let (p, d, hid) = (self.patch, s.width, s.mlp_hidden());
        let tokens = g.saturating_mul(g).saturating_add(1);
        let mut f = Footprint::default();
        f.add(
            product(&[3, p, p, d]).saturating_add(d as u128),
            product(&[3, image_size, image_size]).saturating_add(product(&[g, g, d])),
        );
        for _ in 0..s.depth {
            f.add(
                product(&[4, d, d]).saturating_add(product(&[2, d, hid])),
                product(&[tokens, 6, d])
                    .saturating_add(product(&[tokens, 2, hid]))
                    .saturating_add(product(&[s.heads, tokens])),
            );
        }
        Ok(f)
    }

    /// Layer-wise learning-rate decay's layer of a backbone parameter (the
    /// BEiT/MAE fine-tuning recipe), out of `depth + 1`: 0 for the class
    /// token and the patch embedding, i + 1 for block i, `depth + 1` for
    /// the final norm (and, in the caller, everything after the backbone).
    /// A layer's rate is the schedule's times `decay^(depth + 1 - layer)`.
    pub fn lr_layer(&self, name: &str) -> (usize, usize) {
        let top = self.stack_spec().depth + 1;
        let layer = if name == "cls_token" || name.starts_with("patch_embed.") {
            0
        } else if let Some(i) = name
            .strip_prefix("blocks.")
            .and_then(|r| r.split('.').next())
            .and_then(|i| i.parse::<usize>().ok())
        {
            i + 1
        } else {
            top
        };
        (layer, top)
    }

    /// The keys that size the model, with their values, for memory messages.
    pub fn size_keys(&self) -> Vec<(&'static str, String)> {
        let s = self.stack_spec();
        vec![
            ("preset", self.preset.short().to_string()),
            ("width", s.width.to_string()),
            ("depth", s.depth.to_string()),
        ]
    }
}

pub(crate) fn grid_side(patch: usize, image_size: usize) -> Result<usize> {
    if image_size == 0 || !image_size.is_multiple_of(patch) {
        return Err(Error::Config(format!(
            "model.backbone.patch = {patch}: the image side ({image_size} px) must be a \
             positive multiple of the patch"
        )));
    }
    Ok(image_size / patch)
}

/// "ViT-S/16", then whatever differs from the preset ("ViT-S/8 depth 2
/// width 32 heads 2 mean-pool").
impl fmt::Display for VitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ViT-{}/{}", self.preset.short(), self.patch)?;
        let (depth, width, heads) = self.preset.dims();
        let s = self.stack_spec();
        for (key, got, preset) in [
            ("depth", s.depth, depth),
            ("width", s.width, width),
            ("heads", s.heads, heads),
        ] {
            if got != preset {
                write!(f, " {key} {got}")?;
            }
        }
        if self.pooling == Pooling::Mean {
            f.write_str(" mean-pool")?;
        }
        Ok(())
    }
}

/// The ViT. The pieces masked-autoencoder pretraining calls are public:
/// [`Vit::patch_tokens`] (embed and position every patch), then the MAE
/// keeps a random subset per sample (`ops::gather_tokens`) and calls
/// [`Vit::encode`] on it; fine-tuning and feature extraction run
/// [`Backbone::forward`] = `pool(encode(patch_tokens(images)))`.
///
/// With mean pooling the class token is still prepended and runs through
/// the blocks (MAE's fine-tuning model does the same); only the mean leaves
/// it out. `norm` exists only with class-token pooling and `fc_norm` only
/// with mean pooling (timm's layout), so MAE pretraining builds its encoder
/// with class-token pooling (MAE's pretraining model ends in `norm`), and a
/// mean-pooled fine-tuning run started from it leaves `norm` unused and
/// trains a fresh `fc_norm`, as MAE's recipe does.
#[derive(Debug)]
pub struct Vit {
    pub(crate) patch_embed: Conv2d,
    pub(crate) cls_token: ParamId,
    pub(crate) blocks: VitStack,
    /// `norm` (class-token pooling) or `fc_norm` (mean pooling).
    pub(crate) norm: LayerNorm,
    pub(crate) pooling: Pooling,
    pub(crate) patch: usize,
    /// The position embedding of the last grid, dtype and device seen
    /// ([L, D]), so a training step does not rebuild and upload it.
    pub(crate) pos_embed: PosEmbedCache,
}

impl Vit {
    /// Registers `cls_token`, `patch_embed.proj.*`, `blocks.*` and `norm.*`
    /// or `fc_norm.*` under `s`, initialised as MAE does: class token
    /// Normal(0, 0.02), patch-embedding weight xavier-uniform over its
    /// flattened [D, P·P·3] view (bias PyTorch's convolution default),
    /// blocks as [`VitStack`] initialises them.
    pub fn new(p: &mut Params, s: &Scope, config: &VitConfig, rng: &mut Rng) -> Result<Self> {
        config.validate("model.backbone")?;
        let spec = config.stack_spec();
        let (d, k) = (spec.width, config.patch);
        let cls_token = p.add(
            s.name("cls_token"),
            Init::Normal(0.02).make(&[1, 1, d], d, d, rng),
        )?;
        let pe = s.pp("patch_embed").pp("proj");
        let fan_in = 3 * k * k;
        let weight = p.add(
            pe.name("weight"),
            Init::XavierUniform.make(&[d, k, k, 3], fan_in, d, rng),
        )?;
        let bias = p.add(
            pe.name("bias"),
            Init::UniformFanIn.make(&[d], fan_in, d, rng),
        )?;
        let patch_embed = Conv2d {
            weight,
            bias: Some(bias),
            prm: Conv2dParams::new().stride(k),
        };
        let blocks = VitStack::new(p, &s.pp("blocks"), spec, rng)?;
        let norm_name = match config.pooling {
            Pooling::Cls => "norm",
            Pooling::Mean => "fc_norm",
        };
        Ok(Vit {
            patch_embed,
            cls_token,
            blocks,
            norm: LayerNorm::new(p, &s.pp(norm_name), d, VIT_LN_EPS)?,
            pooling: config.pooling,
            patch: k,
            pos_embed: PosEmbedCache::new(d, false),
        })
    }

    /// Token width D.
    pub fn width(&self) -> usize {
        self.blocks.spec.width
    }

    /// Images [N, H, W, 3] -> patch tokens [N, L, D] with their position
    /// embeddings added (L = H/P · W/P, row-major over the grid); no class
    /// token. H and W must be multiples of the patch.
    pub fn patch_tokens(&self, cx: &mut Ctx, images: &Var) -> Result<Var> {
        let &[n, h, w, _] = images.dims() else {
            return Err(Error::shape(
                "vit",
                format!("images {} must be [N, H, W, 3]", images.shape()),
            ));
        };
        let (gh, gw) = (grid_side(self.patch, h)?, grid_side(self.patch, w)?);
        let x = self.patch_embed.forward(cx, images)?;
        let x = ops::reshape(cx.tape, &x, [n, gh * gw, self.width()])?;
        let pe = cx.tape.constant(self.pos_embed.get(gh, gw, x.value())?);
        ops::add(cx.tape, &x, &pe)
    }

    /// Tokens [N, T, D] (any subset of [`Vit::patch_tokens`]) -> [N, 1+T, D]:
    /// the class token prepended (its position embedding is zero, as in
    /// MAE), the blocks, and with class-token pooling the final `norm`.
    pub fn encode(&self, cx: &mut Ctx, tokens: &Var) -> Result<Var> {
        let &[n, _, d] = tokens.dims() else {
            return Err(Error::shape(
                "vit",
                format!("tokens {} must be [N, T, D]", tokens.shape()),
            ));
        };
        let like = tokens.value();
        let zeros = Tensor::zeros_on([n, 1, d], like.dtype(), &like.device())?;
        let cls = ops::add(cx.tape, &cx.tape.constant(zeros), &cx.param(self.cls_token))?;
        let x = ops::concat(cx.tape, &[&cls, tokens], 1)?;
        let x = self.blocks.forward(cx, &x)?;
        match self.pooling {
            Pooling::Cls => self.norm.forward(cx, &x),
            Pooling::Mean => Ok(x),
        }
    }

    /// [`Vit::encode`]'s output [N, 1+T, D] -> [N, D]: the class token, or
    /// the mean of the other tokens followed by `fc_norm`.
    pub fn pool(&self, cx: &mut Ctx, encoded: &Var) -> Result<Var> {
        let &[n, t1, d] = encoded.dims() else {
            return Err(Error::shape(
                "vit",
                format!("encoded tokens {} must be [N, 1+T, D]", encoded.shape()),
            ));
        };
        match self.pooling {
            Pooling::Cls => {
                let cls = ops::narrow(cx.tape, encoded, 1, 0, 1)?;
                ops::reshape(cx.tape, &cls, [n, d])
            }
            Pooling::Mean => {
                let patches = ops::narrow(cx.tape, encoded, 1, 1, t1 - 1)?;
                let m = ops::mean(cx.tape, &patches, &[1], false)?;
                self.norm.forward(cx, &m)
            }
        }
    }
}

impl Backbone for Vit {
    /// NHWC images [N, H, W, 3] -> [N, D].
    fn forward(&self, cx: &mut Ctx, images: &Var) -> Result<Var> {
        let tokens = self.patch_tokens(cx, images)?;
        let encoded = self.encode(cx, &tokens)?;
        self.pool(cx, &encoded)
    }

    fn out_features(&self) -> usize {
        self.width()
    }

    fn output(&self) -> Features {
        Features::Vector
    }

    fn built_in(&self) -> Option<BuiltIn<'_>> {
        Some(BuiltIn::Vit(self))
    }
}
