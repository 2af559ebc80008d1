//! Head outputs on the host (valence/arousal, expression and AU logits for
//! a set of rows) and their average over ensemble members. Members' outputs
//! are averaged where an average means something: valence and arousal as
//! values, expressions and AUs as probabilities (softmax, sigmoid). The
//! averages are turned back into logits (log-probabilities, log-odds) so
//! the metrics and the prediction writer read an ensemble like one model:
//! the arg-max of log p is the arg-max of p, and log-odds >= 0 is p >= 0.5.

use crate::{Error, Result};

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
