//! The chance baseline a trained model must beat: the training set's mean
//! valence/arousal, its most frequent expression, and no AU active, scored
//! on the validation labels with the same metrics.

use crate::data::Sample;
use crate::metrics::{MtlEvaluator, MtlLabels, MtlMetrics, MtlPredictions};
use crate::Result;

pub fn chance_baseline(
    train: &[Sample],
    val: &[Sample],
    n_expr: usize,
    n_aus: usize,
) -> Result<MtlMetrics> {
    let va: Vec<[f32; 2]> = train.iter().filter_map(|s| s.va).collect();
    let mean = |k: usize| va.iter().map(|v| v[k] as f64).sum::<f64>() / va.len().max(1) as f64;
    let mean_va = [mean(0) as f32, mean(1) as f32];
    let mut counts = vec![0usize; n_expr];
    for e in train.iter().filter_map(|s| s.expr) {
        counts[e as usize] += 1;
    }
    let majority = (0..n_expr)
        .max_by_key(|&k| (counts[k], std::cmp::Reverse(k)))
        .unwrap_or(0);

    let n = val.len();
    let pred_va: Vec<f32> = (0..n).flat_map(|_| mean_va).collect();
    let pred_expr: Vec<f32> = (0..n * n_expr)
        .map(|i| if i % n_expr == majority { 1.0 } else { 0.0 })
        .collect();
    // A very negative logit: every AU predicted absent.
    let pred_au = vec![-1e3f32; n * n_aus];
    let lab_va: Vec<f32> = val.iter().flat_map(|s| s.va.unwrap_or([-5.0; 2])).collect();
    let lab_expr: Vec<f32> = val.iter().map(|s| s.expr.map_or(-1.0, f32::from)).collect();
    let lab_au: Vec<f32> = val
        .iter()
        .flat_map(|s| match &s.aus {
            Some(a) => a.iter().map(|&v| f32::from(v)).collect::<Vec<_>>(),
            None => vec![-1.0; n_aus],
        })
        .collect();
    let mut ev = MtlEvaluator::new(n_expr, n_aus);
    ev.add_batch(
        n,
        MtlPredictions {
            va: &pred_va,
            expr_logits: &pred_expr,
            au_logits: &pred_au,
        },
        MtlLabels {
            va: &lab_va,
            expr: &lab_expr,
            au: &lab_au,
        },
    )?;
    Ok(ev.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(va: Option<[f32; 2]>, expr: Option<u8>, aus: Option<Vec<u8>>) -> Sample {
        Sample::for_test(va, expr, aus)
    }

    #[test]
    fn majority_class_and_constant_va_score_as_computed_by_hand() {
        let train = [
            s(Some([0.5, 0.1]), Some(2), None),
            s(None, Some(2), None),
            s(None, Some(1), None),
        ];
        // Validation: expressions 2, 2, 1, 0 -> predicting 2 everywhere gives
        // class-2 F1 = 2*2/(2*2+2+0) = 2/3, other classes 0: macro F1 = (2/3)/3.
        let val = [
            s(Some([0.2, 0.3]), Some(2), Some(vec![1, 0])),
            s(Some([-0.4, 0.9]), Some(2), Some(vec![0, 0])),
            s(Some([0.6, -0.2]), Some(1), None),
            s(None, Some(0), Some(vec![1, 1])),
        ];
        let m = chance_baseline(&train, &val, 3, 2).unwrap();
        assert!((m.expr_f1 - 2.0 / 9.0).abs() < 1e-12, "{}", m.expr_f1);
        assert_eq!(m.ccc_mean, 0.0, "a constant prediction has zero covariance");
        assert_eq!(m.au_f1, 0.0, "no AU predicted active");
        assert!((m.p_mtl - 2.0 / 9.0).abs() < 1e-12);
    }
}
