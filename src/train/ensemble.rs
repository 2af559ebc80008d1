//! Ensembles: several trained models scored as one. Members' outputs are
//! averaged where an average means something: valence and arousal as
//! values, expressions and AUs as probabilities (softmax, sigmoid). The
//! averages are turned back into logits (log-probabilities, log-odds) so
//! the metrics and the prediction writer read an ensemble like one model:
//! the arg-max of log p is the arg-max of p, and log-odds >= 0 is p >= 0.5.

use super::{TrainConfig, Trainer};
use crate::data::Loader;
use crate::metrics::MtlMetrics;
use crate::{Error, Result, Tensor};
use std::path::{Path, PathBuf};

/// Head outputs for `n` rows (frames or images), row-major: va [n, 2],
/// expression logits [n, n_expr], AU logits [n, n_aus].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeadOutputs {
    pub va: Vec<f32>,
    pub expr: Vec<f32>,
    pub au: Vec<f32>,
}

/// The average of `members` (all of one shape), as described above; one
/// member is returned as it is.
pub fn average(members: &[HeadOutputs], n_expr: usize) -> Result<HeadOutputs> {
    let [first, rest @ ..] = members else {
        return Err(Error::Config(
            "an ensemble needs at least one member".into(),
        ));
    };
    if rest.is_empty() {
        return Ok(first.clone());
    }
    if let Some(m) = rest.iter().find(|m| {
        (m.va.len(), m.expr.len(), m.au.len()) != (first.va.len(), first.expr.len(), first.au.len())
    }) {
        return Err(Error::shape(
            "ensemble::average",
            format!(
                "members disagree in size: va/expr/au {}/{}/{} and {}/{}/{}",
                first.va.len(),
                first.expr.len(),
                first.au.len(),
                m.va.len(),
                m.expr.len(),
                m.au.len()
            ),
        ));
    }
    let k = members.len() as f64;
    let mean = |f: &dyn Fn(&HeadOutputs, usize) -> f64, len: usize| -> Vec<f64> {
        (0..len)
            .map(|i| members.iter().map(|m| f(m, i)).sum::<f64>() / k)
            .collect()
    };
    let va = mean(&|m, i| m.va[i] as f64, first.va.len());
    let sigmoid = |l: f32| 1.0 / (1.0 + (-(l as f64)).exp());
    let au = mean(&|m, i| sigmoid(m.au[i]), first.au.len());
    // Softmax per row, in f64, shifted by the row's maximum.
    let softmax: Vec<Vec<f64>> = members
        .iter()
        .map(|m| {
            m.expr
                .chunks(n_expr.max(1))
                .flat_map(|row| {
                    let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let e: Vec<f64> = row.iter().map(|&l| (l as f64 - top).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    e.into_iter().map(move |v| v / sum)
                })
                .collect()
        })
        .collect();
    let expr = (0..first.expr.len())
        .map(|i| softmax.iter().map(|p| p[i]).sum::<f64>() / k)
        .collect::<Vec<_>>();
    Ok(HeadOutputs {
        va: va.into_iter().map(|v| v as f32).collect(),
        expr: expr.into_iter().map(|p| p.ln() as f32).collect(),
        au: au
            .into_iter()
            .map(|p| (p / (1.0 - p)).ln() as f32)
            .collect(),
    })
}

/// Frame models scored together.
pub struct Ensemble {
    members: Vec<Trainer>,
}

impl Ensemble {
    /// Loads every checkpoint; they must agree on the input size and the
    /// label set (the data they read and the outputs they average).
    pub fn load(paths: &[PathBuf]) -> Result<Ensemble> {
        let mut members = Vec::with_capacity(paths.len());
        for p in paths {
            let t = Trainer::from_checkpoint(p)?;
            if let Some(first) = members.first() {
                check_compatible(&paths[0], first, p, &t)?;
            }
            members.push(t);
        }
        if members.is_empty() {
            return Err(Error::Config("give at least one --checkpoint".into()));
        }
        Ok(Ensemble { members })
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The first member's config: data layout, input size, labels.
    pub fn config(&self) -> &TrainConfig {
        &self.members[0].config
    }

    /// Eval-mode outputs for images [N, H, W, 3].
    pub fn infer(&mut self, images: &Tensor) -> Result<HeadOutputs> {
        let outs = self
            .members
            .iter_mut()
            .map(|m| {
                let (va, expr, au) = m.infer(images)?;
                Ok(HeadOutputs { va, expr, au })
            })
            .collect::<Result<Vec<_>>>()?;
        average(&outs, self.config().data.label_set.num_expressions())
    }

    /// The ABAW metrics over one pass of `loader`.
    pub fn evaluate(&mut self, loader: &Loader) -> Result<MtlMetrics> {
        super::trainer::evaluate_with(loader, |images| self.infer(images))
    }
}

fn check_compatible(a: &Path, ta: &Trainer, b: &Path, tb: &Trainer) -> Result<()> {
    let (da, db) = (&ta.config.data, &tb.config.data);
    let what = if da.image_size != db.image_size {
        format!("data.image_size {} vs {}", da.image_size, db.image_size)
    } else if da.label_set != db.label_set {
        format!("data.label_set {:?} vs {:?}", da.label_set, db.label_set)
    } else {
        return Ok(());
    };
    Err(Error::Config(format!(
        "{} and {} cannot be ensembled: {what}",
        a.display(),
        b.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_by_hand() {
        let a = HeadOutputs {
            va: vec![0.2, -0.4],
            expr: vec![0.0, 0.0],
            au: vec![0.0, 2.0],
        };
        let b = HeadOutputs {
            va: vec![0.4, 0.0],
            expr: vec![(3.0f32).ln(), 0.0],
            au: vec![f32::INFINITY, -2.0],
        };
        let m = average(&[a.clone(), b], 2).unwrap();
        assert!((m.va[0] - 0.3).abs() < 1e-7 && (m.va[1] + 0.2).abs() < 1e-7);
        // Softmax (0.5, 0.5) and (0.75, 0.25) -> (0.625, 0.375).
        assert!((m.expr[0] - 0.625f32.ln()).abs() < 1e-6);
        assert!((m.expr[1] - 0.375f32.ln()).abs() < 1e-6);
        // Sigmoid (0.5, 1) -> 0.75, log-odds ln 3; sigmoid(2) and sigmoid(-2)
        // average to 0.5, log-odds 0.
        assert!((m.au[0] - 3f32.ln()).abs() < 1e-6);
        assert!(m.au[1].abs() < 1e-6);
        // One member passes through; identical members give that member's
        // decisions.
        assert_eq!(average(&[a.clone()], 2).unwrap(), a);
        let twice = average(&[a.clone(), a.clone()], 2).unwrap();
        assert_eq!(twice.va, a.va);
        assert!(twice.expr[0] == twice.expr[1]);
        assert!(average(&[], 2).is_err());
    }
}
