//! Our weight layouts to the ones ONNX operators read. mtaffect keeps
//! activations NHWC, convolution weights [K, R, S, C] and linear weights
//! [out, in]; the exported graph runs in NCHW (ONNX's convention, what
//! runtimes optimise), so each weight is rearranged once here.

/// A convolution weight [K, R, S, C] -> ONNX's OIHW [K, C, R, S].
pub fn krsc_to_kcrs(w: &[f32], [k, r, s, c]: [usize; 4]) -> Vec<f32> {
    debug_assert_eq!(w.len(), k * r * s * c);
    let mut out = vec![0.0; w.len()];
    for ki in 0..k {
        for ri in 0..r {
            for si in 0..s {
                for ci in 0..c {
                    out[((ki * c + ci) * r + ri) * s + si] = w[((ki * r + ri) * s + si) * c + ci];
                }
            }
        }
    }
    out
}

/// A row-major [rows, cols] matrix -> its transpose [cols, rows].
pub fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(w.len(), rows * cols);
    let mut out = vec![0.0; w.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = w[i * cols + j];
        }
    }
    out
}

/// A linear weight [out, h·w·c] that reads an NHWC map flattened in (h, w, c)
/// order -> the same layer reading an NCHW map flattened in (c, h, w) order.
pub fn hwc_columns_to_chw(w: &[f32], out: usize, [h, wd, c]: [usize; 3]) -> Vec<f32> {
    let cols = h * wd * c;
    debug_assert_eq!(w.len(), out * cols);
    let mut res = vec![0.0; w.len()];
    for o in 0..out {
        for hi in 0..h {
            for wi in 0..wd {
                for ci in 0..c {
                    res[o * cols + (ci * h + hi) * wd + wi] = w[o * cols + (hi * wd + wi) * c + ci];
                }
            }
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_weights_move_channels_before_the_taps() {
        // K=2, R=1, S=2, C=3: element (k, r, s, c) holds 100k + 10s + c.
        let w: Vec<f32> = (0..2)
            .flat_map(|k| {
                (0..2).flat_map(move |s| (0..3).map(move |c| (100 * k + 10 * s + c) as f32))
            })
            .collect();
        let o = krsc_to_kcrs(&w, [2, 1, 2, 3]);
        // OIHW element (k, c, 0, s) at ((k*3 + c)*1 + 0)*2 + s.
        for k in 0..2 {
            for c in 0..3 {
                for s in 0..2 {
                    assert_eq!(o[(k * 3 + c) * 2 + s], (100 * k + 10 * s + c) as f32);
                }
            }
        }
    }

    #[test]
    fn transpose_and_column_permutation() {
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(transpose(&w, 2, 3), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        // One output row over a 1x2 map of 3 channels: (h, w, c) -> (c, h, w).
        let p = hwc_columns_to_chw(&w, 1, [1, 2, 3]);
        assert_eq!(p, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
