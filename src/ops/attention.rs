//! Multi-head scaled dot-product attention with a key-padding mask, as one op
//! with a dedicated backward.
//!
//! Layout: q [N, T, H, D], k and v [N, S, H, D], output [N, T, H, D]. That is
//! the layout a linear projection to H·D features produces (a free reshape),
//! so heads need no transpose on the way in or out; each (n, h) pair reads its
//! rows with stride H·D.
//!
//! `key_mask[n·S + s]` false marks a padded key: it gets weight exactly 0 (it
//! is left out of the softmax, not given a large negative score), so garbage
//! in padded frames cannot reach any output. A query whose keys are all
//! padded outputs zeros and passes no gradient, never NaN.
//!
//! Memory (f32, 4 bytes a value; mask flags 4·N·S more when a mask is
//! given). The CPU reference saves the weights [N, H, T, S] for backward:
//! forward allocates the output and the weights, 4·N·T·H·D + 4·N·H·T·S
//! bytes, and keeps the weights until backward. The CUDA path
//! (`cuda.rs`, kernels/attention.cu) is flash style: forward allocates the
//! output and its per-row log-sum-exp [N, H, T], 4·N·T·H·D + 4·N·H·T
//! bytes, and keeps both (the output is the op's own); backward recomputes
//! the weights tile by tile and allocates delta [N, H, T] and the
//! gradients, 4·N·H·T + 4·N·T·H·D + 8·N·S·H·D bytes. Nothing grows with
//! T·S. Before it, the CUDA path stored the weights as the CPU does and
//! backward added a second [N, H, T, S] buffer (the score gradients):
//! 8·N·H·T·S bytes at the peak of backward. The CUDA kernels have passed
//! the CPU emulator (scripts/cuda_emu) and NVRTC compilation; they have
//! not yet run on a GPU.

mod cpu;
mod cuda;

use crate::tensor::{check_same_dtype, same_device};
use crate::{with_dtype, Error, Result, Tape, Var};

const OP: &str = "attention";

#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    t: usize,
    s: usize,
    h: usize,
    d: usize,
}

/// `softmax(q·kᵀ/√D over unmasked keys)·v` per sample and head.
pub fn attention(tape: &Tape, q: &Var, k: &Var, v: &Var, key_mask: Option<&[bool]>) -> Result<Var> {
    let bad = || {
        Error::shape(
            OP,
            format!(
                "q {}, k {}, v {}: need q [N, T, H, D] and k, v [N, S, H, D]",
                q.shape(),
                k.shape(),
                v.shape()
            ),
        )
    };
    let (&[n, t, h, d], &[nk, s, hk, dk]) = (q.dims(), k.dims()) else {
        return Err(bad());
    };
    if (n, h, d) != (nk, hk, dk) || k.dims() != v.dims() || d == 0 {
        return Err(bad());
    }
    check_same_dtype(OP, q.value(), k.value())?;
    check_same_dtype(OP, q.value(), v.value())?;
    let mask = match key_mask {
        Some(m) if m.len() != n * s => {
            return Err(Error::shape(
                OP,
                format!(
                    "key mask of {} entries for keys {}: expected N·S = {}",
                    m.len(),
                    k.shape(),
                    n * s
                ),
            ))
        }
        Some(m) => m.to_vec(),
        None => vec![true; n * s],
    };
    let dims = Dims { n, t, s, h, d };
    // q·kᵀ, then the weights (which depend on q and k) times v.
    let macs = (n * h * t * s * d) as u64;
    let [gq, gk, gv] = [q, k, v].map(|x| tape.needs_grad(x));
    tape.count_inner_product(macs, [gq, gk]);
    tape.count_inner_product(macs, [gq || gk, gv]);
    let (qt, kt, vt) = (q.value().clone(), k.value().clone(), v.value().clone());
    if let Some(dev) = same_device(OP, &[&qt, &kt, &vt])? {
        let given = key_mask.map(|_| &mask[..]);
        let (y, saved) = cuda::forward(&dev, [&qt, &kt, &vt], given, &dims)?;
        return tape.record(OP, &[q, k, v], y, move |g, needs| {
            cuda::backward(&dev, g, [&qt, &kt, &vt], &saved, &dims, needs)
        });
    }
    let (y, probs) = with_dtype!(qt.dtype(), T => cpu::forward::<T>(&qt, &kt, &vt, &mask, &dims)?);
    tape.record(OP, &[q, k, v], y, move |g, needs| {
        with_dtype!(g.dtype(), T => cpu::backward::<T>(g, [&qt, &kt, &vt], &probs, &mask, &dims, needs))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng, Tensor};

    #[test]
    fn two_keys_by_hand_and_masked_key_gets_zero_weight() {
        // One head, D = 1: q = 1, keys 0 and ln 4 (scaled by 1/√1), values 1 and 3.
        // Weights 1/5 and 4/5: output 0.2 + 2.4 = 2.6. Masking key 1 leaves value 1.
        let tape = Tape::no_grad();
        let c =
            |v: &[f64], d: &[usize]| tape.constant(Tensor::from_f64s(v, d, DType::F64).unwrap());
        let q = c(&[1.0], &[1, 1, 1, 1]);
        let k = c(&[0.0, 4f64.ln()], &[1, 2, 1, 1]);
        let v = c(&[1.0, 3.0], &[1, 2, 1, 1]);
        let y = attention(&tape, &q, &k, &v, None)
            .unwrap()
            .value()
            .item()
            .unwrap();
        assert!((y - 2.6).abs() < 1e-14, "{y}");
        let y = attention(&tape, &q, &k, &v, Some(&[true, false]))
            .unwrap()
            .value()
            .item()
            .unwrap();
        assert_eq!(y, 1.0);
        let e = attention(&tape, &q, &k, &v, Some(&[true]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key mask of 1") && e.contains("[1, 2, 1, 1]"),
            "{e}"
        );
        let e = attention(&tape, &q, &c(&[0.0; 4], &[1, 2, 1, 2]), &v, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[1, 2, 1, 2]") && e.contains("[N, S, H, D]"),
            "{e}"
        );
    }

    /// The definition, one output element at a time: the oracle of the
    /// GEMM path in `cpu.rs`.
    fn by_definition(x: [&[f64]; 3], mask: &[bool], [n, t, s, h, d]: [usize; 5]) -> Vec<f64> {
        let [q, k, v] = x;
        let row = |x: &'static str, nn: usize, i: usize, hh: usize| {
            let (data, len) = match x {
                "q" => (q, t),
                "k" => (k, s),
                _ => (v, s),
            };
            &data[((nn * len + i) * h + hh) * d..][..d]
        };
        let mut out = vec![0.0; n * t * h * d];
        for nn in 0..n {
            let keys: Vec<usize> = (0..s).filter(|&j| mask[nn * s + j]).collect();
            for hh in 0..h {
                for i in 0..t {
                    let scores: Vec<f64> = keys
                        .iter()
                        .map(|&j| {
                            let dot: f64 = row("q", nn, i, hh)
                                .iter()
                                .zip(row("k", nn, j, hh))
                                .map(|(a, b)| a * b)
                                .sum();
                            dot / (d as f64).sqrt()
                        })
                        .collect();
                    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = scores.iter().map(|x| (x - m).exp()).sum();
                    for (x, &j) in scores.iter().zip(&keys) {
                        let o = &mut out[((nn * t + i) * h + hh) * d..][..d];
                        for (a, b) in o.iter_mut().zip(row("v", nn, j, hh)) {
                            *a += (x - m).exp() / z * b;
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_and_padded_keys_never_leak() {
        let mut rng = Rng::new(5);
        let dims @ [n, t, s, h, d] = [3, 5, 7, 2, 4];
        let mask: Vec<bool> = (0..n * s).map(|i| i < s || i % 3 != 0).collect();
        let mut x: Vec<Vec<f64>> = [t, s, s]
            .iter()
            .map(|&len| Tensor::randn([n, len, h, d], 1.0, DType::F64, &mut rng).to_f64_vec())
            .collect();
        // Garbage in every padded key and value.
        for (i, _) in mask.iter().enumerate().filter(|(_, &m)| !m) {
            x[1][i * h * d..][..h * d].fill(f64::NAN);
            x[2][i * h * d..][..h * d].fill(f64::INFINITY);
        }
        let want = by_definition([&x[0], &x[1], &x[2]], &mask, dims);
        for dtype in [DType::F64, DType::F32] {
            let tape = Tape::new();
            let mut p = crate::Params::new();
            let ids: Vec<_> = ["q", "k", "v"]
                .iter()
                .zip(&x)
                .zip([t, s, s])
                .map(|((name, x), len)| {
                    p.add(*name, Tensor::from_f64s(x, [n, len, h, d], dtype).unwrap())
                        .unwrap()
                })
                .collect();
            let [q, k, v] = [0, 1, 2].map(|i| tape.param(&p, ids[i]));
            let y = attention(&tape, &q, &k, &v, Some(&mask)).unwrap();
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            for (a, b) in y.value().to_f64_vec().iter().zip(&want) {
                assert!(
                    (a - b).abs() <= tol * (1.0 + b.abs()),
                    "{dtype:?}: {a} vs {b}"
                );
            }
            let g = tape
                .backward_with_seed(&y, Tensor::ones([n, t, h, d], dtype))
                .unwrap();
            for (i, id) in ids.iter().enumerate() {
                let gi = g.get(*id).unwrap().to_f64_vec();
                assert!(gi.iter().all(|a| a.is_finite()), "{dtype:?}: input {i}");
                if i > 0 {
                    for (j, _) in mask.iter().enumerate().filter(|(_, &m)| !m) {
                        assert!(gi[j * h * d..][..h * d].iter().all(|&a| a == 0.0));
                    }
                }
            }
        }
    }

    #[test]
    fn fully_masked_sample_is_zero_not_nan() {
        let mut rng = Rng::new(2);
        let tape = Tape::new();
        let mut p = crate::Params::new();
        let id = p
            .add("q", Tensor::randn([2, 3, 2, 2], 1.0, DType::F64, &mut rng))
            .unwrap();
        let q = tape.param(&p, id);
        let mask = [true, false, true, false, false, false];
        let y = attention(&tape, &q, &q, &q, Some(&mask)).unwrap();
        let yv = y.value().to_f64_vec();
        assert!(yv.iter().all(|a| a.is_finite()));
        assert!(yv[12..].iter().all(|&a| a == 0.0), "sample 1 has no keys");
        let g = tape
            .backward_with_seed(&y, Tensor::ones([2, 3, 2, 2], DType::F64))
            .unwrap();
        let g = g.get(id).unwrap().to_f64_vec();
        assert!(g.iter().all(|a| a.is_finite()) && g[12..].iter().all(|&a| a == 0.0));
    }

    #[test]
    fn gradcheck_odd_lengths_two_heads_with_padding() {
        let mut rng = Rng::new(71);
        let (n, t, s, h, d) = (2, 3, 5, 2, 3);
        let q = Tensor::randn([n, t, h, d], 1.0, DType::F64, &mut rng);
        let k = Tensor::randn([n, s, h, d], 1.0, DType::F64, &mut rng);
        let v = Tensor::randn([n, s, h, d], 1.0, DType::F64, &mut rng);
        let mask = [
            true, true, false, true, false, false, true, true, true, false,
        ];
        check_gradients(&[q.clone(), k.clone(), v.clone()], 1e-6, |tp, x| {
            attention(tp, &x[0], &x[1], &x[2], Some(&mask))
        })
        .unwrap();
        check_gradients(&[q, k, v], 1e-6, |tp, x| {
            attention(tp, &x[0], &x[1], &x[2], None)
        })
        .unwrap();
    }
}
