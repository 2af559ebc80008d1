//! torchvision's DenseNet map (`densenet121/169/201`, the ImageNet models
//! and fine-tunes saved from them): our DenseNet registers torchvision's
//! names (`features.*`), so only the convolutions' layout changes, OIHW ->
//! [K, R, S, C]. `classifier.*` and `num_batches_tracked` are unused.

use crate::model::{BackboneConfig, DenseNetConfig};

/// The architecture names `mtaffect import --arch` takes, and their depths;
/// each is torchvision's growth rate 32, 64 stem channels and bn_size 4.
pub(super) const ARCHS: [(&str, usize); 3] = [
    ("densenet121", 121),
    ("densenet169", 169),
    ("densenet201", 201),
];

pub(super) fn arch(name: &str) -> Option<BackboneConfig> {
    let (_, depth) = ARCHS.iter().find(|(n, _)| *n == name)?;
    Some(BackboneConfig::Densenet(DenseNetConfig {
        depth: *depth,
        ..DenseNetConfig::default()
    }))
}
