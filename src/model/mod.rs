//! Models: the multi-task network (MTANet-style) on a pluggable backbone
//! (SE-ResNet, ViT, IResNet and DenseNet built in), its neck and heads, the
//! GAN's conditional face generator, the masked autoencoder that pretrains
//! a ViT, and the temporal models over per-frame features; what each costs
//! in memory, read from its config ([`Footprint`]).

pub mod backbone;
pub mod footprint;
mod generator;
mod mae;
mod mtl_net;
pub(crate) mod neck;
pub mod temporal;

pub use backbone::{
    Backbone, BackboneConfig, BasicBlock, BlockSpec, Bottleneck, BuiltIn, DenseNet, DenseNetConfig,
    Features, IResNet, IResNetConfig, Pooling, SeResNet, SeResNetConfig, Stem, Vit, VitConfig,
    VitPreset,
};
pub use footprint::Footprint;
pub use generator::{Generator, GeneratorConfig, Upsample};
pub use mae::{Mae, MaeConfig, MaskPlan};
pub use mtl_net::{MtlNet, MtlOutput, NetConfig, ParamGroup};
pub use neck::{Neck, NeckKind};
