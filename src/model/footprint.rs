//! What a model costs in memory, read from its config without building it:
//! the number of parameters and the f32 values a training step keeps per
//! sample (or per frame) for the backward pass. Both are lower bounds,
//! counting only the largest parts (convolution and recurrent weights; each
//! convolution's output and its normalised output), so that a run refused
//! on them is certain not to fit; `train::memory_budget` compares them with
//! what the machine holds before anything is allocated. Counts saturate
//! instead of overflowing: a setting of 10^15 gives a huge count, not a panic.

/// Parameters and per-sample activations of a model (f32 values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub params: u128,
    /// Values the tape keeps per sample (image or frame) in a training step.
    pub activations: u128,
}

impl Footprint {
    /// Adds `params` parameters and `activations` per-sample values.
    pub fn add(&mut self, params: u128, activations: u128) {
        self.params = self.params.saturating_add(params);
        self.activations = self.activations.saturating_add(activations);
    }
}

/// The product of `factors`, saturating at `u128::MAX`.
pub fn product(factors: &[usize]) -> u128 {
    factors
        .iter()
        .fold(1u128, |acc, &f| acc.saturating_mul(f as u128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_saturate_instead_of_overflowing() {
        assert_eq!(product(&[3, 4, 5]), 60);
        assert_eq!(product(&[usize::MAX, usize::MAX, 2]), u128::MAX);
        let mut f = Footprint::default();
        f.add(u128::MAX, 1);
        f.add(1, 2);
        assert_eq!((f.params, f.activations), (u128::MAX, 3));
    }
}
