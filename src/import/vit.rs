//! A masked autoencoder's (or timm's) ViT encoder onto the `vit` backbone.
//! Our ViT registers timm's `VisionTransformer` names (`cls_token`,
//! `patch_embed.proj`, `blocks.{i}.attn.qkv`, ..., `norm`), so only the
//! patch embedding's layout changes (OIHW -> [D, P, P, 3]). Our position
//! embeddings are not parameters: the fixed 2-D sin-cos table MAE uses is
//! computed for whatever grid the images give. A file's `pos_embed` is
//! therefore checked, not loaded: it must be that table for its own grid
//! (any image size), or the import is refused, since a learned embedding
//! (supervised timm ViTs) would be silently dropped. The MAE decoder
//! (`decoder_*`, `mask_token`) and a classifier `head` are unused.

use crate::model::{BackboneConfig, Pooling, VitConfig, VitPreset};
use crate::nn::sincos_pos_embed_2d;
use crate::{DType, Tensor};

/// The names `mtaffect import --arch` takes: MAE's pretrained encoders
/// (class-token pooling through the final `norm`, as MAE saves them).
pub(super) const ARCHS: [(&str, VitPreset); 3] = [
    ("vit_tiny_patch16", VitPreset::Tiny),
    ("vit_small_patch16", VitPreset::Small),
    ("vit_base_patch16", VitPreset::Base),
];

pub(super) fn arch(name: &str) -> Option<BackboneConfig> {
    let (_, preset) = ARCHS.iter().find(|(n, _)| *n == name)?;
    Some(BackboneConfig::Vit(VitConfig {
        preset: *preset,
        patch: 16,
        pooling: Pooling::Cls,
        ..VitConfig::default()
    }))
}

/// Why `pos_embed` (the file's [1, 1 + g², D] tensor, as f32) cannot stand
/// for our table, if it cannot.
pub(super) fn check_pos_embed(dims: &[usize], values: &[f32], width: usize) -> Result<(), String> {
    let &[1, rows, d] = dims else {
        return Err(format!("is {dims:?}, not [1, 1 + grid², {width}]"));
    };
    let g = ((rows.saturating_sub(1)) as f64).sqrt().round() as usize;
    if d != width || g == 0 || g * g + 1 != rows {
        return Err(format!("is {dims:?}, not [1, 1 + grid², {width}]"));
    }
    let table = sincos_pos_embed_2d(g, g, d, true, DType::F64)
        .and_then(|t: Tensor| t.data::<f64>().map(|v| v.to_vec()))
        .map_err(|e| e.to_string())?;
    let worst = values
        .iter()
        .zip(&table)
        .map(|(&v, &t)| (v as f64 - t).abs())
        .fold(0.0, f64::max);
    // The table's values are in [-1, 1]; f32 storage rounds them by ~6e-8.
    if worst > 1e-5 {
        return Err(format!(
            "is not the fixed 2-D sin-cos table of its {g}x{g} grid (differs by up to {worst:.3}): \
             a learned position embedding, which the ViT backbone (fixed sin-cos) cannot take"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sin_cos_table_passes_and_anything_else_is_refused() {
        let t = sincos_pos_embed_2d(3, 3, 8, true, DType::F32).unwrap();
        let v = t.data::<f32>().unwrap().to_vec();
        assert_eq!(check_pos_embed(&[1, 10, 8], &v, 8), Ok(()));
        let mut learned = v.clone();
        learned[13] += 0.01;
        assert!(check_pos_embed(&[1, 10, 8], &learned, 8)
            .unwrap_err()
            .contains("learned position embedding"));
        // No class-token row, or another width.
        assert!(check_pos_embed(&[1, 9, 8], &v[8..], 8).is_err());
        assert!(check_pos_embed(&[1, 10, 8], &v, 16).is_err());
    }
}
