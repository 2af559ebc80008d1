//! Backbones: the image encoders the multi-task network can be built on,
//! behind one small trait, and the registry that builds one from the
//! `[model.backbone]` section (`kind = "se_resnet"`, `"vit"`, `"iresnet"`
//! or `"densenet"`, plus that kind's keys).
//! A new backbone is one file here and one arm in [`BackboneConfig`]; the
//! neck and heads take any backbone's output.

pub(crate) mod blocks;
pub(crate) mod densenet;
pub(crate) mod iresnet;
pub(crate) mod se_resnet;
pub(crate) mod vit;

pub use blocks::{BasicBlock, BlockSpec, Bottleneck};
pub use densenet::{DenseNet, DenseNetConfig};
pub use iresnet::{IResNet, IResNetConfig};
pub use se_resnet::{SeResNet, SeResNetConfig, Stem};
pub use vit::{Pooling, Vit, VitConfig, VitPreset};

use super::Footprint;
use crate::nn::{Buffers, Ctx, Scope};
use crate::{Params, Result, Rng, Var};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The form of a backbone's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Features {
    /// [N, h, w, C] (a convolutional network's last stage).
    Map,
    /// [N, F] (a pooled or class-token embedding).
    Vector,
}

/// An image encoder: registers its parameters under a scope when built
/// (initialised from the run's RNG), then maps images [N, H, W, 3] in
/// [-1, 1] to its features.
pub trait Backbone: fmt::Debug + Send + Sync {
    fn forward(&self, cx: &mut Ctx, images: &Var) -> Result<Var>;

    /// C of a feature map, F of a vector.
    fn out_features(&self) -> usize;

    fn output(&self) -> Features;

    /// The built-in backbone this is, for code that walks a model's layers
    /// (the ONNX export); `None` for a backbone defined elsewhere.
    fn built_in(&self) -> Option<BuiltIn<'_>> {
        None
    }
}

/// A built-in backbone, by kind.
#[derive(Clone, Copy, Debug)]
pub enum BuiltIn<'a> {
    SeResnet(&'a SeResNet),
    Vit(&'a Vit),
    Iresnet(&'a IResNet),
    Densenet(&'a DenseNet),
}

/// The built-in backbones, keyed by `kind` in `[model.backbone]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackboneConfig {
    SeResnet(SeResNetConfig),
    Vit(VitConfig),
    Iresnet(IResNetConfig),
    Densenet(DenseNetConfig),
}

impl Default for BackboneConfig {
    fn default() -> Self {
        BackboneConfig::SeResnet(SeResNetConfig::default())
    }
}

impl BackboneConfig {
    /// Checks beyond the types; messages name the key under `section`
    /// (`model` or `discriminator`).
    pub fn validate(&self, section: &str) -> Result<()> {
        match self {
            BackboneConfig::SeResnet(c) => c.validate(&format!("{section}.backbone")),
            BackboneConfig::Vit(c) => c.validate(&format!("{section}.backbone")),
            BackboneConfig::Iresnet(c) => c.validate(&format!("{section}.backbone")),
            BackboneConfig::Densenet(c) => c.validate(&format!("{section}.backbone")),
        }
    }

    /// An error naming the keys unless the backbone takes images of
    /// `image_size` pixels a side (`data.image_size`); backbones built for
    /// one input size (an FC over the last map) have their own key; a
    /// DenseNet needs a side its transitions can halve. (A ViT's patch
    /// check is its footprint's.)
    pub fn check_image_size(&self, section: &str, image_size: usize) -> Result<()> {
        match self {
            BackboneConfig::SeResnet(_) | BackboneConfig::Vit(_) => Ok(()),
            BackboneConfig::Iresnet(c) => {
                c.check_image_size(&format!("{section}.backbone"), image_size)
            }
            BackboneConfig::Densenet(c) => {
                c.check_image_size(&format!("{section}.backbone"), image_size)
            }
        }
    }

    /// Parameters and training activations per image of `image_size`
    /// pixels a side, lower bounds (see [`Footprint`]).
    pub fn footprint(&self, image_size: usize) -> Result<Footprint> {
        match self {
            BackboneConfig::SeResnet(c) => c.footprint(image_size),
            BackboneConfig::Vit(c) => c.footprint(image_size),
            BackboneConfig::Iresnet(c) => c.footprint(image_size),
            BackboneConfig::Densenet(c) => c.footprint(image_size),
        }
    }

    /// The keys under `[..backbone]` that size the model, with their
    /// values: what a memory refusal names to lower.
    pub fn size_keys(&self) -> Vec<(&'static str, String)> {
        match self {
            BackboneConfig::SeResnet(c) => c.size_keys(),
            BackboneConfig::Vit(c) => c.size_keys(),
            BackboneConfig::Iresnet(c) => c.size_keys(),
            BackboneConfig::Densenet(c) => c.size_keys(),
        }
    }

    /// The (layer, top layer) of backbone parameter `name` for layer-wise
    /// learning-rate decay (`train.layer_decay`); None for a kind without
    /// a stack of like layers to decay over.
    pub fn lr_layer(&self, name: &str) -> Option<(usize, usize)> {
        match self {
            BackboneConfig::SeResnet(_)
            | BackboneConfig::Iresnet(_)
            | BackboneConfig::Densenet(_) => None,
            BackboneConfig::Vit(c) => Some(c.lr_layer(name)),
        }
    }

    /// Registers the backbone's parameters and buffers under `scope`.
    pub fn build(
        &self,
        p: &mut Params,
        b: &mut Buffers,
        scope: &Scope,
        rng: &mut Rng,
    ) -> Result<Box<dyn Backbone>> {
        Ok(match self {
            BackboneConfig::SeResnet(c) => Box::new(SeResNet::new(p, b, scope, c, rng)?),
            BackboneConfig::Vit(c) => Box::new(Vit::new(p, scope, c, rng)?),
            BackboneConfig::Iresnet(c) => Box::new(IResNet::new(p, b, scope, c, rng)?),
            BackboneConfig::Densenet(c) => Box::new(DenseNet::new(p, b, scope, c, rng)?),
        })
    }
}

/// A short name for run headers ("SE-ResNet-18 x1", "IResNet-50", "IResNet-18 x0.25",
/// "DenseNet-121").
impl fmt::Display for BackboneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackboneConfig::SeResnet(c) => {
                let name = if c.se_reduction == 0 {
                    "ResNet"
                } else {
                    "SE-ResNet"
                };
                write!(f, "{name}-{} x{}", c.depth, c.width_mult)
            }
            BackboneConfig::Vit(c) => write!(f, "{c}"),
            BackboneConfig::Iresnet(c) if c.width_mult == 1.0 => write!(f, "IResNet-{}", c.depth),
            BackboneConfig::Iresnet(c) => write!(f, "IResNet-{} x{}", c.depth, c.width_mult),
            BackboneConfig::Densenet(c) => write!(f, "{c}"),
        }
    }
}

impl From<SeResNetConfig> for BackboneConfig {
    fn from(c: SeResNetConfig) -> Self {
        BackboneConfig::SeResnet(c)
    }
}

impl From<VitConfig> for BackboneConfig {
    fn from(c: VitConfig) -> Self {
        BackboneConfig::Vit(c)
    }
}

impl From<IResNetConfig> for BackboneConfig {
    fn from(c: IResNetConfig) -> Self {
        BackboneConfig::Iresnet(c)
    }
}

impl From<DenseNetConfig> for BackboneConfig {
    fn from(c: DenseNetConfig) -> Self {
        BackboneConfig::Densenet(c)
    }
}
