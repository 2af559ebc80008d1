//! Concordance correlation coefficient loss for valence/arousal regression.

mod cuda;

use super::{check_target, record_scalar};
use crate::{Error, Result, Tape, Tensor, Var};

/// The ABAW marker for a missing valence/arousal label.
pub const INVALID_VA: f64 = -5.0;

/// Statistics of one output dimension over its valid samples.
struct DimStats {
    n: f64,
    mean_t: f64,
    den: f64,
    ccc: f64,
}

/// Population statistics (divided by n) of column `j`; None when the
/// column's CCC is undefined: fewer than 2 valid samples, or a zero
/// denominator (predictions and targets all one and the same constant).
fn dim_stats(p: &[f64], t: &[f64], d: usize, j: usize, invalid: f64) -> Option<DimStats> {
    let rows = || {
        p.chunks_exact(d)
            .zip(t.chunks_exact(d))
            .map(move |(pr, tr)| (pr[j], tr[j]))
            .filter(|&(_, tv)| tv != invalid)
    };
    let n = rows().count() as f64;
    if n < 2.0 {
        return None;
    }
    let (mp, mt) = rows().fold((0.0, 0.0), |(a, b), (pv, tv)| (a + pv, b + tv));
    let (mp, mt) = (mp / n, mt / n);
    let (mut vp, mut vt, mut cov) = (0.0, 0.0, 0.0);
    for (pv, tv) in rows() {
        vp += (pv - mp) * (pv - mp);
        vt += (tv - mt) * (tv - mt);
        cov += (pv - mp) * (tv - mt);
    }
    let den = (vp + vt) / n + (mp - mt) * (mp - mt);
    (den > 0.0).then(|| DimStats {
        n,
        mean_t: mt,
        den,
        ccc: 2.0 * cov / n / den,
    })
}

/// `mean over the D columns of (1 - CCC)` for pred, target [N, D] (valence and
/// arousal: D = 2), with `CCC = 2·cov / (var_p + var_t + (mean_p - mean_t)²)`
/// over the samples whose target is not `invalid` (use [`INVALID_VA`]).
///
/// The average is over **all D** columns: a column whose CCC is undefined
/// (fewer than 2 valid samples, or a zero denominator) contributes 0 to the
/// sum and no gradient, so the loss of a batch never becomes NaN.
pub fn ccc_loss(tape: &Tape, pred: &Var, target: &Tensor, invalid: f64) -> Result<Var> {
    const OP: &str = "ccc_loss";
    check_target(OP, pred, target)?;
    let &[_, d] = pred.dims() else {
        return Err(Error::shape(
            OP,
            format!("prediction {} must be [N, D]", pred.shape()),
        ));
    };
    if let Some(dev) = crate::tensor::same_device(OP, &[pred.value(), target])? {
        let with_grad = tape.is_recording() && pred.requires_grad();
        let (loss, grad) =
            cuda::ccc_fused(&dev, OP, pred.value(), target, invalid as f32, with_grad)?;
        return tape.record(OP, &[pred], loss, move |seed, _| {
            let grad =
                grad.ok_or_else(|| Error::Tape(format!("{OP}: no gradient was computed")))?;
            let g =
                crate::ops::elementwise::cuda::scale_by_device_scalar(&dev, OP, &grad, seed, None)?;
            Ok(vec![Some(g)])
        });
    }
    let (p, t) = (pred.value().to_f64_vec(), target.to_f64_vec());
    let stats: Vec<Option<DimStats>> = (0..d).map(|j| dim_stats(&p, &t, d, j, invalid)).collect();
    let value = stats.iter().flatten().map(|s| 1.0 - s.ccc).sum::<f64>() / d.max(1) as f64;
    record_scalar(tape, OP, &[pred], value, move |_| {
        // dCCC/dp_i = 2 / (n·den) · ((t_i - mean_t) - CCC·(p_i - mean_t)), for valid i.
        let mut g = vec![0.0; p.len()];
        for (i, (gi, (&pv, &tv))) in g.iter_mut().zip(p.iter().zip(&t)).enumerate() {
            if let (Some(s), true) = (&stats[i % d], tv != invalid) {
                *gi = -2.0 / (s.n * s.den) * ((tv - s.mean_t) - s.ccc * (pv - s.mean_t)) / d as f64;
            }
        }
        vec![Some(g)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    fn t(v: &[f64], s: &[usize]) -> Tensor {
        Tensor::from_f64s(v, s, DType::F64).unwrap()
    }

    fn loss(p: &[f64], tg: &[f64], d: usize) -> f64 {
        let tape = Tape::no_grad();
        let pv = tape.constant(t(p, &[p.len() / d, d]));
        ccc_loss(&tape, &pv, &t(tg, &[p.len() / d, d]), INVALID_VA)
            .unwrap()
            .value()
            .item()
            .unwrap()
    }

    #[test]
    fn values_by_hand() {
        // p = [1, 2, 3], t = [1, 2, 3]: CCC 1. p = [0, 0, 3], t = [1, 2, 3]:
        // means 1 and 2, var_p 2, var_t 2/3, cov 1 -> CCC = 2 / (2 + 2/3 + 1) = 6/11.
        assert!(loss(&[1., 2., 3.], &[1., 2., 3.], 1).abs() < 1e-15);
        assert!((loss(&[0., 0., 3.], &[1., 2., 3.], 1) - 5.0 / 11.0).abs() < 1e-15);
        // Perfectly anti-correlated, same moments: CCC -1, loss 2.
        assert!((loss(&[3., 2., 1.], &[1., 2., 3.], 1) - 2.0).abs() < 1e-15);
        // The invalid row (-5) is dropped; column 1 has one valid sample and
        // contributes 0 to the average over both columns.
        let l = loss(
            &[0., 9., 0., 4., 3., 7., 8., 1.],
            &[1., -5., 2., -5., 3., 0.5, -5., -5.],
            2,
        );
        assert!((l - 5.0 / 11.0 / 2.0).abs() < 1e-15, "{l}");
        // Nothing valid: 0, not NaN.
        assert_eq!(loss(&[0.3, 0.1], &[-5., -5.], 2), 0.0);
    }

    #[test]
    fn gradcheck_with_masks() {
        let mut rng = Rng::new(101);
        let p = Tensor::randn([6, 2], 0.5, DType::F64, &mut rng);
        let mut tv = Tensor::randn([6, 2], 0.5, DType::F64, &mut rng).to_f64_vec();
        for i in [0, 3, 5, 9] {
            tv[i] = INVALID_VA;
        }
        let tg = t(&tv, &[6, 2]);
        check_gradients(std::slice::from_ref(&p), 1e-6, |tp, v| {
            ccc_loss(tp, &v[0], &tg, INVALID_VA)
        })
        .unwrap();
        // Column 0 keeps one valid sample, column 1 none: zero gradient everywhere.
        let mut tv = vec![INVALID_VA; 12];
        tv[4] = 0.3;
        let tg = t(&tv, &[6, 2]);
        let r = check_gradients(&[p], 1e-6, |tp, v| ccc_loss(tp, &v[0], &tg, INVALID_VA)).unwrap();
        assert_eq!(r.analytic, 0.0);
        assert_eq!(r.numeric, 0.0);
    }

    #[test]
    fn shape_errors() {
        let tape = Tape::no_grad();
        let p = tape.constant(Tensor::zeros([4, 2], DType::F32));
        let e = ccc_loss(&tape, &p, &Tensor::zeros([4, 3], DType::F32), INVALID_VA)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ccc_loss") && e.contains("[4, 2]") && e.contains("[4, 3]"),
            "{e}"
        );
        let p = tape.constant(Tensor::zeros([4], DType::F32));
        assert!(ccc_loss(&tape, &p, &Tensor::zeros([4], DType::F32), INVALID_VA).is_err());
    }
}
