//! Per-sample token gather by index: `y[n, j, :] = x[n, idx[n, j], :]` for
//! x [N, T, D] and idx [N, K]. Its backward scatters-adds into zeros
//! [N, T, D]. This is what masked-autoencoder pretraining moves tokens with:
//!
//! - **masking**: draw a per-sample permutation of the T patch tokens
//!   ([`TokenIndex::shuffle`]), keep its first K entries
//!   ([`TokenIndex::first`]) and gather the visible tokens with them;
//! - **un-shuffling**: the decoder concatenates the K encoded tokens with
//!   T - K mask tokens along the token axis (in shuffled order) and gathers
//!   with the inverse permutation ([`TokenIndex::inverse`], K == T), which
//!   puts every token back at its patch position. A scatter into a filled
//!   output is therefore not needed as an op of its own.
//!
//! Indices are host data (drawn on the host, like labels); they are checked
//! once, when the [`TokenIndex`] is built, so an out-of-range index is an
//! error naming the op, the position and the value, never a panic. The
//! backward is a gather too: for each (n, t) the list of j with
//! idx[n, j] == t (built on the host with the index), summed in ascending j,
//! so it is deterministic without atomics and repeated indices add up.

mod cuda;

use crate::backend::cpu::Float;
use crate::{with_dtype, Error, Result, Rng, Tape, Tensor, Var};
use std::sync::Arc;

const OP: &str = "gather_tokens";

/// Validated per-sample token indices: `n` rows of `k` positions in `0..t`.
#[derive(Clone, Debug)]
pub struct TokenIndex {
    n: usize,
    t: usize,
    k: usize,
    /// Row-major [n, k].
    idx: Arc<[u32]>,
}

impl TokenIndex {
    /// `idx` is row-major [n, k] (k = idx.len() / n) with every value in
    /// `0..t`; anything else is an error naming the op, the position and the
    /// value.
    pub fn new(idx: &[i64], n: usize, t: usize) -> Result<TokenIndex> {
        if n == 0 || idx.is_empty() || !idx.len().is_multiple_of(n) {
            return Err(Error::arg(
                OP,
                format!("{} indices do not make {n} non-empty rows", idx.len()),
            ));
        }
        if t > u32::MAX as usize || idx.len() > u32::MAX as usize {
            return Err(Error::arg(
                OP,
                format!("{n} x {t} tokens exceed the 32-bit index range"),
            ));
        }
        let k = idx.len() / n;
        let idx = idx
            .iter()
            .enumerate()
            .map(|(e, &v)| {
                if (0..t as i64).contains(&v) {
                    Ok(v as u32)
                } else {
                    Err(Error::arg(
                        OP,
                        format!("idx[{}, {}] = {v} is outside 0..{t}", e / k, e % k),
                    ))
                }
            })
            .collect::<Result<Arc<[u32]>>>()?;
        Ok(TokenIndex { n, t, k, idx })
    }

    /// An independent uniform permutation of `0..t` for each of `n` samples
    /// (MAE's per-sample shuffle), drawn from `rng`.
    pub fn shuffle(n: usize, t: usize, rng: &mut Rng) -> Result<TokenIndex> {
        let mut idx = Vec::with_capacity(n * t);
        for _ in 0..n {
            let mut row: Vec<i64> = (0..t as i64).collect();
            rng.shuffle(&mut row);
            idx.extend(row);
        }
        TokenIndex::new(&idx, n, t)
    }

    /// The first `k` indices of every row (MAE's visible tokens).
    pub fn first(&self, k: usize) -> Result<TokenIndex> {
        if k == 0 || k > self.k {
            return Err(Error::arg(
                OP,
                format!("cannot keep {k} of {} indices per row", self.k),
            ));
        }
        self.columns(0..k)
    }

    /// The indices after the first `k` of every row (MAE's masked tokens,
    /// `k` visible ones before them); at least one must remain.
    pub fn after(&self, k: usize) -> Result<TokenIndex> {
        if k >= self.k {
            return Err(Error::arg(
                OP,
                format!("nothing is left after {k} of {} indices per row", self.k),
            ));
        }
        self.columns(k..self.k)
    }

    fn columns(&self, cols: std::ops::Range<usize>) -> Result<TokenIndex> {
        let idx: Vec<i64> = self
            .rows()
            .flat_map(|r| r[cols.clone()].iter().map(|&v| v as i64))
            .collect();
        TokenIndex::new(&idx, self.n, self.t)
    }

    /// The inverse of a per-sample permutation (k == t, every position once):
    /// gathering with it undoes a gather with `self`.
    pub fn inverse(&self) -> Result<TokenIndex> {
        let mut inv = vec![-1i64; self.n * self.t];
        if self.k == self.t {
            for (s, row) in self.rows().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    inv[s * self.t + v as usize] = j as i64;
                }
            }
        }
        if let Some(e) = inv.iter().position(|&v| v < 0) {
            return Err(Error::arg(
                OP,
                format!(
                    "only a permutation has an inverse: row {} of {} indices into {} tokens misses position {}",
                    e / self.t,
                    self.k,
                    self.t,
                    e % self.t
                ),
            ));
        }
        TokenIndex::new(&inv, self.n, self.t)
    }

    /// The rows of indices, one per sample.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, u32> {
        self.idx.chunks_exact(self.k)
    }

    /// The backward's source lists in CSR form: for token row r = n·t + t',
    /// `sources[offsets[r]..offsets[r + 1]]` are the j (ascending) with
    /// idx[n, j] == t'.
    fn sources(&self) -> (Vec<u32>, Vec<u32>) {
        let mut offsets = vec![0u32; self.n * self.t + 1];
        for (s, row) in self.rows().enumerate() {
            for &v in row {
                offsets[s * self.t + v as usize + 1] += 1;
            }
        }
        for r in 0..self.n * self.t {
            offsets[r + 1] += offsets[r];
        }
        let mut fill = offsets.clone();
        let mut sources = vec![0u32; self.idx.len()];
        for (s, row) in self.rows().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let slot = &mut fill[s * self.t + v as usize];
                sources[*slot as usize] = j as u32;
                *slot += 1;
            }
        }
        (offsets, sources)
    }
}

/// x [N, T, D] -> y [N, K, D] with `y[n, j, :] = x[n, idx[n, j], :]`; the
/// gradient of x is zero except where a token was picked (summed over
/// repeats).
pub fn gather_tokens(tape: &Tape, x: &Var, idx: &TokenIndex) -> Result<Var> {
    let d = match x.dims() {
        &[n, t, d] if n == idx.n && t == idx.t => d,
        _ => {
            return Err(Error::shape(
                OP,
                format!(
                    "input {} must be [{}, {}, D] to match the indices",
                    x.shape(),
                    idx.n,
                    idx.t
                ),
            ))
        }
    };
    let (n, t, k) = (idx.n, idx.t, idx.k);
    if let Some(dev) = x.value().cuda_device().cloned() {
        let y = cuda::forward(&dev, idx, d, x.value())?;
        let idx = idx.clone();
        return tape.record(OP, &[x], y, move |dy, _| {
            Ok(vec![Some(cuda::backward(&dev, &idx, d, dy)?)])
        });
    }
    let y = with_dtype!(x.value().dtype(), T => {
        let xd = x.value().data::<T>()?;
        let mut y = Vec::with_capacity(n * k * d);
        for (s, row) in idx.rows().enumerate() {
            for &v in row {
                let src = (s * t + v as usize) * d;
                y.extend_from_slice(&xd[src..src + d]);
            }
        }
        Tensor::from_vec(y, [n, k, d])?
    });
    let idx = idx.clone();
    tape.record(OP, &[x], y, move |dy, _| {
        let dx = with_dtype!(dy.dtype(), T => {
            let g = dy.data::<T>()?;
            let mut dx = vec![T::ZERO; n * t * d];
            for (r, &v) in idx.idx.iter().enumerate() {
                let dst = ((r / k) * t + v as usize) * d;
                dx[dst..dst + d].iter_mut().zip(&g[r * d..(r + 1) * d]).for_each(|(a, &b)| *a += b);
            }
            Tensor::from_vec(dx, [n, t, d])?
        });
        Ok(vec![Some(dx)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::ops::{add, concat};
    use crate::{DType, Params};

    fn iota(dims: [usize; 3], dtype: DType) -> Tensor {
        let v: Vec<f64> = (0..dims.iter().product::<usize>())
            .map(|i| i as f64)
            .collect();
        Tensor::from_f64s(&v, dims, dtype).unwrap()
    }

    #[test]
    fn values_and_scatter_add_by_hand() {
        for dtype in [DType::F32, DType::F64] {
            // x [2, 3, 2] = 0..12: sample 0 rows (0 1) (2 3) (4 5), sample 1 rows (6 7) (8 9) (10 11).
            let idx = TokenIndex::new(&[2, 0, 1, 1], 2, 3).unwrap();
            let mut params = Params::new();
            let id = params.add("x", iota([2, 3, 2], dtype)).unwrap();
            let tape = Tape::new();
            let x = tape.param(&params, id);
            let y = gather_tokens(&tape, &x, &idx).unwrap();
            assert_eq!(y.dims(), [2, 2, 2]);
            assert_eq!(y.value().to_f64_vec(), [4., 5., 0., 1., 8., 9., 8., 9.]);
            let dy =
                Tensor::from_f64s(&[1., 2., 3., 4., 5., 6., 7., 8.], [2, 2, 2], dtype).unwrap();
            let g = tape.backward_with_seed(&y, dy).unwrap();
            // Sample 0: token 2 <- (1 2), token 0 <- (3 4); sample 1: token 1 <- (5 6) + (7 8).
            assert_eq!(
                g.get(id).unwrap().to_f64_vec(),
                [3., 4., 0., 0., 1., 2., 0., 0., 12., 14., 0., 0.]
            );
        }
    }

    #[test]
    fn bad_indices_and_shapes_are_errors_naming_the_op() {
        let msg = |r: Result<TokenIndex>| r.unwrap_err().to_string();
        let e = msg(TokenIndex::new(&[0, 1, 3, 2], 2, 3));
        assert!(
            e.contains(OP) && e.contains("idx[1, 0] = 3") && e.contains("0..3"),
            "{e}"
        );
        let e = msg(TokenIndex::new(&[0, -1], 1, 3));
        assert!(e.contains("idx[0, 1] = -1"), "{e}");
        assert!(msg(TokenIndex::new(&[0, 1, 2], 2, 3)).contains("2 non-empty rows"));
        assert!(TokenIndex::new(&[], 2, 3).is_err());
        let idx = TokenIndex::new(&[0, 1, 1, 2], 2, 3).unwrap();
        assert!(idx.first(3).is_err() && idx.first(0).is_err());
        assert!(idx.after(2).is_err());
        let tail = idx.after(1).unwrap();
        assert_eq!(tail.rows().collect::<Vec<_>>(), [&[1u32][..], &[2u32][..]]);
        let e = msg(idx.inverse());
        assert!(e.contains("permutation"), "{e}");
        let e = msg(TokenIndex::new(&[0, 1, 2, 0, 0, 2], 2, 3)
            .unwrap()
            .inverse());
        assert!(e.contains("row 1") && e.contains("position 1"), "{e}");
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::zeros([2, 4, 5], DType::F32));
        let e = gather_tokens(&tape, &x, &idx).unwrap_err().to_string();
        assert!(
            e.contains(OP) && e.contains("[2, 4, 5]") && e.contains("[2, 3, D]"),
            "{e}"
        );
    }

    #[test]
    fn gradcheck_with_repeated_and_unpicked_tokens() {
        let mut rng = Rng::new(23);
        let x = Tensor::randn([3, 5, 3], 1.0, DType::F64, &mut rng);
        // Row 0 repeats token 4, row 1 picks one token, row 2 repeats 0.
        let idx = TokenIndex::new(&[4, 1, 4, 0, 2, 2, 2, 2, 0, 0, 3, 1], 3, 5).unwrap();
        check_gradients(&[x], 1e-6, |t, v| gather_tokens(t, &v[0], &idx)).unwrap();
    }

    #[test]
    fn shuffle_draws_per_sample_permutations() {
        let p = TokenIndex::shuffle(4, 9, &mut Rng::new(3)).unwrap();
        let rows: Vec<Vec<u32>> = p.rows().map(<[u32]>::to_vec).collect();
        for row in &rows {
            let mut sorted = row.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..9).collect::<Vec<u32>>());
        }
        assert!(
            rows.windows(2).any(|w| w[0] != w[1]),
            "samples get their own permutation"
        );
        let again = TokenIndex::shuffle(4, 9, &mut Rng::new(3)).unwrap();
        assert_eq!(p.idx, again.idx);
        assert_eq!(p.inverse().unwrap().inverse().unwrap().idx, p.idx);
    }

    /// MAE: keep the first K of a per-sample shuffle, append mask tokens,
    /// gather with the inverse permutation: visible tokens return to their
    /// patch positions and every other position holds the mask token.
    #[test]
    fn mae_unshuffle_is_a_gather_with_the_inverse_permutation() {
        let (n, t, k, d) = (3, 7, 3, 2);
        let mut rng = Rng::new(11);
        let perm = TokenIndex::shuffle(n, t, &mut rng).unwrap();
        let keep = perm.first(k).unwrap();
        let restore = perm.inverse().unwrap();
        let unshuffle = |tape: &Tape, x: &Var, mask: &Var| -> Result<Var> {
            let visible = gather_tokens(tape, x, &keep)?;
            let blanks = tape.constant(Tensor::zeros([n, t - k, d], x.value().dtype()));
            let masked = add(tape, &blanks, mask)?;
            gather_tokens(tape, &concat(tape, &[&visible, &masked], 1)?, &restore)
        };
        let x = Tensor::randn([n, t, d], 1.0, DType::F64, &mut rng);
        let mask = Tensor::from_f64s(&[100.0, -100.0], [1, 1, d], DType::F64).unwrap();
        let tape = Tape::no_grad();
        let y = unshuffle(
            &tape,
            &tape.constant(x.clone()),
            &tape.constant(mask.clone()),
        )
        .unwrap()
        .value()
        .to_f64_vec();
        let xv = x.to_f64_vec();
        for (s, kept) in keep.rows().enumerate() {
            for pos in 0..t {
                let at = (s * t + pos) * d;
                let want = if kept.contains(&(pos as u32)) {
                    &xv[at..at + d]
                } else {
                    &[100.0, -100.0][..]
                };
                assert_eq!(&y[at..at + d], want, "sample {s} position {pos}");
            }
        }
        // A full permutation followed by its inverse is the identity.
        let round = gather_tokens(
            &tape,
            &gather_tokens(&tape, &tape.constant(x.clone()), &perm).unwrap(),
            &restore,
        )
        .unwrap();
        assert_eq!(round.value().to_f64_vec(), xv);
        check_gradients(&[x, mask], 1e-6, |tp, v| unshuffle(tp, &v[0], &v[1])).unwrap();
    }
}
