//! How well the generator obeys the requested expression, as read by a
//! separately trained multi-task network (the judge: not the discriminator,
//! which was trained together with the generator and could share its blind
//! spots), and, for model selection during training, by the discriminator's
//! own expression head (the judge must never steer which generator is kept).

use super::condition::Conditions;
use super::GanTrainer;
use crate::train::{trainer::infer, Trainer};
use crate::{DType, Error, Result, Rng, Tensor};
use serde::Serialize;

/// Noise seeds: fixed, so every checkpoint of a run is read on the same
/// faces; different, so the selection set and the judged set are disjoint.
pub const JUDGE_SEED: u64 = 101;
pub const SELECT_SEED: u64 = 202;

/// Requested expression (row) vs the classifier's argmax (column), the
/// totals, and how much the faces of one expression differ.
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    pub confusion: Vec<Vec<usize>>,
    pub matched: usize,
    pub total: usize,
    /// matched / total; chance is 1 / n_expr.
    pub rate: f64,
    /// Mean softmax probability of the requested expression: how sure the
    /// classifier is, where `rate` only counts argmaxes.
    pub confidence: f64,
    /// Mean squared pixel difference (images in [-1, 1]) between consecutive
    /// faces of the same expression, i.e. of the same condition and different
    /// noise: 0 when the noise changes nothing (collapse to one face).
    pub diversity: f64,
}

/// Index of the largest score.
fn argmax(scores: &[f32]) -> usize {
    scores
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Softmax probability of class `e` (in f64, shifted by the largest score).
fn probability(scores: &[f32], e: usize) -> f64 {
    let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = scores.iter().map(|&s| (s as f64 - top).exp()).sum();
    (scores[e] as f64 - top).exp() / sum
}

/// Generates `per_class` faces for each expression's prototype condition
/// (noise from `noise`, in chunks of up to 64 per expression, generator in
/// eval mode) and lets `classify` turn each chunk into expression logits
/// [n, n_expr].
fn agreement_with(
    gan: &mut GanTrainer,
    per_class: usize,
    noise: &mut Rng,
    mut classify: impl FnMut(&mut GanTrainer, &Tensor) -> Result<Vec<f32>>,
) -> Result<Agreement> {
    let g = gan.config.generator.clone();
    let mut confusion = vec![vec![0usize; g.n_expr]; g.n_expr];
    let (mut spread, mut pairs, mut sure) = (0.0, 0usize, 0.0);
    const CHUNK: usize = 64;
    for (e, row) in confusion.iter_mut().enumerate() {
        let mut left = per_class;
        while left > 0 {
            let n = left.min(CHUNK);
            left -= n;
            let rows = vec![gan.prototypes[e].clone(); n];
            let cond = Conditions::from_rows(&rows, g.n_aus, g.n_expr)?;
            let z = Tensor::randn([n, g.z_dim], 1.0, DType::F32, noise);
            let images = gan.generate(&z, &cond.input, false)?;
            let logits = classify(gan, &images)?;
            for scores in logits.chunks(g.n_expr) {
                row[argmax(scores)] += 1;
                sure += probability(scores, e);
            }
            let pixels = images.try_to_f64_vec()?;
            let size = pixels.len() / n;
            for pair in pixels.chunks(size).collect::<Vec<_>>().windows(2) {
                let d = pair[0].iter().zip(pair[1]).map(|(a, b)| (a - b) * (a - b));
                spread += d.sum::<f64>() / size as f64;
                pairs += 1;
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
        confidence: sure / total.max(1) as f64,
        diversity: spread / pairs.max(1) as f64,
    })
}

/// The judge's reading of `per_class` faces per expression (noise seeded
/// with [`JUDGE_SEED`]).
pub fn judge_expressions(
    gan: &mut GanTrainer,
    judge: &mut Trainer,
    per_class: usize,
) -> Result<Agreement> {
    let g = &gan.config.generator;
    let jm = &judge.config.model;
    if jm.n_expr != g.n_expr || judge.config.data.image_size != g.image_size {
        return Err(Error::Config(format!(
            "judge: its model reads {} expressions at {} px, the generator makes {} at {} px",
            jm.n_expr, judge.config.data.image_size, g.n_expr, g.image_size
        )));
    }
    agreement_with(gan, per_class, &mut Rng::new(JUDGE_SEED), |_, images| {
        Ok(judge.infer(images)?.1)
    })
}

/// The discriminator's own expression head (eval mode: running statistics
/// of real faces, no dropout) on `per_class` faces per expression from the
/// noise seeded with [`SELECT_SEED`]: the figures model selection keeps the
/// best generator by (the share read as requested; the confidence breaks ties).
pub fn discriminator_agreement(gan: &mut GanTrainer, per_class: usize) -> Result<Agreement> {
    agreement_with(gan, per_class, &mut Rng::new(SELECT_SEED), |gan, images| {
        // Eval mode draws nothing from this generator.
        let mut unused = Rng::new(0);
        let (_, expr, _) = infer(
            &gan.discriminator,
            &gan.d_params,
            &mut gan.d_buffers,
            &mut unused,
            images,
        )?;
        Ok(expr)
    })
}
