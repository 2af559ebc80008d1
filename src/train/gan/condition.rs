//! What the generator is asked for: one label row per image (valence,
//! arousal, AU intensities in [0, 1], expression), as the generator's input
//! vector and as the multi-task loss's targets.
//!
//! Training conditions are drawn from the fully labelled training frames, so
//! the generator sees the data's joint label distribution (a smiling face
//! also has positive valence). Per-expression prototypes (mean valence and
//! arousal, majority AU pattern) are kept in the checkpoint for sample grids
//! and for judging the generator without the data.

use crate::data::{Batch, Sample};
use crate::{DType, Error, Result, Rng, Tensor};

/// One requested face.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelRow {
    pub va: [f32; 2],
    /// One intensity in [0, 1] per AU; the loss target is `>= 0.5`.
    pub aus: Vec<f32>,
    pub expr: usize,
}

/// A batch of conditions in the two forms the GAN needs.
pub struct Conditions {
    /// [N, 2 + n_aus + n_expr]: generator input.
    pub input: Tensor,
    /// [N, 2], [N, n_aus] (0/1) and N classes: multi-task targets.
    pub va: Tensor,
    pub aus: Tensor,
    pub expr: Vec<i64>,
}

impl Conditions {
    pub fn from_rows(rows: &[LabelRow], n_aus: usize, n_expr: usize) -> Result<Conditions> {
        let n = rows.len();
        let (mut input, mut va, mut aus) = (
            Vec::with_capacity(n * (2 + n_aus + n_expr)),
            Vec::with_capacity(n * 2),
            Vec::with_capacity(n * n_aus),
        );
        for (i, r) in rows.iter().enumerate() {
            if r.aus.len() != n_aus || r.expr >= n_expr {
                return Err(Error::shape(
                    "gan conditions",
                    format!(
                        "row {i}: {} AUs and expression {}, expected {n_aus} AUs and an expression < {n_expr}",
                        r.aus.len(),
                        r.expr
                    ),
                ));
            }
            input.extend_from_slice(&r.va);
            input.extend_from_slice(&r.aus);
            input.extend((0..n_expr).map(|e| f32::from(u8::from(e == r.expr))));
            va.extend_from_slice(&r.va);
            aus.extend(r.aus.iter().map(|&a| f32::from(u8::from(a >= 0.5))));
        }
        Ok(Conditions {
            input: Tensor::from_vec(input, [n, 2 + n_aus + n_expr])?,
            va: Tensor::from_vec(va, [n, 2])?,
            aus: Tensor::from_vec(aus, [n, n_aus])?,
            expr: rows.iter().map(|r| r.expr as i64).collect(),
        })
    }
}

/// The fully labelled rows of a batch (no -5 / -1 markers), with their indices.
pub fn labelled_rows(batch: &Batch) -> Result<Vec<(usize, LabelRow)>> {
    let n_aus = batch.aus.dims()[1];
    let (va, aus) = (batch.va.to_vec::<f32>()?, batch.aus.to_vec::<f32>()?);
    Ok((0..batch.len())
        .filter_map(|i| {
            let v = [va[2 * i], va[2 * i + 1]];
            let a = &aus[i * n_aus..(i + 1) * n_aus];
            let e = batch.expr_class[i];
            let valid = v[0] > -2.0 && e >= 0 && a.iter().all(|&x| x >= 0.0);
            valid.then(|| {
                (
                    i,
                    LabelRow {
                        va: v,
                        aus: a.to_vec(),
                        expr: e as usize,
                    },
                )
            })
        })
        .collect())
}

/// The fully labelled training frames, to draw conditions from.
pub struct ConditionBank {
    rows: Vec<LabelRow>,
    pub n_aus: usize,
    pub n_expr: usize,
}

impl ConditionBank {
    /// Keeps the samples that carry all three labels; an error if none does.
    pub fn from_samples(samples: &[Sample], n_aus: usize, n_expr: usize) -> Result<Self> {
        let rows: Vec<LabelRow> = samples
            .iter()
            .filter_map(|s| match (s.va, s.expr, &s.aus) {
                (Some(va), Some(e), Some(a)) if a.len() == n_aus && (e as usize) < n_expr => {
                    Some(LabelRow {
                        va,
                        aus: a.iter().map(|&x| f32::from(x)).collect(),
                        expr: e as usize,
                    })
                }
                _ => None,
            })
            .collect();
        if rows.is_empty() {
            return Err(Error::Config(format!(
                "gan: none of the {} training samples carries valence/arousal, expression and all {n_aus} AUs; the generator needs fully labelled frames to draw conditions from",
                samples.len()
            )));
        }
        Ok(ConditionBank {
            rows,
            n_aus,
            n_expr,
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn draw(&self, n: usize, rng: &mut Rng) -> Vec<LabelRow> {
        (0..n)
            .map(|_| self.rows[rng.below(self.rows.len())].clone())
            .collect()
    }

    /// `n` rows drawn uniformly with replacement.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Result<Conditions> {
        Conditions::from_rows(&self.draw(n, rng), self.n_aus, self.n_expr)
    }

    /// `n` rows in pairs for the mode-seeking term: row i + n/2 repeats row
    /// i (i < n/2); an odd last row is a draw of its own.
    pub fn sample_paired(&self, n: usize, rng: &mut Rng) -> Result<Conditions> {
        let h = n / 2;
        let drawn = self.draw(n - h, rng);
        let rows: Vec<LabelRow> = drawn[..h].iter().chain(&drawn).cloned().collect();
        Conditions::from_rows(&rows, self.n_aus, self.n_expr)
    }

    /// Per expression: mean valence/arousal and the AUs active in at least
    /// half of its frames. An expression without frames gets zeros.
    pub fn prototypes(&self) -> Vec<LabelRow> {
        (0..self.n_expr)
            .map(|e| {
                let of: Vec<&LabelRow> = self.rows.iter().filter(|r| r.expr == e).collect();
                let k = of.len().max(1) as f32;
                let mean = |f: &dyn Fn(&LabelRow) -> f32| of.iter().map(|r| f(r)).sum::<f32>() / k;
                LabelRow {
                    va: [mean(&|r| r.va[0]), mean(&|r| r.va[1])],
                    aus: (0..self.n_aus)
                        .map(|a| f32::from(u8::from(mean(&|r| r.aus[a]) >= 0.5)))
                        .collect(),
                    expr: e,
                }
            })
            .collect()
    }
}

/// Prototypes as a [n_expr, 2 + n_aus] tensor (the checkpoint's `gan.prototypes`).
pub fn prototypes_to_tensor(protos: &[LabelRow], n_aus: usize) -> Result<Tensor> {
    let v: Vec<f32> = protos
        .iter()
        .flat_map(|r| r.va.iter().chain(&r.aus).copied())
        .collect();
    Tensor::from_vec(v, [protos.len(), 2 + n_aus])
}

/// Inverse of [`prototypes_to_tensor`]; row e is expression e.
pub fn prototypes_from_tensor(t: &Tensor) -> Result<Vec<LabelRow>> {
    let d = t.dims();
    if d.len() != 2 || d[1] < 2 {
        return Err(Error::shape(
            "gan prototypes",
            format!("expected [n_expr, 2 + n_aus], found {}", t.shape()),
        ));
    }
    let v = t.to_dtype(DType::F32).to_vec::<f32>()?;
    Ok(v.chunks(d[1])
        .enumerate()
        .map(|(e, c)| LabelRow {
            va: [c[0], c[1]],
            aus: c[2..].to_vec(),
            expr: e,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(va: Option<[f32; 2]>, expr: Option<u8>, aus: Option<Vec<u8>>) -> Sample {
        Sample::for_test(va, expr, aus)
    }

    #[test]
    fn rows_become_inputs_and_targets() {
        let rows = [
            LabelRow {
                va: [0.5, -0.25],
                aus: vec![0.0, 0.7, 0.4],
                expr: 2,
            },
            LabelRow {
                va: [-1.0, 1.0],
                aus: vec![1.0, 0.0, 0.5],
                expr: 0,
            },
        ];
        let c = Conditions::from_rows(&rows, 3, 4).unwrap();
        assert_eq!(
            c.input.to_vec::<f32>().unwrap(),
            [
                0.5, -0.25, 0.0, 0.7, 0.4, 0.0, 0.0, 1.0, 0.0, //
                -1.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0
            ]
        );
        assert_eq!(
            c.aus.to_vec::<f32>().unwrap(),
            [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
        );
        assert_eq!(c.expr, [2, 0]);
        let e = Conditions::from_rows(&rows, 3, 2)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("row 0") && e.contains("< 2"), "{e}");
    }

    #[test]
    fn bank_keeps_complete_rows_and_prototypes_roundtrip() {
        let s = [
            sample(Some([0.6, 0.2]), Some(1), Some(vec![1, 0])),
            sample(Some([0.2, 0.4]), Some(1), Some(vec![1, 1])),
            sample(Some([0.2, 0.4]), Some(1), Some(vec![0, 1])),
            sample(None, Some(0), Some(vec![1, 1])),
            sample(Some([0.1, 0.1]), None, Some(vec![1, 1])),
        ];
        let bank = ConditionBank::from_samples(&s, 2, 3).unwrap();
        assert_eq!(bank.len(), 3);
        let p = bank.prototypes();
        // Expression 1: mean VA, AUs active in at least half of its frames.
        assert!((p[1].va[0] - 1.0 / 3.0).abs() < 1e-6 && (p[1].va[1] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(p[1].aus, [1.0, 1.0]);
        assert_eq!((p[0].va, p[0].aus.clone()), ([0.0, 0.0], vec![0.0, 0.0]));
        let back = prototypes_from_tensor(&prototypes_to_tensor(&p, 2).unwrap()).unwrap();
        assert_eq!(back, p);
        let e = ConditionBank::from_samples(&s[3..], 2, 3)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("fully labelled"), "{e}");
        // Pairs: row i + n/2 repeats row i; an odd last row stands alone.
        for n in [4, 5] {
            let c = bank.sample_paired(n, &mut Rng::new(3)).unwrap();
            let input = c.input.to_vec::<f32>().unwrap();
            let w = input.len() / n;
            for i in 0..n / 2 {
                assert_eq!(
                    input[i * w..(i + 1) * w],
                    input[(i + n / 2) * w..(i + n / 2 + 1) * w]
                );
                assert_eq!(c.expr[i], c.expr[i + n / 2]);
            }
            assert_eq!(c.expr.len(), n);
        }
    }
}
