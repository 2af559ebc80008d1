//! The order in which an epoch visits samples. Epoch e's order is a pure
//! function of (seed, e), so a run resumed at any step sees the same batches.

use super::labels::Sample;
use crate::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// File order every epoch (evaluation).
    Sequential,
    /// A fresh permutation per epoch.
    #[default]
    Shuffle,
    /// Inverse-frequency weighted sampling with replacement, so rare
    /// expressions and AUs are seen more often; epoch length stays n.
    Balanced,
}

/// Upper bound on a sample's weight relative to a common one, so a handful of
/// very rare frames are not repeated dozens of times per epoch.
const MAX_WEIGHT: f64 = 10.0;

/// Independent, reproducible random stream for (`domain`, `a`, `b`) under `seed`.
pub(crate) fn stream(seed: u64, domain: u64, a: u64, b: u64) -> Rng {
    Rng::new(seed ^ domain).fork(a).fork(b)
}

const ORDER_DOMAIN: u64 = 0x5EED_00D3;

pub struct Sampler {
    kind: SamplerKind,
    n: usize,
    /// Cumulative weights, for `Balanced` only.
    cumulative: Vec<f64>,
}

impl Sampler {
    pub fn new(
        kind: SamplerKind,
        samples: &[Sample],
        num_expressions: usize,
        num_aus: usize,
    ) -> Sampler {
        let cumulative = if kind == SamplerKind::Balanced {
            let w = balance_weights(samples, num_expressions, num_aus);
            w.iter()
                .scan(0.0, |acc, &x| {
                    *acc += x;
                    Some(*acc)
                })
                .collect()
        } else {
            Vec::new()
        };
        Sampler {
            kind,
            n: samples.len(),
            cumulative,
        }
    }

    /// Dataset indices in the order epoch `epoch` visits them (length n).
    pub fn epoch_order(&self, seed: u64, epoch: u64) -> Vec<usize> {
        let mut rng = stream(seed, ORDER_DOMAIN, epoch, 0);
        match self.kind {
            SamplerKind::Sequential => (0..self.n).collect(),
            SamplerKind::Shuffle => {
                let mut v: Vec<usize> = (0..self.n).collect();
                rng.shuffle(&mut v);
                v
            }
            SamplerKind::Balanced => {
                let total = self.cumulative.last().copied().unwrap_or(0.0);
                (0..self.n)
                    .map(|_| {
                        let t = rng.next_f64() * total;
                        self.cumulative.partition_point(|&c| c <= t).min(self.n - 1)
                    })
                    .collect()
            }
        }
    }
}

/// A sample's weight: the largest inverse-frequency score among its labels
/// (its expression class, each AU it shows), relative to the average class,
/// at least 1 and at most [`MAX_WEIGHT`].
pub fn balance_weights(samples: &[Sample], num_expressions: usize, num_aus: usize) -> Vec<f64> {
    let mut expr_count = vec![0usize; num_expressions];
    let mut au_count = vec![0usize; num_aus];
    for s in samples {
        if let Some(e) = s.expr {
            expr_count[e as usize] += 1;
        }
        if let Some(a) = &s.aus {
            for (c, &v) in au_count.iter_mut().zip(a) {
                *c += v as usize;
            }
        }
    }
    let score = |counts: &[usize]| -> Vec<f64> {
        let seen: Vec<usize> = counts.iter().copied().filter(|&c| c > 0).collect();
        let mean = seen.iter().sum::<usize>() as f64 / seen.len().max(1) as f64;
        counts
            .iter()
            .map(|&c| if c > 0 { mean / c as f64 } else { 1.0 })
            .collect()
    };
    let (es, aus) = (score(&expr_count), score(&au_count));
    samples
        .iter()
        .map(|s| {
            let mut w: f64 = 1.0;
            if let Some(e) = s.expr {
                w = w.max(es[e as usize]);
            }
            if let Some(a) = &s.aus {
                for (k, &v) in a.iter().enumerate() {
                    if v == 1 {
                        w = w.max(aus[k]);
                    }
                }
            }
            w.min(MAX_WEIGHT)
        })
        .collect()
}
