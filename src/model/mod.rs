//! Models: the SE-ResNet multi-task network (MTANet-style) and its parts,
//! the GAN's conditional face generator, and the temporal models over its
//! per-frame features.

mod blocks;
mod generator;
mod mtl_net;
mod neck;
mod se_resnet;
pub mod temporal;

pub use blocks::{BasicBlock, Bottleneck};
pub use generator::{Generator, GeneratorConfig, Upsample};
pub use mtl_net::{MtlNet, MtlOutput, NetConfig};
pub use neck::{Neck, NeckKind};
pub use se_resnet::{SeResNet, Stem};
