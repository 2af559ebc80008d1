//! Fixed 2-D sin-cos position embeddings for a grid of patch tokens, in the
//! layout of the masked-autoencoder reference (MAE's
//! `get_2d_sincos_pos_embed`), so its weights and decoders line up.
//!
//! A constant, not an op: no gradient, built once on the host in f64 and
//! uploaded with the model's other tensors, so it has no CUDA kernel.

use crate::{DType, Error, Result, Tensor};
use std::sync::Mutex;

const OP: &str = "sincos_pos_embed_2d";

/// One model's table of [`sincos_pos_embed_2d`], kept for the last grid,
/// dtype and device asked for, so a training step neither rebuilds nor
/// uploads it.
#[derive(Debug)]
pub struct PosEmbedCache {
    d: usize,
    class_token: bool,
    table: Mutex<Option<Tensor>>,
}

impl PosEmbedCache {
    pub fn new(d: usize, class_token: bool) -> Self {
        PosEmbedCache {
            d,
            class_token,
            table: Mutex::new(None),
        }
    }

    /// The table of a gh x gw grid in `like`'s dtype, on its device.
    pub fn get(&self, gh: usize, gw: usize, like: &Tensor) -> Result<Tensor> {
        let mut cached = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let rows = gh * gw + usize::from(self.class_token);
        if let Some(t) = cached.as_ref().filter(|t| {
            t.dims() == [rows, self.d] && t.dtype() == like.dtype() && t.device() == like.device()
        }) {
            return Ok(t.clone());
        }
        let t = sincos_pos_embed_2d(gh, gw, self.d, self.class_token, like.dtype())?
            .to_device(&like.device())?;
        *cached = Some(t.clone());
        Ok(t)
    }
}

/// [gh·gw, d] embeddings for the tokens of a gh x gw grid in row-major order
/// (token p = row·gw + col), with a leading zero row for a class token when
/// `class_token` ([1 + gh·gw, d]).
///
/// With q = d/4 and frequencies w_i = 10000^(-i/q), i < q, token (row, col)
/// is `[sin(col·w), cos(col·w), sin(row·w), cos(row·w)]`, each block q wide:
/// the first half of the width encodes the column, the second the row. (MAE
/// builds its grid with `np.meshgrid(grid_w, grid_h)`, whose first plane is
/// the column coordinate, and encodes that plane first.) `d` must be a
/// positive multiple of 4 and the grid non-empty.
pub fn sincos_pos_embed_2d(
    gh: usize,
    gw: usize,
    d: usize,
    class_token: bool,
    dtype: DType,
) -> Result<Tensor> {
    if d == 0 || !d.is_multiple_of(4) {
        return Err(Error::arg(
            OP,
            format!("width {d} must be a positive multiple of 4 (sin and cos of row and column)"),
        ));
    }
    if gh == 0 || gw == 0 {
        return Err(Error::arg(OP, format!("grid {gh} x {gw} is empty")));
    }
    let q = d / 4;
    let freqs: Vec<f64> = (0..q)
        .map(|i| 10000f64.powf(-(i as f64) / q as f64))
        .collect();
    let lead = usize::from(class_token);
    let mut v = vec![0.0; (lead + gh * gw) * d];
    for (p, row) in v.chunks_exact_mut(d).skip(lead).enumerate() {
        for (half, coord) in [(0, p % gw), (1, p / gw)] {
            let out = &mut row[half * 2 * q..(half + 1) * 2 * q];
            for (i, &w) in freqs.iter().enumerate() {
                let a = coord as f64 * w;
                out[i] = a.sin();
                out[q + i] = a.cos();
            }
        }
    }
    Tensor::from_f64s(&v, [lead + gh * gw, d], dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_gives_the_table_of_the_grid_asked_for() {
        let c = PosEmbedCache::new(8, true);
        let like = Tensor::zeros([1], DType::F32);
        for (gh, gw) in [(2, 3), (2, 3), (4, 4)] {
            let got = c.get(gh, gw, &like).unwrap();
            let want = sincos_pos_embed_2d(gh, gw, 8, true, DType::F32).unwrap();
            assert_eq!(got.dims(), [1 + gh * gw, 8]);
            assert_eq!(got.to_f64_vec(), want.to_f64_vec());
        }
        let f64s = c.get(4, 4, &Tensor::zeros([1], DType::F64)).unwrap();
        assert_eq!(f64s.dtype(), DType::F64);
    }

    #[test]
    fn entries_by_hand() {
        // d = 8: q = 2 frequencies, 1 and 10000^(-1/2) = 0.01.
        let e = sincos_pos_embed_2d(2, 3, 8, false, DType::F64).unwrap();
        assert_eq!(e.dims(), [6, 8]);
        let v = e.to_f64_vec();
        // Token 5 is row 1, column 2: column block first, then row block.
        let want = [
            2f64.sin(),
            0.02f64.sin(),
            2f64.cos(),
            0.02f64.cos(),
            1f64.sin(),
            0.01f64.sin(),
            1f64.cos(),
            0.01f64.cos(),
        ];
        for (got, want) in v[5 * 8..6 * 8].iter().zip(want) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
        // Token 0 (row 0, column 0) is sin 0 = 0 and cos 0 = 1 in each block.
        assert_eq!(&v[..8], [0., 0., 1., 1., 0., 0., 1., 1.]);
        // Token 1 is row 0, column 1.
        assert!((v[8] - 1f64.sin()).abs() < 1e-15 && v[12] == 0.0 && v[14] == 1.0);
    }

    #[test]
    fn class_token_row_is_zero_and_f32_rounds_the_f64_table() {
        let plain = sincos_pos_embed_2d(4, 4, 16, false, DType::F64).unwrap();
        let cls = sincos_pos_embed_2d(4, 4, 16, true, DType::F64).unwrap();
        assert_eq!(cls.dims(), [17, 16]);
        let c = cls.to_f64_vec();
        assert!(c[..16].iter().all(|&x| x == 0.0));
        assert_eq!(c[16..], plain.to_f64_vec());
        let f32s = sincos_pos_embed_2d(4, 4, 16, true, DType::F32).unwrap();
        assert_eq!(f32s.dtype(), DType::F32);
        let rounded: Vec<f64> = c.iter().map(|&x| x as f32 as f64).collect();
        assert_eq!(f32s.to_f64_vec(), rounded);
    }

    #[test]
    fn width_not_a_multiple_of_four_or_an_empty_grid_is_an_error() {
        for (gh, gw, d) in [(2, 2, 6), (2, 2, 0), (0, 3, 8), (3, 0, 8)] {
            let e = sincos_pos_embed_2d(gh, gw, d, false, DType::F32)
                .unwrap_err()
                .to_string();
            assert!(e.contains(OP), "{e}");
        }
        let e = sincos_pos_embed_2d(2, 2, 6, false, DType::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("6") && e.contains("multiple of 4"), "{e}");
    }
}
