//! The parameter gradients of a backward pass, and what a training step
//! does with them as a whole: merging micro-batches, scaling, the global
//! norm. The arithmetic is tensor_math's, below the tape.

use super::ParamId;
use crate::tensor_math::{add_same_shape, scale_in_place, sum_of_squares};
use crate::{Result, Tensor};

/// Parameter gradients from one backward pass, keyed by [`ParamId`].
#[derive(Default, Clone, Debug)]
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
}

impl Gradients {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, id: ParamId) -> Option<&Tensor> {
        self.grads.get(id.0).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, id: ParamId) -> Option<&mut Tensor> {
        self.grads.get_mut(id.0).and_then(Option::as_mut)
    }

    pub fn take(&mut self, id: ParamId) -> Option<Tensor> {
        self.grads.get_mut(id.0).and_then(Option::take)
    }

    /// Adds `g` to the gradient of `id` (moves it in if there is none yet).
    pub fn accumulate(&mut self, id: ParamId, g: Tensor) -> Result<()> {
        if self.grads.len() <= id.0 {
            self.grads.resize(id.0 + 1, None);
        }
        let slot = &mut self.grads[id.0];
        *slot = Some(match slot.take() {
            None => g,
            Some(prev) => add_same_shape(&prev, &g)?,
        });
        Ok(())
    }

    /// Sums another pass's gradients into these: gradient accumulation over
    /// micro-batches. Scale by 1/k afterwards (or scale the losses) for a mean.
    pub fn merge(&mut self, other: Gradients) -> Result<()> {
        for (i, g) in other.grads.into_iter().enumerate() {
            if let Some(g) = g {
                self.accumulate(ParamId(i), g)?;
            }
        }
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Tensor)> {
        self.grads
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (ParamId(i), g)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ParamId, &mut Tensor)> {
        self.grads
            .iter_mut()
            .enumerate()
            .filter_map(|(i, g)| g.as_mut().map(|g| (ParamId(i), g)))
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Multiplies every gradient by `s` in place.
    pub fn scale(&mut self, s: f64) -> Result<()> {
        for (_, g) in self.iter_mut() {
            scale_in_place(g, s)?;
        }
        Ok(())
    }

    /// The L2 norm over all gradients together (computed in f64). On a GPU
    /// it is one launch and a read-back; a driver failure there gives NaN,
    /// which every caller treats as a non-finite norm.
    pub fn global_norm(&self) -> f64 {
        let all: Vec<&Tensor> = self.iter().map(|(_, g)| g).collect();
        sum_of_squares("global_norm", &all).map_or(f64::NAN, f64::sqrt)
    }
}
