//! Images tiled into one picture (sample grids of the GAN, reconstruction
//! grids of masked-autoencoder pretraining): cells on a white sheet with
//! thin gutters, pixels mapped from [-1, 1] to 8 bits.

use crate::train::plot::Canvas;
use crate::{Error, Result};

/// Pixels between images (and around the grid).
pub const GAP: usize = 2;

/// Images [rows·cols, S, S, 3] in [-1, 1] tiled on a white sheet with `GAP` gutters.
pub fn tile(images: &[f32], size: usize, rows: usize, cols: usize) -> Result<Canvas> {
    if images.len() != rows * cols * size * size * 3 {
        return Err(Error::shape(
            "sample grid",
            format!(
                "{} values for {rows}x{cols} images of {size}x{size}x3",
                images.len()
            ),
        ));
    }
    let (w, h) = (cols * (size + GAP) + GAP, rows * (size + GAP) + GAP);
    let mut pixels = vec![255u8; w * h * 3];
    for (i, img) in images.chunks(size * size * 3).enumerate() {
        let (x0, y0) = (
            GAP + (i % cols) * (size + GAP),
            GAP + (i / cols) * (size + GAP),
        );
        for y in 0..size {
            let dst = ((y0 + y) * w + x0) * 3;
            for (d, &v) in pixels[dst..dst + size * 3]
                .iter_mut()
                .zip(&img[y * size * 3..(y + 1) * size * 3])
            {
                *d = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
            }
        }
    }
    Ok(Canvas {
        width: w as u32,
        height: h as u32,
        pixels,
    })
}
