//! Batched matrix product [B, m, k] x [B, k, n] -> [B, m, n] with optional
//! transposes of either operand (attention's Q·Kᵀ and P·V), each batch entry
//! one strided GEMM, transposes as free views.

use crate::backend::cpu::{gemm, Float, MatRef};
use crate::tensor::check_same_dtype;
use crate::{with_dtype, Error, Result, Tape, Tensor, Var};

/// Which operands are stored transposed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transposes {
    /// a is stored as [B, k, m].
    pub a: bool,
    /// b is stored as [B, n, k].
    pub b: bool,
}

/// `c[i] = op(a[i])·op(b[i])` for every batch entry: plain tensors, no tape.
fn bmm_tensors(
    a: &Tensor,
    b: &Tensor,
    tr: Transposes,
    [batch, m, k, n]: [usize; 4],
) -> Result<Tensor> {
    if let Some(dev) = crate::tensor::same_device("bmm", &[a, b])? {
        return crate::ops::matmul::cuda::gemm(
            &dev,
            "bmm",
            a,
            tr.a,
            b,
            tr.b,
            [batch, m, k, n],
            None,
            true,
        );
    }
    with_dtype!(a.dtype(), T => {
        let (ad, bd) = (a.data::<T>()?, b.data::<T>()?);
        let mut c = vec![T::ZERO; batch * m * n];
        for (i, ci) in c.chunks_exact_mut((m * n).max(1)).enumerate() {
            let av = MatRef::new(&ad[i * m * k..(i + 1) * m * k], if tr.a { k } else { m }, if tr.a { m } else { k });
            let bv = MatRef::new(&bd[i * k * n..(i + 1) * k * n], if tr.b { n } else { k }, if tr.b { k } else { n });
            gemm(T::ONE, if tr.a { av.t() } else { av }, if tr.b { bv.t() } else { bv }, T::ZERO, ci);
        }
        Tensor::from_vec(c, [batch, m, n])
    })
}

/// [B, m, k] x [B, k, n] -> [B, m, n]; with `tr.a` a is [B, k, m], with `tr.b` b is [B, n, k].
pub fn bmm(tape: &Tape, a: &Var, b: &Var, tr: Transposes) -> Result<Var> {
    check_same_dtype("bmm", a.value(), b.value())?;
    let bad = || {
        Error::shape(
            "bmm",
            format!(
                "{} x {} with {tr:?}: need [B, m, k] x [B, k, n]",
                a.shape(),
                b.shape()
            ),
        )
    };
    let (&[ba, a1, a2], &[bb, b1, b2]) = (a.dims(), b.dims()) else {
        return Err(bad());
    };
    let (m, k) = if tr.a { (a2, a1) } else { (a1, a2) };
    let (kb, n) = if tr.b { (b2, b1) } else { (b1, b2) };
    if ba != bb || k != kb {
        return Err(bad());
    }
    let y = bmm_tensors(a.value(), b.value(), tr, [ba, m, k, n])?;
    tape.count_product((ba * m * k * n) as u64, [a, b]);
    let (at, bt) = (a.value().clone(), b.value().clone());
    tape.record("bmm", &[a, b], y, move |g, needs| {
        // With C = A·B: dA = G·Bᵀ, dB = Aᵀ·G, where A = op(a), B = op(b). For a stored
        // transposed, da = dAᵀ = B·Gᵀ; likewise db = dBᵀ = Gᵀ·A.
        let t = |a, b| Transposes { a, b };
        let da = if !needs[0] {
            None
        } else if tr.a {
            Some(bmm_tensors(&bt, g, t(tr.b, true), [ba, k, n, m])?)
        } else {
            Some(bmm_tensors(g, &bt, t(false, !tr.b), [ba, m, n, k])?)
        };
        let db = if !needs[1] {
            None
        } else if tr.b {
            Some(bmm_tensors(g, &at, t(true, tr.a), [ba, n, m, k])?)
        } else {
            Some(bmm_tensors(&at, g, t(!tr.a, false), [ba, k, m, n])?)
        };
        Ok(vec![da, db])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    #[test]
    fn values_by_hand_for_every_transpose() {
        let tape = Tape::no_grad();
        // Batch 0: A = [[1, 2], [3, 4]], B = [[1, 0], [1, 1]]; batch 1: A = I, B = [[5, 6], [7, 8]].
        let a = tape.constant(
            Tensor::from_f64s(&[1., 2., 3., 4., 1., 0., 0., 1.], [2, 2, 2], DType::F64).unwrap(),
        );
        let b = tape.constant(
            Tensor::from_f64s(&[1., 0., 1., 1., 5., 6., 7., 8.], [2, 2, 2], DType::F64).unwrap(),
        );
        let v = |tr| bmm(&tape, &a, &b, tr).unwrap().into_value().to_f64_vec();
        assert_eq!(v(Transposes::default()), [3., 2., 7., 4., 5., 6., 7., 8.]);
        assert_eq!(
            v(Transposes { a: true, b: false }),
            [4., 3., 6., 4., 5., 6., 7., 8.]
        );
        assert_eq!(
            v(Transposes { a: false, b: true }),
            [1., 3., 3., 7., 5., 7., 6., 8.]
        );
        assert_eq!(
            v(Transposes { a: true, b: true }),
            [1., 4., 2., 6., 5., 7., 6., 8.]
        );
        let c = tape.constant(Tensor::zeros([2, 3, 2], DType::F64));
        let e = bmm(&tape, &a, &c, Transposes::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("[2, 2, 2] x [2, 3, 2]"), "{e}");
    }

    #[test]
    fn gradcheck_every_transpose() {
        let mut rng = Rng::new(91);
        let (bs, m, k, n) = (3, 2, 5, 4);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = Tensor::randn(
                if ta { [bs, k, m] } else { [bs, m, k] },
                1.0,
                DType::F64,
                &mut rng,
            );
            let b = Tensor::randn(
                if tb { [bs, n, k] } else { [bs, k, n] },
                1.0,
                DType::F64,
                &mut rng,
            );
            let tr = Transposes { a: ta, b: tb };
            check_gradients(&[a, b], 1e-6, |t, v| bmm(t, &v[0], &v[1], tr)).unwrap();
        }
    }
}
