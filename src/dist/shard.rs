//! Each rank's part of an epoch. The global order is the single-process
//! loader's ([`Loader::epoch_order`]); every global batch of `batch_size` is
//! cut into `world_size` contiguous slices and rank r takes slice r, so the
//! union over ranks of a step's batches is exactly the batch one process
//! would have trained on. For a loss that is a plain mean over the batch, the
//! mean over ranks of per-rank gradients (equal batch sizes) is then the
//! single-process gradient. The multi-task loss averages over labelled
//! samples, so each rank scales its terms to the global count
//! (`train/data_parallel.rs`); the CCC loss and per-rank batch-norm
//! statistics are where the two can still differ. A loader cut this way
//! builds only its rank's rows ([`Loader::sharded`]).

use crate::data::Loader;
use crate::{Error, Result};

/// Rank `rank` of `world_size`, with the global and per-rank batch sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world_size: usize,
    pub batch_size: usize,
}

impl Shard {
    /// Refuses a global batch that does not split evenly (ranks with unequal
    /// batches would weigh samples unequally in the averaged gradient).
    pub fn new(rank: usize, world_size: usize, batch_size: usize) -> Result<Shard> {
        if world_size == 0 || rank >= world_size {
            return Err(Error::Dist(format!(
                "rank {rank} is not in a world of {world_size}"
            )));
        }
        if batch_size == 0 || !batch_size.is_multiple_of(world_size) {
            return Err(Error::Config(format!(
                "data.batch_size = {batch_size}: must be a positive multiple of the world size \
                 {world_size} (each rank trains on batch_size / world_size samples per step)"
            )));
        }
        Ok(Shard {
            rank,
            world_size,
            batch_size,
        })
    }

    /// Samples this rank takes from each global batch.
    pub fn per_rank_batch(&self) -> usize {
        self.batch_size / self.world_size
    }

    /// This rank's part of `global`, batch by batch. With `drop_last` the
    /// trailing partial global batch is left out, as the loader does; without
    /// it, that batch is cut the same way and the last ranks may get fewer
    /// samples (or none).
    pub fn take(&self, global: &[usize], drop_last: bool) -> Vec<usize> {
        let per = self.per_rank_batch();
        global
            .chunks(self.batch_size)
            .filter(|b| !drop_last || b.len() == self.batch_size)
            .flat_map(|b| {
                let lo = (self.rank * per).min(b.len());
                let hi = (lo + per).min(b.len());
                &b[lo..hi]
            })
            .copied()
            .collect()
    }

    /// This rank's dataset indices for epoch `epoch` of `loader`, whose
    /// batch size must be this shard's global batch size.
    pub fn epoch_order(&self, loader: &Loader, epoch: u64) -> Result<Vec<usize>> {
        let (batch_size, drop_last) = loader.batching();
        if batch_size != self.batch_size {
            return Err(Error::Config(format!(
                "shard of a global batch of {} over a loader batching {batch_size}",
                self.batch_size
            )));
        }
        Ok(self.take(&loader.epoch_order(epoch), drop_last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, LabelSet, LoaderConfig, Sample, SamplerKind};

    fn loader(n: usize, batch_size: usize, drop_last: bool, sampler: SamplerKind) -> Loader {
        let samples = (0..n)
            .map(|i| Sample::for_test(None, Some((i % 8) as u8), None))
            .collect();
        let ds = Dataset {
            image_root: "unused".into(),
            samples,
            label_set: LabelSet::Abaw2022,
        };
        let cfg = LoaderConfig {
            batch_size,
            drop_last,
            sampler,
            seed: 11,
            ..LoaderConfig::default()
        };
        Loader::new(ds, cfg).unwrap()
    }

    #[test]
    fn the_union_of_rank_batches_is_the_single_process_batch() {
        for sampler in [SamplerKind::Shuffle, SamplerKind::Balanced] {
            for (world, drop_last) in [(1, true), (2, true), (3, false), (4, true), (6, false)] {
                let batch = 12;
                let l = loader(100, batch, drop_last, sampler);
                let global = l.epoch_order(3);
                let shards: Vec<Vec<usize>> = (0..world)
                    .map(|r| {
                        Shard::new(r, world, batch)
                            .unwrap()
                            .epoch_order(&l, 3)
                            .unwrap()
                    })
                    .collect();
                let kept = if drop_last { 100 / batch * batch } else { 100 };
                let per = batch / world;
                for (step, want) in global[..kept].chunks(batch).enumerate() {
                    let union: Vec<usize> = shards
                        .iter()
                        .flat_map(|s| s.iter().skip(step * per).take(per).copied())
                        .collect();
                    assert_eq!(union, want, "world {world}, step {step}");
                }
                let total: usize = shards.iter().map(Vec::len).sum();
                assert_eq!(total, kept, "world {world}");
            }
        }
    }

    #[test]
    fn ranks_take_disjoint_positions() {
        // Shuffle visits each sample once, so disjoint positions show as
        // disjoint dataset indices.
        let l = loader(64, 16, true, SamplerKind::Shuffle);
        let mut all: Vec<usize> = (0..4)
            .flat_map(|r| Shard::new(r, 4, 16).unwrap().epoch_order(&l, 0).unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..64).collect::<Vec<_>>());
        let a = Shard::new(0, 4, 16).unwrap().epoch_order(&l, 0).unwrap();
        let b = Shard::new(0, 4, 16).unwrap().epoch_order(&l, 1).unwrap();
        assert_ne!(a, b, "a new epoch reshuffles every rank's shard");
    }

    #[test]
    fn an_uneven_batch_is_refused_naming_the_key_and_world_size() {
        let e = Shard::new(0, 3, 32).unwrap_err().to_string();
        assert!(
            e.contains("data.batch_size = 32") && e.contains("world size 3"),
            "{e}"
        );
        assert!(Shard::new(3, 3, 30).is_err());
        let l = loader(40, 8, true, SamplerKind::Shuffle);
        assert!(Shard::new(0, 2, 16).unwrap().epoch_order(&l, 0).is_err());
    }
}
