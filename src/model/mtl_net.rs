//! The multi-task network: SE-ResNet backbone, neck, and three heads
//! (valence/arousal with tanh, AU logits, expression logits), plus an
//! optional real/fake logit when it serves as the GAN's discriminator.

use super::{Neck, NeckKind, SeResNet, Stem};
use crate::nn::{Buffers, Ctx, Linear};
use crate::{ops, Params, Result, Rng, Var};
use serde::{Deserialize, Serialize};

/// Architecture of [`MtlNet`] (the `[model]` section of a run config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// 10, 18, 34 (basic blocks) or 50 (bottlenecks).
    pub depth: usize,
    pub width_mult: f64,
    pub se_reduction: usize,
    pub stem: Stem,
    pub neck: NeckKind,
    /// Dropout in the neck (before the heads).
    pub dropout: f64,
    /// 12 for ABAW 2022+, 8 for the 2020 label set.
    pub n_aus: usize,
    /// 8 for ABAW 2022+, 7 for the 2020 label set.
    pub n_expr: usize,
    /// Adds the real/fake logit (`head.real_fake`): the GAN's discriminator.
    pub real_fake_head: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            depth: 18,
            width_mult: 1.0,
            se_reduction: 16,
            stem: Stem::Imagenet,
            neck: NeckKind::Mtanet,
            dropout: 0.2,
            n_aus: 12,
            n_expr: 8,
            real_fake_head: false,
        }
    }
}

/// Head outputs for a batch.
pub struct MtlOutput {
    /// [N, 2] in [-1, 1]: valence, arousal.
    pub va: Var,
    /// [N, n_aus] logits.
    pub au: Var,
    /// [N, n_expr] logits.
    pub expr: Var,
    /// [N, F]: the shared feature vector the heads read (frame embeddings).
    pub features: Var,
    /// [N, 1] real/fake logits, with `real_fake_head`.
    pub real_fake: Option<Var>,
}

#[derive(Clone, Debug)]
pub struct MtlNet {
    pub config: NetConfig,
    backbone: SeResNet,
    neck: Neck,
    va_head: Linear,
    au_head: Linear,
    expr_head: Linear,
    real_fake_head: Option<Linear>,
}

impl MtlNet {
    /// Registers every parameter and buffer, initialised from `rng`.
    pub fn new(config: &NetConfig, p: &mut Params, b: &mut Buffers, rng: &mut Rng) -> Result<Self> {
        let backbone = SeResNet::new(
            p,
            b,
            config.depth,
            config.width_mult,
            config.se_reduction,
            config.stem,
            rng,
        )?;
        let neck = Neck::new(p, config.neck, backbone.out_channels, config.dropout, rng)?;
        let f = neck.out_features;
        Ok(MtlNet {
            config: config.clone(),
            va_head: Linear::new(p, "head.va", f, 2, true, rng)?,
            au_head: Linear::new(p, "head.au", f, config.n_aus, true, rng)?,
            expr_head: Linear::new(p, "head.expr", f, config.n_expr, true, rng)?,
            real_fake_head: if config.real_fake_head {
                Some(Linear::new(p, "head.real_fake", f, 1, true, rng)?)
            } else {
                None
            },
            backbone,
            neck,
        })
    }

    /// Images [N, H, W, 3] in [-1, 1] -> the three heads.
    pub fn forward(&self, cx: &mut Ctx, images: &Var) -> Result<MtlOutput> {
        let fmap = self.backbone.forward(cx, images)?;
        let features = self.neck.forward(cx, &fmap)?;
        Ok(MtlOutput {
            va: ops::tanh(cx.tape, &self.va_head.forward(cx, &features)?)?,
            au: self.au_head.forward(cx, &features)?,
            expr: self.expr_head.forward(cx, &features)?,
            real_fake: match &self.real_fake_head {
                Some(h) => Some(h.forward(cx, &features)?),
                None => None,
            },
            features,
        })
    }
}
