//! Images cut into the patch vectors a masked autoencoder reconstructs, and
//! back. Host-side: the targets are data (no gradient flows into them), and
//! the loader builds batches on the host anyway.
//!
//! Token order is the patch-embedding convolution's output order (row-major
//! over the patch grid); inside a patch the values run over (row, column,
//! channel), the NHWC order, so a patch vector is a `p x p x 3` crop read
//! row by row.

use crate::{Error, Result};

/// Patch geometry of square NHWC images with 3 channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchGrid {
    /// Image side in pixels.
    pub size: usize,
    /// Patch side in pixels; divides `size`.
    pub patch: usize,
}

impl PatchGrid {
    pub fn new(size: usize, patch: usize) -> Result<PatchGrid> {
        if patch == 0 || size == 0 || !size.is_multiple_of(patch) {
            return Err(Error::Config(format!(
                "an image of {size}x{size} pixels does not split into {patch}x{patch} patches"
            )));
        }
        Ok(PatchGrid { size, patch })
    }

    /// Patches per side.
    pub fn side(&self) -> usize {
        self.size / self.patch
    }

    /// Patches per image.
    pub fn tokens(&self) -> usize {
        self.side() * self.side()
    }

    /// Values per patch (p·p·3).
    pub fn dim(&self) -> usize {
        self.patch * self.patch * 3
    }

    /// The pixel range of patch `t`'s row `r`: (offset into the image, length).
    fn row(&self, t: usize, r: usize) -> (usize, usize) {
        let (gy, gx) = (t / self.side(), t % self.side());
        let y = gy * self.patch + r;
        ((y * self.size + gx * self.patch) * 3, self.patch * 3)
    }

    /// Images [n, size, size, 3] -> patch vectors [n, tokens, dim].
    pub fn patchify(&self, images: &[f32]) -> Vec<f32> {
        let per_image = self.size * self.size * 3;
        let mut out = Vec::with_capacity(images.len());
        for img in images.chunks_exact(per_image) {
            for t in 0..self.tokens() {
                for r in 0..self.patch {
                    let (o, len) = self.row(t, r);
                    out.extend_from_slice(&img[o..o + len]);
                }
            }
        }
        out
    }

    /// The inverse of [`patchify`](Self::patchify).
    pub fn unpatchify(&self, patches: &[f32]) -> Vec<f32> {
        let per_image = self.size * self.size * 3;
        let mut out = vec![0.0; patches.len()];
        for (img, p) in out
            .chunks_exact_mut(per_image)
            .zip(patches.chunks_exact(per_image))
        {
            let mut src = p.chunks_exact(self.patch * 3);
            for t in 0..self.tokens() {
                for r in 0..self.patch {
                    let (o, len) = self.row(t, r);
                    img[o..o + len].copy_from_slice(src.next().expect("sizes match"));
                }
            }
        }
        out
    }
}

/// Per-patch mean and standard deviation; the std uses the unbiased
/// variance plus 1e-6 inside the root, MAE's `norm_pix_loss` target.
pub fn patch_stats(patch: &[f32]) -> (f32, f32) {
    let n = patch.len() as f64;
    let mean = patch.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = patch
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    (mean as f32, (var + 1e-6).sqrt() as f32)
}

/// Normalises every patch vector of `patches` (rows of `dim`) in place to
/// zero mean and unit std.
pub fn normalise_patches(patches: &mut [f32], dim: usize) {
    for p in patches.chunks_exact_mut(dim) {
        let (m, s) = patch_stats(p);
        p.iter_mut().for_each(|v| *v = (*v - m) / s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patchify_cuts_crops_in_grid_order_and_unpatchify_inverts_it() {
        let g = PatchGrid::new(4, 2).unwrap();
        assert_eq!((g.side(), g.tokens(), g.dim()), (2, 4, 12));
        // Pixel (y, x) of image i holds 100·i + 10·y + x in every channel.
        let img: Vec<f32> = (0..2)
            .flat_map(|i| {
                (0..16).flat_map(move |yx| [(100 * i + 10 * (yx / 4) + yx % 4) as f32; 3])
            })
            .collect();
        let p = g.patchify(&img);
        // Image 0, token 1 (top right): pixels (0,2), (0,3), (1,2), (1,3).
        let t1: Vec<f32> = p[12..24].chunks(3).map(|c| c[0]).collect();
        assert_eq!(t1, [2., 3., 12., 13.]);
        // Image 1, token 2 (bottom left).
        let t = &p[(4 + 2) * 12..(4 + 3) * 12];
        assert_eq!(
            t.chunks(3).map(|c| c[0]).collect::<Vec<_>>(),
            [120., 121., 130., 131.]
        );
        assert_eq!(g.unpatchify(&p), img);
    }

    #[test]
    fn sizes_that_do_not_split_are_refused() {
        assert!(PatchGrid::new(64, 8).is_ok());
        let e = PatchGrid::new(60, 8).unwrap_err().to_string();
        assert!(e.contains("60x60") && e.contains("8x8"), "{e}");
        assert!(PatchGrid::new(64, 0).is_err());
    }

    #[test]
    fn normalised_patches_have_zero_mean_and_unit_sample_std() {
        let mut p: Vec<f32> = (0..12).map(|v| (v * v) as f32 / 7.0).collect();
        normalise_patches(&mut p, 6);
        for row in p.chunks(6) {
            let m: f32 = row.iter().sum::<f32>() / 6.0;
            let var: f32 = row.iter().map(|v| (v - m).powi(2)).sum::<f32>() / 5.0;
            assert!(m.abs() < 1e-6 && (var - 1.0).abs() < 1e-4, "{m} {var}");
        }
        // A flat patch stays finite (the 1e-6 inside the root).
        let mut flat = vec![0.5f32; 6];
        normalise_patches(&mut flat, 6);
        assert!(flat.iter().all(|v| *v == 0.0));
    }
}
