//! Softmax cross-entropy over class logits with ignored targets, class
//! weights and label smoothing, following PyTorch's `F.cross_entropy`.

mod cuda;

use super::record_scalar;
use crate::{Error, Result, Tape, Var};

/// Options of [`cross_entropy`]; the default matches PyTorch's except that
/// `ignore_index` is -1 (the ABAW marker for a missing expression label).
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyParams {
    /// Targets equal to this are skipped.
    pub ignore_index: i64,
    /// Per-class weights w[c] (length C), or None for all ones.
    pub class_weights: Option<Vec<f64>>,
    /// ε in [0, 1]: the target distribution is (1 - ε)·onehot + ε/C.
    pub label_smoothing: f64,
}

impl Default for CrossEntropyParams {
    fn default() -> Self {
        CrossEntropyParams {
            ignore_index: -1,
            class_weights: None,
            label_smoothing: 0.0,
        }
    }
}

/// Cross-entropy of logits [N, C] against class indices `targets` (length N,
/// each in 0..C or `ignore_index`).
///
/// With log-probabilities `lp`, weights `w` (ones when not given) and the
/// valid rows V, as PyTorch defines it:
/// `loss = (1-ε)·Σ_V w[y_i]·(-lp[i, y_i]) / W + (ε/C)·Σ_V Σ_c w[c]·(-lp[i, c]) / W`,
/// `W = Σ_V w[y_i]` (the number of valid rows when unweighted). When every
/// target is ignored (W = 0) the loss is 0 with zero gradient (PyTorch: NaN).
pub fn cross_entropy(
    tape: &Tape,
    logits: &Var,
    targets: &[i64],
    prm: &CrossEntropyParams,
) -> Result<Var> {
    const OP: &str = "cross_entropy";
    let &[n, c] = logits.dims() else {
        return Err(Error::shape(
            OP,
            format!("logits {} must be [N, C]", logits.shape()),
        ));
    };
    if targets.len() != n {
        return Err(Error::shape(
            OP,
            format!("{} targets for logits {}", targets.len(), logits.shape()),
        ));
    }
    if let Some(&bad) = targets
        .iter()
        .find(|&&y| y != prm.ignore_index && !(0..c as i64).contains(&y))
    {
        return Err(Error::arg(
            OP,
            format!(
                "target {bad} outside 0..{c} (ignore_index {})",
                prm.ignore_index
            ),
        ));
    }
    let eps = prm.label_smoothing;
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::arg(
            OP,
            format!("label_smoothing = {eps} must be in [0, 1]"),
        ));
    }
    let w = prm.class_weights.clone().unwrap_or_else(|| vec![1.0; c]);
    if w.len() != c || w.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(Error::arg(
            OP,
            format!("class_weights must be {c} finite values >= 0, found {w:?}"),
        ));
    }
    let labels: Vec<Option<usize>> = targets
        .iter()
        .map(|&y| (y != prm.ignore_index).then_some(y as usize))
        .collect();
    let total_w: f64 = labels.iter().flatten().map(|&y| w[y]).sum();
    let inv_w = if total_w > 0.0 { 1.0 / total_w } else { 0.0 };
    if let Some(dev) = logits.value().cuda_device().cloned() {
        let with_grad = tape.is_recording() && logits.requires_grad();
        let (loss, grad) =
            cuda::fused(&dev, OP, logits.value(), &labels, &w, eps, inv_w, with_grad)?;
        return tape.record(OP, &[logits], loss, move |seed, _| {
            let grad =
                grad.ok_or_else(|| Error::Tape(format!("{OP}: no gradient was computed")))?;
            let g =
                crate::ops::elementwise::cuda::scale_by_device_scalar(&dev, OP, &grad, seed, None)?;
            Ok(vec![Some(g)])
        });
    }
    let z = logits.value().to_f64_vec();
    // Row i's loss is Σ_c a[i, c]·(-lp[i, c]) with a[i, c] = (1-ε)·w[y]·[c = y] + (ε/C)·w[c].
    let coef = move |w: &[f64], y: usize, j: usize| {
        (1.0 - eps) * if j == y { w[y] } else { 0.0 } + eps / c as f64 * w[j]
    };
    let mut probs = vec![0.0; n * c];
    let mut sum = 0.0;
    for (i, y) in labels.iter().enumerate() {
        let Some(y) = *y else { continue };
        let row = &z[i * c..(i + 1) * c];
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        for j in 0..c {
            probs[i * c + j] = (row[j] - lse).exp();
            sum += coef(&w, y, j) * (lse - row[j]);
        }
    }
    record_scalar(tape, OP, &[logits], sum * inv_w, move |_| {
        // d/dz[i, j] of Σ_c a[i, c]·(-lp[i, c]) is A_i·softmax[i, j] - a[i, j], A_i = Σ_c a[i, c].
        let mut g = vec![0.0; n * c];
        for (i, y) in labels.iter().enumerate() {
            let Some(y) = *y else { continue };
            let a_sum: f64 = (0..c).map(|j| coef(&w, y, j)).sum();
            for j in 0..c {
                g[i * c + j] = (a_sum * probs[i * c + j] - coef(&w, y, j)) * inv_w;
            }
        }
        vec![Some(g)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng, Tensor};

    fn loss(z: &[f64], c: usize, y: &[i64], prm: &CrossEntropyParams) -> f64 {
        let tape = Tape::no_grad();
        let zv = tape.constant(Tensor::from_f64s(z, [z.len() / c, c], DType::F64).unwrap());
        cross_entropy(&tape, &zv, y, prm)
            .unwrap()
            .value()
            .item()
            .unwrap()
    }

    #[test]
    fn values_by_hand() {
        // Row 0: equal logits, -ln(1/2); row 1 ignored; row 2: -ln(e / (e + e^-3)) = ln(1 + e^-4).
        let d = CrossEntropyParams::default();
        let l = loss(&[0., 0., 5., 1., 1., -3.], 2, &[1, -1, 0], &d);
        let want = (2f64.ln() + (-4f64).exp().ln_1p()) / 2.0;
        assert!((l - want).abs() < 1e-15, "{l} vs {want}");
        assert_eq!(loss(&[1., 2., 3., 4.], 2, &[-1, -1], &d), 0.0);
        // Large logits stay finite.
        assert!((loss(&[1000., 0.], 2, &[1], &d) - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn matches_pytorch_values() {
        // import torch; F = torch.nn.functional
        // z = torch.sin(torch.arange(5*4, dtype=torch.float64)).reshape(5,4) * 3
        // y = torch.tensor([2, -1, 0, 3, 3]); w = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64)
        // for kw in [{}, dict(weight=w), dict(label_smoothing=0.2), dict(weight=w, label_smoothing=0.2)]:
        //     print(round(F.cross_entropy(z, y, ignore_index=-1, **kw).item(), 12))
        let z: Vec<f64> = (0..20).map(|i| (i as f64).sin() * 3.0).collect();
        let y = [2, -1, 0, 3, 3];
        let w = Some(vec![0.5, 1.0, 2.0, 1.5]);
        let cases = [
            (None, 0.0, PT[0]),
            (w.clone(), 0.0, PT[1]),
            (None, 0.2, PT[2]),
            (w, 0.2, PT[3]),
        ];
        for (class_weights, label_smoothing, want) in cases {
            let prm = CrossEntropyParams {
                ignore_index: -1,
                class_weights,
                label_smoothing,
            };
            let l = loss(&z, 4, &y, &prm);
            assert!((l - want).abs() < 1e-11, "{prm:?}: {l} vs {want}");
        }
    }

    const PT: [f64; 4] = [
        0.658287927007,
        0.748715016016,
        1.009732324129,
        1.034412594141,
    ];

    #[test]
    fn gradcheck_weights_smoothing_and_masks() {
        let mut rng = Rng::new(121);
        let z = Tensor::randn([5, 4], 2.0, DType::F64, &mut rng);
        let w = Some(vec![0.5, 1.0, 2.0, 1.5]);
        for (y, class_weights, label_smoothing) in [
            (vec![2, -1, 0, 3, 3], None, 0.0),
            (vec![2, -1, 0, 3, 3], w.clone(), 0.1),
            (vec![-1, -1, 1, -1, -1], w, 0.3),
            (vec![-1; 5], None, 0.1),
        ] {
            let prm = CrossEntropyParams {
                ignore_index: -1,
                class_weights,
                label_smoothing,
            };
            check_gradients(std::slice::from_ref(&z), 1e-6, |t, v| {
                cross_entropy(t, &v[0], &y, &prm)
            })
            .unwrap();
        }
    }

    #[test]
    fn bad_targets_and_options_are_errors() {
        let tape = Tape::no_grad();
        let z = tape.constant(Tensor::zeros([2, 3], DType::F32));
        let d = CrossEntropyParams::default();
        assert!(cross_entropy(&tape, &z, &[0], &d)
            .unwrap_err()
            .to_string()
            .contains("[2, 3]"));
        assert!(cross_entropy(&tape, &z, &[0, 3], &d)
            .unwrap_err()
            .to_string()
            .contains("target 3"));
        let w = CrossEntropyParams {
            class_weights: Some(vec![1.0; 2]),
            ..d.clone()
        };
        assert!(cross_entropy(&tape, &z, &[0, 1], &w).is_err());
        let s = CrossEntropyParams {
            label_smoothing: 1.5,
            ..d
        };
        assert!(cross_entropy(&tape, &z, &[0, 1], &s).is_err());
    }
}
