//! A change made to each training batch before the step (generated faces
//! mixed in, for one), drawing from the trainer's random stream so that a
//! resumed run draws the same.

use super::Batch;
use crate::{Result, Rng};

pub trait BatchTransform {
    fn apply(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Batch>;
}
