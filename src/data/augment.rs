//! Training augmentations on normalised HWC images, driven by the seeded
//! [`Rng`]: horizontal flip, random resized crop, small rotation (all folded
//! into one inverse affine map sampled bilinearly) and brightness/contrast.
//!
//! Every call draws the same number of random values whatever the settings,
//! so toggling one augmentation does not shift the others' randomness.

use crate::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    pub enabled: bool,
    pub hflip_prob: f64,
    /// Crop area as a fraction of the image, [min, max].
    pub crop_scale: [f64; 2],
    /// Crop aspect ratio (w/h), [min, max].
    pub crop_ratio: [f64; 2],
    /// Maximum rotation either way, degrees.
    pub rotation_deg: f64,
    /// Additive brightness shift up to this much of the [-1, 1] range's half width.
    pub brightness: f64,
    /// Contrast factor in [1 - c, 1 + c].
    pub contrast: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            enabled: true,
            hflip_prob: 0.5,
            crop_scale: [0.8, 1.0],
            crop_ratio: [0.9, 1.1],
            rotation_deg: 10.0,
            brightness: 0.2,
            contrast: 0.2,
        }
    }
}

impl AugmentConfig {
    pub fn off() -> Self {
        AugmentConfig {
            enabled: false,
            ..Default::default()
        }
    }
}

/// Applies the augmentations to a `size` x `size` x 3 image in place.
pub fn augment(
    cfg: &AugmentConfig,
    img: &mut [f32],
    size: usize,
    rng: &mut Rng,
    scratch: &mut Vec<f32>,
) {
    // Fixed draw order and count (see module doc).
    let flip = rng.bernoulli(cfg.hflip_prob);
    let area = rng.uniform(cfg.crop_scale[0], cfg.crop_scale[1]);
    let log_ratio = rng.uniform(cfg.crop_ratio[0].ln(), cfg.crop_ratio[1].ln());
    let (fx, fy) = (rng.next_f64(), rng.next_f64());
    let angle = rng
        .uniform(-cfg.rotation_deg, cfg.rotation_deg)
        .to_radians();
    let bright = rng.uniform(-cfg.brightness, cfg.brightness) as f32;
    let contrast = rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast) as f32;
    if !cfg.enabled {
        return;
    }
    let ratio = log_ratio.exp();
    let cw = (area * ratio).sqrt().min(1.0);
    let ch = (area / ratio).sqrt().min(1.0);
    // Crop centre anywhere that keeps the crop inside the image.
    let cx = (fx - 0.5) * (1.0 - cw);
    let cy = (fy - 0.5) * (1.0 - ch);
    let (sin, cos) = angle.sin_cos();
    let s = size as f64;
    // Output pixel centre -> unit coordinates in [-0.5, 0.5] -> flip -> rotate
    // -> scale into the crop -> offset to the crop centre -> source pixels.
    let ax = if flip { -1.0 } else { 1.0 };
    let m00 = cw * cos * ax / s;
    let m01 = -cw * sin / s;
    let m10 = ch * sin * ax / s;
    let m11 = ch * cos / s;
    scratch.clear();
    scratch.extend_from_slice(img);
    let src = &scratch[..];
    let maxc = (size - 1) as f64;
    for y in 0..size {
        let v = y as f64 + 0.5 - s / 2.0;
        for x in 0..size {
            let u = x as f64 + 0.5 - s / 2.0;
            let sx = ((m00 * u + m01 * v + cx + 0.5) * s - 0.5).clamp(0.0, maxc);
            let sy = ((m10 * u + m11 * v + cy + 0.5) * s - 0.5).clamp(0.0, maxc);
            let (x0, y0) = (sx as usize, sy as usize);
            let (x1, y1) = ((x0 + 1).min(size - 1), (y0 + 1).min(size - 1));
            let (tx, ty) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            let o = (y * size + x) * 3;
            for c in 0..3 {
                let p = |xx: usize, yy: usize| src[(yy * size + xx) * 3 + c];
                let top = p(x0, y0) + (p(x1, y0) - p(x0, y0)) * tx;
                let bot = p(x0, y1) + (p(x1, y1) - p(x0, y1)) * tx;
                let val = top + (bot - top) * ty;
                img[o + c] = (val * contrast + bright).clamp(-1.0, 1.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(size: usize) -> Vec<f32> {
        (0..size * size * 3)
            .map(|i| ((i % 97) as f32 / 48.0) - 1.0)
            .collect()
    }

    #[test]
    fn same_rng_state_same_output_and_different_seeds_differ() {
        let cfg = AugmentConfig::default();
        let mut scratch = Vec::new();
        let (mut a, mut b, mut c) = (ramp(24), ramp(24), ramp(24));
        augment(&cfg, &mut a, 24, &mut Rng::new(5), &mut scratch);
        augment(&cfg, &mut b, 24, &mut Rng::new(5), &mut scratch);
        augment(&cfg, &mut c, 24, &mut Rng::new(6), &mut scratch);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn identity_settings_keep_the_image_and_flip_mirrors_it() {
        let id = AugmentConfig {
            hflip_prob: 0.0,
            crop_scale: [1.0, 1.0],
            crop_ratio: [1.0, 1.0],
            rotation_deg: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            ..Default::default()
        };
        let orig = ramp(8);
        let mut img = orig.clone();
        augment(&id, &mut img, 8, &mut Rng::new(1), &mut Vec::new());
        for (a, b) in img.iter().zip(&orig) {
            assert!((a - b).abs() < 1e-5);
        }
        let flip = AugmentConfig {
            hflip_prob: 1.0,
            ..id
        };
        let mut img = orig.clone();
        augment(&flip, &mut img, 8, &mut Rng::new(1), &mut Vec::new());
        for y in 0..8 {
            for x in 0..8 {
                for c in 0..3 {
                    let got = img[(y * 8 + x) * 3 + c];
                    let want = orig[(y * 8 + (7 - x)) * 3 + c];
                    assert!((got - want).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn disabled_still_consumes_the_same_randomness() {
        let mut r1 = Rng::new(9);
        let mut r2 = Rng::new(9);
        let mut img = ramp(4);
        augment(
            &AugmentConfig::default(),
            &mut img.clone(),
            4,
            &mut r1,
            &mut Vec::new(),
        );
        augment(&AugmentConfig::off(), &mut img, 4, &mut r2, &mut Vec::new());
        assert_eq!(img, ramp(4));
        assert_eq!(r1.state(), r2.state());
    }
}
