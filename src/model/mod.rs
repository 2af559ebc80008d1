//! Models: the multi-task network (MTANet-style) on a pluggable backbone
//! (SE-ResNet built in), its neck and heads, the GAN's conditional face
//! generator, and the temporal models over its per-frame features; what
//! each costs in memory, read from its config ([`Footprint`]).

pub mod backbone;
pub mod footprint;
mod generator;
mod mtl_net;
mod neck;
pub mod temporal;

pub use backbone::{
    Backbone, BackboneConfig, BasicBlock, BlockSpec, Bottleneck, Features, IResNet, IResNetConfig,
    SeResNet, SeResNetConfig, Stem,
};
pub use footprint::Footprint;
pub use generator::{Generator, GeneratorConfig, Upsample};
pub use mtl_net::{MtlNet, MtlOutput, NetConfig, ParamGroup};
pub use neck::{Neck, NeckKind};
