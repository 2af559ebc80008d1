//! Scoring per-frame predictions of whole videos: the ABAW metrics over the
//! labelled frames, and moving-average smoothing along time with the window
//! of each task chosen on the validation set.

use crate::data::sequence::SequenceSet;
use crate::metrics::{MtlEvaluator, MtlLabels, MtlMetrics, MtlPredictions};
use crate::train::HeadOutputs;
use crate::Result;
use serde::Serialize;

/// Smoothing windows of (VA, expression, AU).
pub type Windows = [usize; 3];

/// Raw and smoothed validation scores, with the windows picked.
#[derive(Clone, Debug, Serialize)]
pub struct SmoothedEval {
    pub raw: MtlMetrics,
    pub windows_va_expr_au: Windows,
    pub smoothed: MtlMetrics,
}

/// Centred moving average along time of a [T, width] array; near the ends
/// the window shrinks to the frames that exist.
pub fn moving_average(x: &[f32], width: usize, window: usize) -> Vec<f32> {
    let t = x.len() / width.max(1);
    if window <= 1 || t == 0 {
        return x.to_vec();
    }
    let half = window / 2;
    let mut out = vec![0.0; x.len()];
    for i in 0..t {
        let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(t));
        for j in 0..width {
            let s: f64 = (lo..hi).map(|k| x[k * width + j] as f64).sum();
            out[i * width + j] = (s / (hi - lo) as f64) as f32;
        }
    }
    out
}

/// The ABAW metrics over the labelled frames of `set`, each task's outputs
/// smoothed with its window first.
pub fn score(
    set: &SequenceSet,
    outputs: &[HeadOutputs],
    n_expr: usize,
    windows: Windows,
) -> Result<MtlMetrics> {
    let a = set.n_aus;
    let mut ev = MtlEvaluator::new(n_expr, a);
    for (v, o) in set.videos.iter().zip(outputs) {
        let va = moving_average(&o.va, 2, windows[0]);
        let expr = moving_average(&o.expr, n_expr, windows[1]);
        let au = moving_average(&o.au, a, windows[2]);
        let rows: Vec<usize> = (0..v.len()).filter(|&i| v.labelled[i]).collect();
        let pick = |x: &[f32], w: usize| -> Vec<f32> {
            rows.iter()
                .flat_map(|&i| x[i * w..(i + 1) * w].iter().copied())
                .collect()
        };
        let expr_labels: Vec<f32> = rows.iter().map(|&i| v.expr[i] as f32).collect();
        ev.add_batch(
            rows.len(),
            MtlPredictions {
                va: &pick(&va, 2),
                expr_logits: &pick(&expr, n_expr),
                au_logits: &pick(&au, a),
            },
            MtlLabels {
                va: &pick(&v.va, 2),
                expr: &expr_labels,
                au: &pick(&v.au, a),
            },
        )?;
    }
    Ok(ev.finish())
}

/// Scores without smoothing and with each task's best window from
/// `candidates` (P_MTL is a sum of per-task terms, so the best windows can
/// be picked one task at a time). The windows are chosen on this same set:
/// the smoothed score is optimistic by that selection.
pub fn score_with_smoothing(
    set: &SequenceSet,
    outputs: &[HeadOutputs],
    n_expr: usize,
    candidates: &[usize],
) -> Result<SmoothedEval> {
    let raw = score(set, outputs, n_expr, [1; 3])?;
    let mut best = [(raw.ccc_mean, 1), (raw.expr_f1, 1), (raw.au_f1, 1)];
    for &w in candidates {
        let m = score(set, outputs, n_expr, [w; 3])?;
        for (b, v) in best.iter_mut().zip([m.ccc_mean, m.expr_f1, m.au_f1]) {
            if v > b.0 {
                *b = (v, w);
            }
        }
    }
    let windows = best.map(|b| b.1);
    Ok(SmoothedEval {
        smoothed: score(set, outputs, n_expr, windows)?,
        raw,
        windows_va_expr_au: windows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_by_hand_with_shrinking_ends() {
        // Two columns over four frames, window 3.
        let x = [0.0, 10.0, 3.0, 10.0, 6.0, 40.0, 9.0, 10.0];
        let y = moving_average(&x, 2, 3);
        assert_eq!(y, [1.5, 10.0, 3.0, 20.0, 6.0, 20.0, 7.5, 25.0]);
        assert_eq!(moving_average(&x, 2, 1), x);
    }
}
