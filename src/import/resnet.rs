//! torchvision's ResNet-18/50 and timm's SE-ResNet-50 onto the `se_resnet`
//! backbone (ImageNet stem). The blocks already carry torchvision's names
//! (`layer1.0.conv1`, `downsample.{0,1}`); only the stem is renamed
//! (`conv1`, `bn1` -> `stem.conv`, `stem.bn`). timm's SE gate is two 1x1
//! convolutions with bias whose weights [h, C, 1, 1] are our linear
//! weights [h, C]; its hidden width is C/16 rounded to a multiple of 8
//! (`se_divisor = 8`). The classifier `fc.*` and `num_batches_tracked` are
//! unused.

use super::Convert;
use crate::model::{BackboneConfig, SeResNetConfig, Stem};

/// The names `mtaffect import --arch` takes: (name, depth, with SE).
pub(super) const ARCHS: [(&str, usize, bool); 3] = [
    ("resnet18", 18, false),
    ("resnet50", 50, false),
    ("seresnet50", 50, true),
];

pub(super) fn arch(name: &str) -> Option<BackboneConfig> {
    let (_, depth, se) = ARCHS.iter().find(|(n, ..)| *n == name)?;
    Some(BackboneConfig::SeResnet(SeResNetConfig {
        depth: *depth,
        width_mult: 1.0,
        se_reduction: if *se { 16 } else { 0 },
        se_divisor: 8,
        stem: Stem::Imagenet,
    }))
}

/// The source name and conversion of our tensor `name` of `dims`.
pub(super) fn source(name: &str, dims: &[usize]) -> (String, Convert) {
    let renamed = match name.split_once('.') {
        Some(("stem", rest)) => rest
            .replacen("conv.", "conv1.", 1)
            .replacen("bn.", "bn1.", 1),
        _ => name.to_string(),
    };
    let conv = if name.contains(".se.fc") && dims.len() == 2 {
        Convert::Conv1x1AsLinear
    } else {
        Convert::by_rank(dims)
    };
    (renamed, conv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stem_is_renamed_and_se_gates_read_as_1x1_convolutions() {
        let s = |n: &str, d: &[usize]| source(n, d);
        assert_eq!(
            s("stem.conv.weight", &[8, 7, 7, 3]),
            ("conv1.weight".into(), Convert::Oihw)
        );
        assert_eq!(
            s("stem.bn.running_var", &[8]),
            ("bn1.running_var".into(), Convert::Same)
        );
        assert_eq!(
            s("layer2.0.downsample.1.weight", &[16]),
            ("layer2.0.downsample.1.weight".into(), Convert::Same)
        );
        assert_eq!(
            s("layer1.0.se.fc1.weight", &[8, 32]),
            ("layer1.0.se.fc1.weight".into(), Convert::Conv1x1AsLinear)
        );
        assert_eq!(s("layer1.0.se.fc1.bias", &[8]).1, Convert::Same);
    }
}
