//! How well the generator obeys the requested expression, as read by a
//! separately trained multi-task network (not the discriminator, which was
//! trained together with the generator and could share its blind spots).

use super::condition::Conditions;
use super::GanTrainer;
use crate::train::Trainer;
use crate::{Error, Result};
use serde::Serialize;

/// Requested expression (row) vs the judge's argmax (column), and the totals.
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    pub confusion: Vec<Vec<usize>>,
    pub matched: usize,
    pub total: usize,
    /// matched / total; chance is 1 / n_expr.
    pub rate: f64,
}

/// Generates `per_class` faces for each expression's prototype condition
/// (fresh noise each, generator in eval mode) and lets `judge` classify them.
pub fn judge_expressions(
    gan: &mut GanTrainer,
    judge: &mut Trainer,
    per_class: usize,
) -> Result<Agreement> {
    let g = gan.config.generator.clone();
    let jm = &judge.config.model;
    if jm.n_expr != g.n_expr || judge.config.data.image_size != g.image_size {
        return Err(Error::Config(format!(
            "judge: its model reads {} expressions at {} px, the generator makes {} at {} px",
            jm.n_expr, judge.config.data.image_size, g.n_expr, g.image_size
        )));
    }
    let mut confusion = vec![vec![0usize; g.n_expr]; g.n_expr];
    const CHUNK: usize = 64;
    for (e, row) in confusion.iter_mut().enumerate() {
        let mut left = per_class;
        while left > 0 {
            let n = left.min(CHUNK);
            left -= n;
            let rows = vec![gan.prototypes[e].clone(); n];
            let cond = Conditions::from_rows(&rows, g.n_aus, g.n_expr)?;
            let z = gan.noise(n);
            let images = gan.generate(&z, &cond.input, false)?;
            let (_, logits, _) = judge.infer(&images)?;
            for scores in logits.chunks(g.n_expr) {
                let pred = scores
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                row[pred] += 1;
            }
        }
    }
    let matched = (0..g.n_expr).map(|e| confusion[e][e]).sum();
    let total = per_class * g.n_expr;
    Ok(Agreement {
        confusion,
        matched,
        total,
        rate: matched as f64 / total.max(1) as f64,
    })
}
