//! Sinusoidal position encodings (Vaswani et al.): frame t of a chunk gets
//! `sin(t / 10000^(2i/E))` in feature 2i and `cos(..)` in feature 2i + 1.

use crate::{DType, Tensor};

/// The [T, E] table, added to every sequence of a batch by broadcasting.
pub fn sinusoidal(len: usize, dim: usize, dtype: DType) -> Tensor {
    let mut v = vec![0.0; len * dim];
    for t in 0..len {
        for i in 0..dim {
            let freq = (10000f64).powf(-((i / 2 * 2) as f64) / dim as f64);
            let a = t as f64 * freq;
            v[t * dim + i] = if i % 2 == 0 { a.sin() } else { a.cos() };
        }
    }
    Tensor::from_f64s(&v, [len, dim], dtype).expect("length matches by construction")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_rows_by_hand() {
        let p = sinusoidal(3, 4, DType::F64).to_f64_vec();
        // t = 0: sin 0, cos 0 in every pair.
        assert_eq!(&p[..4], &[0.0, 1.0, 0.0, 1.0]);
        // t = 2, pair 1 has frequency 10000^(-2/4) = 0.01.
        assert!((p[8 + 2] - 0.02f64.sin()).abs() < 1e-15);
        assert!((p[8 + 3] - 0.02f64.cos()).abs() < 1e-15);
        assert!((p[8] - 2f64.sin()).abs() < 1e-15);
    }
}
