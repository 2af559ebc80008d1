//! The multi-task network: a backbone (any [`Backbone`]), the neck, and
//! three heads (valence/arousal with tanh, AU logits, expression logits),
//! plus an optional real/fake logit when it serves as the GAN's
//! discriminator. Its parameters fall into three groups (backbone, neck,
//! heads) that fine-tuning can freeze or give their own learning rate.

use super::{Backbone, BackboneConfig, Neck, NeckKind, SeResNetConfig, Stem};
use crate::nn::{Buffers, Ctx, Linear, Scope};
use crate::{ops, ParamId, Params, Result, Rng, Var};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// Architecture of [`MtlNet`] (the `[model]` section of a run config), and
/// the checkpoint a run starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NetConfigToml")]
pub struct NetConfig {
    pub neck: NeckKind,
    /// Dropout in the neck (before the heads).
    pub dropout: f64,
    /// 12 for ABAW 2022+, 8 for the 2020 label set.
    pub n_aus: usize,
    /// 8 for ABAW 2022+, 7 for the 2020 label set.
    pub n_expr: usize,
    /// Adds the real/fake logit (`head.real_fake`): the GAN's discriminator.
    pub real_fake_head: bool,
    /// A checkpoint whose tensors a fresh run starts from, matched by name
    /// and shape (see `train::init_from`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// With `init_from`: every parameter and buffer of the model must come
    /// from the file (an error names the first that does not).
    pub init_strict: bool,
    /// `[model.backbone]`: `kind` and that kind's keys.
    pub backbone: BackboneConfig,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            neck: NeckKind::Mtanet,
            dropout: 0.2,
            n_aus: 12,
            n_expr: 8,
            real_fake_head: false,
            init_from: None,
            init_strict: false,
            backbone: BackboneConfig::default(),
        }
    }
}

/// `[model]` as written: today's keys, plus the SE-ResNet keys that
/// configs and checkpoints written before `[model.backbone]` existed hold
/// flat in the section. They are read into `backbone` (kind `se_resnet`);
/// only the new form is written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetConfigToml {
    neck: Option<NeckKind>,
    dropout: Option<f64>,
    n_aus: Option<usize>,
    n_expr: Option<usize>,
    real_fake_head: Option<bool>,
    init_from: Option<PathBuf>,
    init_strict: Option<bool>,
    backbone: Option<toml::Table>,
    depth: Option<usize>,
    width_mult: Option<f64>,
    se_reduction: Option<usize>,
    stem: Option<Stem>,
}

impl TryFrom<NetConfigToml> for NetConfig {
    type Error = String;

    fn try_from(t: NetConfigToml) -> std::result::Result<Self, String> {
        let d = NetConfig::default();
        let flat = t.depth.is_some()
            || t.width_mult.is_some()
            || t.se_reduction.is_some()
            || t.stem.is_some();
        let backbone = match (t.backbone, flat) {
            (Some(_), true) => {
                return Err(
                    "depth/width_mult/se_reduction/stem belong in the [model.backbone] \
                     table (kind = \"se_resnet\"), not beside it"
                        .into(),
                )
            }
            // Parsed here rather than by the field's type so that an
            // unknown kind's message says which table it is in.
            (Some(b), false) => BackboneConfig::deserialize(toml::Value::Table(b))
                .map_err(|e| format!("backbone: {e}"))?,
            (None, _) => {
                let s = SeResNetConfig::default();
                BackboneConfig::SeResnet(SeResNetConfig {
                    depth: t.depth.unwrap_or(s.depth),
                    width_mult: t.width_mult.unwrap_or(s.width_mult),
                    se_reduction: t.se_reduction.unwrap_or(s.se_reduction),

                    se_divisor: s.se_divisor,
                    stem: t.stem.unwrap_or(s.stem),
                })
            }
        };
        Ok(NetConfig {
            neck: t.neck.unwrap_or(d.neck),
            dropout: t.dropout.unwrap_or(d.dropout),
            n_aus: t.n_aus.unwrap_or(d.n_aus),
            n_expr: t.n_expr.unwrap_or(d.n_expr),
            real_fake_head: t.real_fake_head.unwrap_or(d.real_fake_head),
            init_from: t.init_from,
            init_strict: t.init_strict.unwrap_or(d.init_strict),
            backbone,
        })
    }
}

/// The parts of [`MtlNet`] that fine-tuning addresses by name
/// (`train.freeze`, `train.lr_mult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamGroup {
    Backbone,
    Neck,
    Heads,
}

impl ParamGroup {
    /// As configs write it.
    pub fn name(self) -> &'static str {
        match self {
            ParamGroup::Backbone => "backbone",
            ParamGroup::Neck => "neck",
            ParamGroup::Heads => "heads",
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
    pub(crate) backbone: Arc<dyn Backbone>,
    pub(crate) neck: Neck,
    pub(crate) va_head: Linear,
    pub(crate) au_head: Linear,
    pub(crate) expr_head: Linear,
    pub(crate) real_fake_head: Option<Linear>,
    /// The parameter indices each group registered (registration is in order).
    pub(crate) groups: [(ParamGroup, Range<usize>); 3],
}

impl MtlNet {
    /// Registers every parameter and buffer, initialised from `rng`, with
    /// the backbone `config.backbone` names.
    pub fn new(config: &NetConfig, p: &mut Params, b: &mut Buffers, rng: &mut Rng) -> Result<Self> {
        Self::with_backbone(config, p, b, rng, |p, b, s, rng| {
            config.backbone.build(p, b, s, rng)
        })
    }

    /// As [`MtlNet::new`] on the backbone `build` registers (at the root
    /// scope) and returns; `config.backbone` is not read.
    pub fn with_backbone(
        config: &NetConfig,
        p: &mut Params,
        b: &mut Buffers,
        rng: &mut Rng,
        build: impl FnOnce(&mut Params, &mut Buffers, &Scope, &mut Rng) -> Result<Box<dyn Backbone>>,
    ) -> Result<Self> {
        let root = Scope::root();
        let start = p.len();
        let backbone = build(p, b, &root, rng)?;
        let neck_start = p.len();
        let input = (backbone.output(), backbone.out_features());
        let neck = Neck::new(p, &root.pp("neck"), config.neck, input, config.dropout, rng)?;
        let (heads_start, f, h) = (p.len(), neck.out_features, root.pp("head"));
        Ok(MtlNet {
            config: config.clone(),
            va_head: Linear::new(p, &h.pp("va"), f, 2, true, rng)?,
            au_head: Linear::new(p, &h.pp("au"), f, config.n_aus, true, rng)?,
            expr_head: Linear::new(p, &h.pp("expr"), f, config.n_expr, true, rng)?,
            real_fake_head: if config.real_fake_head {
                Some(Linear::new(p, &h.pp("real_fake"), f, 1, true, rng)?)
            } else {
                None
            },
            groups: [
                (ParamGroup::Backbone, start..neck_start),
                (ParamGroup::Neck, neck_start..heads_start),
                (ParamGroup::Heads, heads_start..p.len()),
            ],
            backbone: Arc::from(backbone),
            neck,
        })
    }

    /// The parameters `group` registered.
    pub fn group_params(&self, group: ParamGroup) -> impl Iterator<Item = ParamId> {
        let (_, r) = self
            .groups
            .iter()
            .find(|(g, _)| *g == group)
            .cloned()
            .expect("every group is listed");
        r.map(ParamId)
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
