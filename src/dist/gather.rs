//! Evaluation split across ranks. CCC and F1 are not means of per-sample
//! terms, so the mean of per-shard scores is not the score of the set: the
//! metrics are computed once, on every rank's predictions gathered in the
//! single-process order, with the same [`MtlEvaluator`] a single process uses.

use crate::metrics::{MtlEvaluator, MtlLabels, MtlMetrics, MtlPredictions};
use crate::{Error, Result};

/// One rank's evaluation rows, row-major, with each row's position in the
/// single-process evaluation order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RankPredictions {
    pub positions: Vec<usize>,
    /// `[n, 2]` valence, arousal.
    pub va: Vec<f32>,
    /// `[n, C]` expression logits.
    pub expr_logits: Vec<f32>,
    /// `[n, A]` AU logits.
    pub au_logits: Vec<f32>,
    /// Targets as the dataset gives them (`[n, 2]`, `[n]`, `[n, A]`).
    pub va_labels: Vec<f32>,
    pub expr_labels: Vec<f32>,
    pub au_labels: Vec<f32>,
}

impl RankPredictions {
    /// The rows as bytes for an all-gather: each array as `len:u64` and its
    /// values (positions as u64, the rest as f32), little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((self.positions.len() as u64).to_le_bytes());
        for &p in &self.positions {
            out.extend((p as u64).to_le_bytes());
        }
        for v in self.arrays() {
            out.extend((v.len() as u64).to_le_bytes());
            for x in v {
                out.extend(x.to_le_bytes());
            }
        }
        out
    }

    /// Reads what [`RankPredictions::to_bytes`] wrote.
    pub fn from_bytes(mut bytes: &[u8]) -> Result<RankPredictions> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
            if bytes.len() < n {
                return Err(Error::Dist(format!(
                    "gathered predictions truncated: {n} bytes wanted, {} left",
                    bytes.len()
                )));
            }
            let (head, rest) = bytes.split_at(n);
            *bytes = rest;
            Ok(head)
        }
        fn word(bytes: &mut &[u8]) -> Result<u64> {
            Ok(u64::from_le_bytes(
                take(bytes, 8)?.try_into().expect("8 bytes"),
            ))
        }
        let n = word(&mut bytes)? as usize;
        let positions = (0..n)
            .map(|_| word(&mut bytes).map(|p| p as usize))
            .collect::<Result<_>>()?;
        let mut r = RankPredictions {
            positions,
            ..RankPredictions::default()
        };
        for v in r.arrays_mut() {
            let n = word(&mut bytes)? as usize;
            *v = take(&mut bytes, n.saturating_mul(4))?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
        }
        Ok(r)
    }

    fn arrays(&self) -> [&Vec<f32>; 6] {
        [
            &self.va,
            &self.expr_logits,
            &self.au_logits,
            &self.va_labels,
            &self.expr_labels,
            &self.au_labels,
        ]
    }

    fn arrays_mut(&mut self) -> [&mut Vec<f32>; 6] {
        [
            &mut self.va,
            &mut self.expr_logits,
            &mut self.au_logits,
            &mut self.va_labels,
            &mut self.expr_labels,
            &mut self.au_labels,
        ]
    }
}

/// The metrics of the whole evaluation set from every rank's rows (indexed
/// by rank). The positions must cover `0..total` exactly once: a row seen
/// twice (a padded shard) or never would bias the score, so both are errors.
pub fn gather_metrics(
    ranks: &[RankPredictions],
    num_expressions: usize,
    num_aus: usize,
) -> Result<MtlMetrics> {
    let total: usize = ranks.iter().map(|r| r.positions.len()).sum();
    // owner[pos] = (rank, row) of the row at global position pos.
    let mut owner: Vec<Option<(usize, usize)>> = vec![None; total];
    for (rank, r) in ranks.iter().enumerate() {
        for (row, &pos) in r.positions.iter().enumerate() {
            let slot = owner.get_mut(pos).ok_or_else(|| {
                Error::Dist(format!(
                    "rank {rank}: evaluation position {pos} is outside 0..{total}"
                ))
            })?;
            if let Some((other, _)) = *slot {
                return Err(Error::Dist(format!(
                    "evaluation position {pos} predicted by rank {other} and rank {rank}"
                )));
            }
            *slot = Some((rank, row));
        }
    }
    let mut all = RankPredictions::default();
    let (c, a) = (num_expressions, num_aus);
    for (pos, slot) in owner.iter().enumerate() {
        // Positions are unique and there are `total` of them, so none is missing.
        let (rank, row) = slot.expect("every position filled");
        let r = &ranks[rank];
        let rows = |v: &[f32], w: usize| -> Result<Vec<f32>> {
            v.get(row * w..(row + 1) * w).map(<[f32]>::to_vec).ok_or_else(|| {
                Error::Dist(format!(
                    "rank {rank}: row {row} (position {pos}) is missing from a [n, {w}] array of {} values",
                    v.len()
                ))
            })
        };
        all.va.extend(rows(&r.va, 2)?);
        all.expr_logits.extend(rows(&r.expr_logits, c)?);
        all.au_logits.extend(rows(&r.au_logits, a)?);
        all.va_labels.extend(rows(&r.va_labels, 2)?);
        all.expr_labels.extend(rows(&r.expr_labels, 1)?);
        all.au_labels.extend(rows(&r.au_labels, a)?);
    }
    let mut ev = MtlEvaluator::new(c, a);
    ev.add_batch(
        total,
        MtlPredictions {
            va: &all.va,
            expr_logits: &all.expr_logits,
            au_logits: &all.au_logits,
        },
        MtlLabels {
            va: &all.va_labels,
            expr: &all.expr_labels,
            au: &all.au_labels,
        },
    )?;
    Ok(ev.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    const C: usize = 3;
    const A: usize = 2;

    /// n rows whose valence prediction tracks the target with a per-row
    /// offset that grows with the position, so shards of contiguous rows
    /// have different means and spreads: exactly where CCC per shard fails.
    fn rows(n: usize) -> RankPredictions {
        let mut rng = Rng::new(5);
        let mut r = RankPredictions::default();
        for i in 0..n {
            let t = (i as f32 / n as f32) * 1.6 - 0.8;
            let p = t * 0.5 + 0.3 * (i as f32 / n as f32) + 0.1 * rng.next_f64() as f32;
            r.positions.push(i);
            r.va.extend([p, -p]);
            r.va_labels.extend([t, if i % 7 == 0 { -5.0 } else { -t }]);
            let class = i % C;
            let guess = if rng.next_f64() < 0.6 {
                class
            } else {
                (class + 1) % C
            };
            r.expr_logits
                .extend((0..C).map(|k| if k == guess { 1.0 } else { 0.0 }));
            r.expr_labels.push(class as f32);
            r.au_logits.extend([rng.next_f64() as f32 - 0.5, 0.2]);
            r.au_labels.extend([(i % 2) as f32, ((i / 3) % 2) as f32]);
        }
        r
    }

    /// Rank r's rows of a global set, by the positions it owns.
    fn select(all: &RankPredictions, owned: &[usize]) -> RankPredictions {
        let pick = |v: &[f32], w: usize| -> Vec<f32> {
            owned
                .iter()
                .flat_map(|&i| v[i * w..(i + 1) * w].to_vec())
                .collect()
        };
        RankPredictions {
            positions: owned.to_vec(),
            va: pick(&all.va, 2),
            expr_logits: pick(&all.expr_logits, C),
            au_logits: pick(&all.au_logits, A),
            va_labels: pick(&all.va_labels, 2),
            expr_labels: pick(&all.expr_labels, 1),
            au_labels: pick(&all.au_labels, A),
        }
    }

    #[test]
    fn gathered_metrics_equal_single_process_while_shard_means_do_not() {
        let all = rows(90);
        let single = gather_metrics(std::slice::from_ref(&all), C, A).unwrap();
        let world = 3;
        // Contiguous 10-row slices of each 30-row global batch, as shards take.
        let shards: Vec<RankPredictions> = (0..world)
            .map(|r| {
                let owned: Vec<usize> = (0..90).filter(|i| (i % 30) / 10 == r).collect();
                select(&all, &owned)
            })
            .collect();
        let gathered = gather_metrics(&shards, C, A).unwrap();
        assert_eq!(gathered, single);
        let per_shard: Vec<MtlMetrics> = shards
            .iter()
            .map(|s| gather_metrics(std::slice::from_ref(&reindex(s)), C, A).unwrap())
            .collect();
        let mean_ccc = per_shard
            .iter()
            .map(|m| m.ccc_valence.unwrap())
            .sum::<f64>()
            / world as f64;
        let true_ccc = single.ccc_valence.unwrap();
        assert!(
            (mean_ccc - true_ccc).abs() > 0.01,
            "mean of shard CCCs {mean_ccc} vs gathered {true_ccc}"
        );
    }

    /// A shard's rows as a set of their own (positions 0..n).
    fn reindex(s: &RankPredictions) -> RankPredictions {
        RankPredictions {
            positions: (0..s.positions.len()).collect(),
            ..s.clone()
        }
    }

    #[test]
    fn duplicate_or_out_of_range_positions_are_refused() {
        let all = rows(6);
        let a = select(&all, &[0, 1, 2]);
        let b = select(&all, &[2, 3, 4]);
        let e = gather_metrics(&[a.clone(), b], C, A)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("position 2") && e.contains("rank 0") && e.contains("rank 1"),
            "{e}"
        );
        let far = RankPredictions {
            positions: vec![3, 4, 9],
            ..select(&all, &[3, 4, 5])
        };
        let e = gather_metrics(&[a, far], C, A).unwrap_err().to_string();
        assert!(e.contains("rank 1") && e.contains("position 9"), "{e}");
    }

    #[test]
    fn predictions_survive_the_bytes_of_an_all_gather() {
        let r = rows(9);
        assert_eq!(RankPredictions::from_bytes(&r.to_bytes()).unwrap(), r);
        let cut = r.to_bytes();
        let e = RankPredictions::from_bytes(&cut[..cut.len() - 1]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
