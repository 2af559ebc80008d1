//! The face-recognition IResNet's map (insightface arcface_torch
//! `iresnet.py`, e.g. the glint360k / ms1mv3 models): our IResNet uses the
//! original's names for every parameter and buffer, so only layouts change:
//! convolutions OIHW -> [K, R, S, C], and `fc.weight`'s columns from the
//! NCHW flatten to ours of the NHWC map. `num_batches_tracked` is unused.

use super::Convert;
use crate::model::{BackboneConfig, IResNetConfig};

/// The architecture names `mtaffect import --arch` takes, and their depths;
/// each is the original's full width, 512-d embedding and 112x112 input.
pub(super) const ARCHS: [(&str, usize); 4] = [
    ("iresnet18", 18),
    ("iresnet34", 34),
    ("iresnet50", 50),
    ("iresnet100", 100),
];

pub(super) fn arch(name: &str) -> Option<BackboneConfig> {
    let (_, depth) = ARCHS.iter().find(|(n, _)| *n == name)?;
    Some(BackboneConfig::Iresnet(IResNetConfig {
        depth: *depth,
        ..IResNetConfig::default()
    }))
}

/// The conversion of our tensor `name` of `dims`, whose source has the
/// same name; `positions`: the last map's pixels, (image_size / 16)².
pub(super) fn convert(name: &str, dims: &[usize], positions: usize) -> Convert {
    if name == "fc.weight" {
        Convert::FlattenedMap { positions }
    } else {
        Convert::by_rank(dims)
    }
}
