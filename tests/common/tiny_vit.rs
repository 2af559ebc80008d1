//! The tiny ViT the test files share: small enough to run and train on the
//! CPU in seconds, with every part of the real one (class token, several
//! heads, a grid of patches).

use mtaffect::model::{Pooling, VitConfig, VitPreset};

/// Depth 2, width 32, 2 heads, patch 8.
pub fn tiny_vit(pooling: Pooling) -> VitConfig {
    VitConfig {
        preset: VitPreset::Tiny,
        depth: Some(2),
        width: Some(32),
        heads: Some(2),
        patch: 8,
        pooling,
        ..VitConfig::default()
    }
}
