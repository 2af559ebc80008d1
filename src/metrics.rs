//! ABAW multi-task-learning metrics: CCC for valence/arousal, F1 for action
//! units and expressions, and the challenge score
//! `P_MTL = (CCC_V + CCC_A)/2 + F1_expr + F1_AU`.
//!
//! Labels follow Aff-Wild2's sentinels: valence/arousal `-5` and AU or
//! expression `-1` mark a frame without that annotation; such entries are left
//! out of their task's metric (and only that task's).
//!
//! Conventions where a metric is undefined (they follow scikit-learn with
//! `zero_division=0`, as the ABAW baseline's scoring does):
//! - F1 of a class or AU with no true positives, false positives or false
//!   negatives (absent from both targets and predictions) is 0. Expression
//!   macro F1 always averages over all classes, like
//!   `f1_score(y, p, labels=range(8), average="macro", zero_division=0)`,
//!   so the denominator is the challenge's fixed 8, not "classes seen".
//! - CCC is `None` with fewer than two valid samples or when both series are
//!   constant and equal (0/0); `P_MTL` counts a `None` CCC as 0.

use crate::{Error, Result};
use serde::Serialize;

/// Valence/arousal target marking "not annotated".
pub const INVALID_VA: f32 = -5.0;
/// AU or expression target marking "not annotated".
pub const INVALID_LABEL: f32 = -1.0;
/// Action units in the ABAW MTL set (AU1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26).
pub const NUM_AUS: usize = 12;
/// Expressions: Neutral, Anger, Disgust, Fear, Happiness, Sadness, Surprise, Other.
pub const NUM_EXPRESSIONS: usize = 8;

/// Concordance correlation coefficient with population (1/N) statistics over
/// the pairs whose target is not [`INVALID_VA`].
pub fn ccc(pred: &[f32], target: &[f32]) -> Option<f64> {
    let mut acc = CccAccumulator::default();
    for (&p, &t) in pred.iter().zip(target) {
        acc.push(p, t);
    }
    acc.value()
}

/// Running sums for CCC, so an evaluation pass needs no per-sample storage.
/// Sums are f64: a validation set has up to ~10^6 frames.
#[derive(Clone, Debug, Default)]
struct CccAccumulator {
    n: u64,
    sp: f64,
    st: f64,
    spp: f64,
    stt: f64,
    spt: f64,
}

impl CccAccumulator {
    fn push(&mut self, p: f32, t: f32) {
        if t == INVALID_VA {
            return;
        }
        let (p, t) = (p as f64, t as f64);
        self.n += 1;
        self.sp += p;
        self.st += t;
        self.spp += p * p;
        self.stt += t * t;
        self.spt += p * t;
    }

    fn value(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let (mp, mt) = (self.sp / n, self.st / n);
        // Raw-moment variances can dip a hair below 0 from rounding.
        let vp = (self.spp / n - mp * mp).max(0.0);
        let vt = (self.stt / n - mt * mt).max(0.0);
        let cov = self.spt / n - mp * mt;
        let denom = vp + vt + (mp - mt) * (mp - mt);
        (denom > 0.0).then(|| 2.0 * cov / denom)
    }
}

/// True/false positive and false negative counts of one binary decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    tp: u64,
    fp: u64,
    fn_: u64,
}

impl Counts {
    fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => {}
        }
    }

    /// `2TP / (2TP + FP + FN)`, equal to the harmonic mean of precision and
    /// recall whenever those are defined; 0 when nothing was positive.
    fn f1(&self) -> f64 {
        let denom = 2 * self.tp + self.fp + self.fn_;
        if denom == 0 {
            0.0
        } else {
            2.0 * self.tp as f64 / denom as f64
        }
    }
}

/// Per-AU binary F1 (`logit > 0`, i.e. sigmoid probability > 0.5) for
/// `au_logits` and `au_targets` laid out `[N, A]`, skipping targets of -1.
pub fn au_f1(au_logits: &[f32], au_targets: &[f32], num_au: usize) -> Result<Vec<f64>> {
    let mut counts = vec![Counts::default(); num_au];
    add_au(&mut counts, au_logits, au_targets)?;
    Ok(counts.iter().map(Counts::f1).collect())
}

/// Expression macro F1 over `num_classes` classes (argmax of `[N, C]` logits
/// against class-index targets, skipping -1).
pub fn expr_macro_f1(logits: &[f32], targets: &[f32], num_classes: usize) -> Result<f64> {
    let mut counts = vec![Counts::default(); num_classes];
    let mut correct = (0, 0);
    add_expr(&mut counts, &mut correct, logits, targets)?;
    Ok(mean(counts.iter().map(Counts::f1)))
}

fn mean(xs: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = xs.len();
    if n == 0 {
        0.0
    } else {
        xs.sum::<f64>() / n as f64
    }
}

fn add_au(counts: &mut [Counts], logits: &[f32], targets: &[f32]) -> Result<()> {
    let a = counts.len();
    let rows_fit = if a == 0 {
        logits.is_empty()
    } else {
        logits.len().is_multiple_of(a)
    };
    if logits.len() != targets.len() || !rows_fit {
        return Err(Error::shape(
            "au_f1",
            format!(
                "{} logits and {} targets for {} AUs",
                logits.len(),
                targets.len(),
                counts.len()
            ),
        ));
    }
    for (i, (&l, &t)) in logits.iter().zip(targets).enumerate() {
        if t == INVALID_LABEL {
            continue;
        }
        if t != 0.0 && t != 1.0 {
            return Err(Error::arg(
                "au_f1",
                format!("AU target {t} at element {i} is not 0, 1 or -1"),
            ));
        }
        counts[i % counts.len()].add(l > 0.0, t == 1.0);
    }
    Ok(())
}

/// Adds a batch of expression predictions; `correct` is (right, valid).
fn add_expr(
    counts: &mut [Counts],
    correct: &mut (u64, u64),
    logits: &[f32],
    targets: &[f32],
) -> Result<()> {
    let c = counts.len();
    if c == 0 || logits.len() != targets.len() * c {
        return Err(Error::shape(
            "expr_f1",
            format!(
                "{} logits for {} targets and {c} classes",
                logits.len(),
                targets.len()
            ),
        ));
    }
    for (i, (row, &t)) in logits.chunks_exact(c).zip(targets).enumerate() {
        if t == INVALID_LABEL {
            continue;
        }
        if t < 0.0 || t.fract() != 0.0 || t as usize >= c {
            return Err(Error::arg(
                "expr_f1",
                format!("expression target {t} of sample {i} is not a class in 0..{c} or -1"),
            ));
        }
        let truth = t as usize;
        // First maximum wins on ties, like numpy's argmax.
        let pred = row
            .iter()
            .enumerate()
            .fold(0, |best, (k, &v)| if v > row[best] { k } else { best });
        for (k, cnt) in counts.iter_mut().enumerate() {
            cnt.add(pred == k, truth == k);
        }
        correct.0 += (pred == truth) as u64;
        correct.1 += 1;
    }
    Ok(())
}

/// One batch of model outputs, row-major over `n` samples.
#[derive(Clone, Copy, Debug)]
pub struct MtlPredictions<'a> {
    /// `[n, 2]`: valence, arousal.
    pub va: &'a [f32],
    /// `[n, C]` expression logits.
    pub expr_logits: &'a [f32],
    /// `[n, A]` AU logits (sigmoid not applied).
    pub au_logits: &'a [f32],
}

/// The batch's targets, with the dataset's sentinels for missing labels.
#[derive(Clone, Copy, Debug)]
pub struct MtlLabels<'a> {
    /// `[n, 2]`, -5 where not annotated.
    pub va: &'a [f32],
    /// `[n]` class indices, -1 where not annotated.
    pub expr: &'a [f32],
    /// `[n, A]` in {0, 1, -1}.
    pub au: &'a [f32],
}

/// The challenge metrics of one evaluation pass.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MtlMetrics {
    pub ccc_valence: Option<f64>,
    pub ccc_arousal: Option<f64>,
    /// Mean of the two CCCs, a missing one counted as 0.
    pub ccc_mean: f64,
    pub expr_f1: f64,
    pub expr_f1_per_class: Vec<f64>,
    /// Fraction of valid expression labels predicted right; None if there were none.
    pub expr_accuracy: Option<f64>,
    pub au_f1: f64,
    pub au_f1_per_au: Vec<f64>,
    /// `ccc_mean + expr_f1 + au_f1`, in [-1, 3].
    pub p_mtl: f64,
    /// Samples seen, and how many carried each label.
    pub samples: u64,
    pub valid_va: u64,
    pub valid_expr: u64,
}

impl MtlMetrics {
    /// "P_MTL 1.234 (CCC V 0.5 A 0.6, F1 expr 0.4, F1 AU 0.5)": one log line.
    pub fn summary(&self) -> String {
        format!(
            "P_MTL {:.3} (CCC V {:.3} A {:.3}, F1 expr {:.3}, F1 AU {:.3})",
            self.p_mtl,
            self.ccc_valence.unwrap_or(0.0),
            self.ccc_arousal.unwrap_or(0.0),
            self.expr_f1,
            self.au_f1
        )
    }
}

/// Accumulates an evaluation pass batch by batch: sufficient statistics only
/// (CCC sums, confusion counts), so memory does not grow with the set.
#[derive(Clone, Debug)]
pub struct MtlEvaluator {
    valence: CccAccumulator,
    arousal: CccAccumulator,
    expr: Vec<Counts>,
    expr_correct: (u64, u64),
    au: Vec<Counts>,
    samples: u64,
}

impl MtlEvaluator {
    pub fn new(num_expressions: usize, num_aus: usize) -> Self {
        MtlEvaluator {
            valence: CccAccumulator::default(),
            arousal: CccAccumulator::default(),
            expr: vec![Counts::default(); num_expressions],
            expr_correct: (0, 0),
            au: vec![Counts::default(); num_aus],
            samples: 0,
        }
    }

    /// The ABAW MTL sizes: 8 expressions, 12 AUs.
    pub fn abaw() -> Self {
        Self::new(NUM_EXPRESSIONS, NUM_AUS)
    }

    /// Adds `n` samples. Every slice must have `n` rows of its width; a bad
    /// length or an out-of-range label is an error and leaves the evaluator
    /// unchanged.
    pub fn add_batch(&mut self, n: usize, pred: MtlPredictions, labels: MtlLabels) -> Result<()> {
        let (c, a) = (self.expr.len(), self.au.len());
        let checks = [
            ("va predictions", pred.va.len(), n * 2),
            ("expression logits", pred.expr_logits.len(), n * c),
            ("AU logits", pred.au_logits.len(), n * a),
            ("va labels", labels.va.len(), n * 2),
            ("expression labels", labels.expr.len(), n),
            ("AU labels", labels.au.len(), n * a),
        ];
        for (what, got, want) in checks {
            if got != want {
                return Err(Error::shape(
                    "MtlEvaluator::add_batch",
                    format!("{what}: {got} values, expected {want} for a batch of {n}"),
                ));
            }
        }
        // Validate labels into scratch copies first so a bad batch adds nothing.
        let mut expr = self.expr.clone();
        let mut correct = self.expr_correct;
        add_expr(&mut expr, &mut correct, pred.expr_logits, labels.expr)?;
        let mut au = self.au.clone();
        add_au(&mut au, pred.au_logits, labels.au)?;
        self.expr = expr;
        self.expr_correct = correct;
        self.au = au;
        for (p, t) in pred.va.chunks_exact(2).zip(labels.va.chunks_exact(2)) {
            self.valence.push(p[0], t[0]);
            self.arousal.push(p[1], t[1]);
        }
        self.samples += n as u64;
        Ok(())
    }

    pub fn finish(&self) -> MtlMetrics {
        let ccc_valence = self.valence.value();
        let ccc_arousal = self.arousal.value();
        let ccc_mean = (ccc_valence.unwrap_or(0.0) + ccc_arousal.unwrap_or(0.0)) / 2.0;
        let expr_f1_per_class: Vec<f64> = self.expr.iter().map(Counts::f1).collect();
        let au_f1_per_au: Vec<f64> = self.au.iter().map(Counts::f1).collect();
        let expr_f1 = mean(expr_f1_per_class.iter().copied());
        let au_f1 = mean(au_f1_per_au.iter().copied());
        let (right, valid) = self.expr_correct;
        MtlMetrics {
            ccc_valence,
            ccc_arousal,
            ccc_mean,
            expr_f1,
            expr_f1_per_class,
            expr_accuracy: (valid > 0).then(|| right as f64 / valid as f64),
            au_f1,
            au_f1_per_au,
            p_mtl: ccc_mean + expr_f1 + au_f1,
            samples: self.samples,
            valid_va: self.valence.n.max(self.arousal.n),
            valid_expr: valid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn ccc_hand_computed() {
        // pred [1,2,3], target [1,2,4]: means 2 and 7/3, var_p 2/3, var_t 14/9,
        // cov 1, so CCC = 2 / (2/3 + 14/9 + 1/9) = 2 / (21/9) = 6/7.
        let c = ccc(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]).unwrap();
        assert_abs_diff_eq!(c, 6.0 / 7.0, epsilon = 1e-12);
        // Perfect agreement is 1, sign flip about a zero mean is -1.
        assert_abs_diff_eq!(
            ccc(&[0.1, -0.3], &[0.1, -0.3]).unwrap(),
            1.0,
            epsilon = 1e-9
        );
        assert_abs_diff_eq!(
            ccc(&[0.5, -0.5], &[-0.5, 0.5]).unwrap(),
            -1.0,
            epsilon = 1e-9
        );
    }

    #[test]
    fn ccc_skips_invalid_and_needs_two_samples() {
        let with_invalid = ccc(&[1.0, 9.0, 2.0, 3.0], &[1.0, -5.0, 2.0, 4.0]).unwrap();
        assert_abs_diff_eq!(with_invalid, 6.0 / 7.0, epsilon = 1e-12);
        assert_eq!(ccc(&[0.3, 0.2], &[0.1, -5.0]), None);
        assert_eq!(ccc(&[], &[]), None);
        // Two identical constants: 0/0, undefined.
        assert_eq!(ccc(&[0.2, 0.2], &[0.2, 0.2]), None);
        // A constant prediction against a varying target is defined: 0.
        assert_eq!(ccc(&[0.0, 0.0], &[1.0, -1.0]), Some(0.0));
    }

    #[test]
    fn au_f1_hand_computed_with_invalid_entries() {
        // Two AUs, four samples.
        // AU0: logits +,+,-,+ targets 1,0,1,-1 -> tp1 fp1 fn1 -> 2/4 = 0.5
        // AU1: logits -,-,-,- targets 0,0,-1,0 -> nothing positive -> 0
        let logits = [2.0, -1.0, 0.5, -1.0, -3.0, -1.0, 1.0, -2.0];
        let targets = [1.0, 0.0, 0.0, 0.0, 1.0, -1.0, -1.0, 0.0];
        assert_eq!(au_f1(&logits, &targets, 2).unwrap(), vec![0.5, 0.0]);
        // Logit exactly 0 is probability 0.5, which is not "> 0.5".
        assert_eq!(au_f1(&[0.0], &[1.0], 1).unwrap(), vec![0.0]);
        assert!(au_f1(&[1.0], &[2.0], 1).is_err());
        assert!(au_f1(&[1.0, 2.0, 3.0], &[1.0, 0.0, 1.0], 2).is_err());
    }

    #[test]
    fn expr_macro_f1_hand_computed() {
        // 3 classes; argmax predictions 0,1,1,2,0 against targets 0,1,2,2,-1.
        // class0: tp1 -> 1; class1: tp1 fp1 -> 2/3; class2: tp1 fn1 -> 2/3.
        let logits = [
            5.0, 0.0, 0.0, //
            0.0, 5.0, 0.0, //
            0.0, 5.0, 1.0, //
            0.0, 1.0, 5.0, //
            9.0, 0.0, 0.0,
        ];
        let targets = [0.0, 1.0, 2.0, 2.0, -1.0];
        let f1 = expr_macro_f1(&logits, &targets, 3).unwrap();
        assert_abs_diff_eq!(f1, (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0, epsilon = 1e-12);
        // A 4th class seen in neither targets nor predictions scores 0 and
        // still counts in the mean (zero_division=0 over a fixed label set).
        let logits4: Vec<f32> = logits
            .chunks(3)
            .flat_map(|r| [r[0], r[1], r[2], -9.0])
            .collect();
        let f1_4 = expr_macro_f1(&logits4, &targets, 4).unwrap();
        assert_abs_diff_eq!(f1_4, f1 * 3.0 / 4.0, epsilon = 1e-12);
        assert!(expr_macro_f1(&[0.0, 1.0], &[2.0], 2).is_err());
        assert!(expr_macro_f1(&[0.0, 1.0], &[0.5], 2).is_err());
    }

    #[test]
    fn evaluator_matches_scikit_learn() {
        // Expected values from Python (scikit-learn with zero_division=0):
        //
        //   import numpy as np
        //   from sklearn.metrics import f1_score, accuracy_score
        //   # va_p, va_t [12,2]; expr_l [12,8]; expr_t [12]; au_l, au_t [12,3]:
        //   # the EV_* arrays below (values rounded to f32 first).
        //   def ccc(p, t):
        //       m = t != -5; p, t = p[m], t[m]
        //       return 2 * np.cov(p, t, bias=True)[0, 1] / (
        //           p.var() + t.var() + (p.mean() - t.mean()) ** 2)
        //   ev = expr_t != -1; yp = expr_l.argmax(1)
        //   f1_score(expr_t[ev], yp[ev], labels=range(8), average="macro", zero_division=0)
        //   accuracy_score(expr_t[ev], yp[ev])
        //   for k in range(3):
        //       v = au_t[:, k] != -1
        //       f1_score(au_t[v, k], au_l[v, k] > 0, zero_division=0)
        //
        // Classes 6 and 7 have no support (7 is predicted once): per-class F1
        // [0.667 0.5 0 0.75 0 1 0 0]. Without labels=range(8) scikit-learn
        // would average over the 6 classes seen instead (0.4167).
        let (n, c, a) = (EV_N, 8, 3);
        let mut ev = MtlEvaluator::new(c, a);
        // Two uneven batches: accumulation must not depend on batching.
        for (lo, hi) in [(0, 5), (5, n)] {
            let m = hi - lo;
            ev.add_batch(
                m,
                MtlPredictions {
                    va: &EV_VA_PRED[lo * 2..hi * 2],
                    expr_logits: &EV_EXPR_LOGITS[lo * c..hi * c],
                    au_logits: &EV_AU_LOGITS[lo * a..hi * a],
                },
                MtlLabels {
                    va: &EV_VA_TRUE[lo * 2..hi * 2],
                    expr: &EV_EXPR_TRUE[lo..hi],
                    au: &EV_AU_TRUE[lo * a..hi * a],
                },
            )
            .unwrap();
        }
        let m = ev.finish();
        let close = |x: f64, y: f64| assert_abs_diff_eq!(x, y, epsilon = 1e-6);
        close(m.ccc_valence.unwrap(), SK_CCC_V);
        close(m.ccc_arousal.unwrap(), SK_CCC_A);
        close(m.expr_f1, SK_EXPR_F1);
        close(m.expr_accuracy.unwrap(), SK_EXPR_ACC);
        for (got, want) in m.au_f1_per_au.iter().zip(SK_AU_F1) {
            close(*got, want);
        }
        close(m.au_f1, SK_AU_F1.iter().sum::<f64>() / 3.0);
        close(
            m.p_mtl,
            (SK_CCC_V + SK_CCC_A) / 2.0 + SK_EXPR_F1 + SK_AU_F1.iter().sum::<f64>() / 3.0,
        );
        assert_eq!(m.samples, n as u64);
    }

    #[test]
    fn evaluator_rejects_bad_batches_without_side_effects() {
        let mut ev = MtlEvaluator::new(2, 1);
        let good = MtlPredictions {
            va: &[0.1, 0.2, 0.3, 0.4],
            expr_logits: &[1.0, 0.0, 0.0, 1.0],
            au_logits: &[1.0, -1.0],
        };
        let labels = MtlLabels {
            va: &[0.1, 0.2, 0.3, 0.4],
            expr: &[0.0, 1.0],
            au: &[1.0, 0.0],
        };
        let short = MtlPredictions {
            va: &[0.1, 0.2],
            ..good
        };
        let err = ev.add_batch(2, short, labels).unwrap_err().to_string();
        assert!(err.contains("va predictions"), "{err}");
        let bad_label = MtlLabels {
            expr: &[0.0, 7.0],
            ..labels
        };
        assert!(ev.add_batch(2, good, bad_label).is_err());
        assert_eq!(ev.finish().samples, 0);
        ev.add_batch(2, good, labels).unwrap();
        let m = ev.finish();
        assert_eq!(m.expr_f1, 1.0);
        assert_eq!(m.au_f1, 1.0);
        assert_eq!(m.ccc_mean, 1.0);
        assert_eq!(m.p_mtl, 3.0);
    }

    #[test]
    fn empty_evaluation_is_zero_not_nan() {
        let m = MtlEvaluator::abaw().finish();
        assert_eq!((m.ccc_valence, m.expr_accuracy), (None, None));
        assert_eq!(m.p_mtl, 0.0);
        assert_eq!(m.au_f1_per_au.len(), NUM_AUS);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"ccc_valence\":null"), "{json}");
    }

    // Fixture for evaluator_matches_scikit_learn (generated with numpy seed 7).
    const EV_N: usize = 12;
    const EV_VA_PRED: [f32; 24] = [
        0.20, 0.42, -0.43, -0.49, -0.25, 0.48, -0.46, -0.14, 0.06, -0.28, 0.08, -0.51, -0.30, 0.20,
        -0.17, 0.03, 0.63, 0.02, -0.22, 0.61, 0.07, -0.87, 0.40, -0.51,
    ];
    const EV_VA_TRUE: [f32; 24] = [
        0.25, 0.79, 0.55, -0.55, -0.40, 0.75, -5.00, -5.00, 0.59, -0.06, -0.39, -0.44, -0.49,
        -0.11, 0.01, 0.11, 0.99, -5.00, 0.24, 0.98, -0.57, -0.68, 0.23, -0.91,
    ];
    const EV_EXPR_LOGITS: [f32; 96] = [
        -0.19, 0.68, -0.07, 0.67, 1.44, -0.68, 0.20, -0.46, 0.13, -1.19, -0.58, -0.20, 0.90, 3.65,
        -1.32, -0.79, 0.65, -1.99, -0.46, -0.10, 1.26, 0.69, -0.33, -0.37, -0.25, 1.52, -0.43,
        -0.30, 0.35, -0.12, -0.20, -1.11, -0.01, -0.44, 1.17, 3.15, -0.02, 0.67, -0.34, 1.05,
        -0.01, 0.58, -1.29, 2.85, -1.69, -2.04, -0.30, 9.00, 0.16, 2.24, -0.83, -0.62, 0.21, 0.49,
        -0.18, -0.21, 3.20, 0.52, -1.03, -0.08, 0.04, -1.05, 0.26, -0.86, 0.97, 0.19, 0.09, 1.91,
        -0.12, -2.00, -1.13, 0.36, -2.13, 0.85, -1.75, 0.76, -0.85, 0.78, 0.13, -1.54, 1.25, 1.44,
        -0.07, 2.23, -0.16, -0.98, 1.10, -0.54, -0.05, 1.71, -0.63, -1.28, 1.26, -0.15, 0.97, 0.01,
    ];
    const EV_EXPR_TRUE: [f32; 12] = [3.0, 5.0, -1.0, 2.0, 3.0, 3.0, 0.0, 0.0, 3.0, -1.0, 3.0, 1.0];
    const EV_AU_LOGITS: [f32; 36] = [
        -0.96, 1.53, 0.78, 0.07, -0.75, 1.25, -0.54, 0.66, -0.31, -0.42, 1.34, -0.51, 0.29, -0.03,
        0.36, -0.51, 0.63, -0.30, -0.15, 0.02, 1.18, 1.48, 1.18, -0.56, -0.58, 0.95, 1.77, 0.66,
        1.34, 0.78, 0.83, 1.72, -0.46, 2.31, -1.25, 0.86,
    ];
    const EV_AU_TRUE: [f32; 36] = [
        1.0, 1.0, 1.0, -1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 1.0, 1.0, -1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0,
    ];
    // sklearn 1.9.1, numpy 2.4.6
    const SK_CCC_V: f64 = 0.3678789408346369;
    const SK_CCC_A: f64 = 0.8894994508714548;
    const SK_EXPR_F1: f64 = 0.3645833333333333;
    const SK_EXPR_ACC: f64 = 0.6;
    const SK_AU_F1: [f64; 3] = [0.6, 0.7142857142857143, 0.6666666666666666];
}
