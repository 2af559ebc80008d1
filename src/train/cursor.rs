//! A place in the training data that survives a checkpoint: the next batch
//! comes from (epoch, position) in [`TrainProgress`], so a run restored from
//! a checkpoint continues mid-epoch with exactly the batches the
//! uninterrupted run would have seen.

use super::TrainProgress;
use crate::data::{Batch, EpochIter, Loader};
use crate::{Error, Result};

/// The open epoch of a [`Loader`] (its workers prefetch ahead).
#[derive(Default)]
pub struct BatchCursor {
    /// The iterator, with the (epoch, position) of the batch it yields next:
    /// when the progress is somewhere else (a checkpoint was loaded), the
    /// cursor reopens there.
    open: Option<((u64, u64), EpochIter)>,
}

impl BatchCursor {
    /// The batch at `progress`'s place, advancing the place past it (and
    /// into the next epoch when the current one is used up).
    pub fn next(&mut self, loader: &Loader, progress: &mut TrainProgress) -> Result<Batch> {
        let per_epoch = loader.steps_per_epoch() as u64;
        if per_epoch == 0 {
            return Err(Error::Config(format!(
                "training set has {} samples, fewer than one batch",
                loader.dataset().samples.len(),
            )));
        }
        if progress.position_in_epoch >= per_epoch {
            progress.epoch += 1;
            progress.position_in_epoch = 0;
        }
        let here = (progress.epoch, progress.position_in_epoch);
        if self.open.as_ref().is_none_or(|(at, _)| *at != here) {
            self.open = Some((here, loader.epoch(here.0, here.1 as usize)));
        }
        let (at, iter) = self.open.as_mut().expect("opened above");
        let batch = iter.next().unwrap_or_else(|| {
            Err(Error::Config(
                "loader: epoch ended before its last step".into(),
            ))
        })?;
        progress.position_in_epoch += 1;
        at.1 += 1;
        Ok(batch)
    }
}
