//! The arithmetic of a step, for model FLOP utilisation: what the products
//! (convolutions and matrix products) recorded on a tape must compute,
//! counted from their shapes, not from what the kernels happen to do.

/// Floating-point operations of the products run through one tape, two per
/// multiply-add. `backward` counts, per product, one pass the size of the
/// forward for each operand whose gradient the tape will compute (a
/// convolution's dgrad and wgrad, a matrix product's dA and dB): a stem
/// convolution over constant images counts no dgrad. Recurrent layers count
/// their input and state projections, attention its two products (scores
/// and weighted values, no recomputation in backward). Elementwise ops,
/// reductions, normalisation and the optimizer are not counted, as in the
/// usual MFU convention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProductFlops {
    pub forward: u64,
    pub backward: u64,
}

impl ProductFlops {
    pub fn total(&self) -> u64 {
        self.forward + self.backward
    }

    /// This product's count added: `macs` multiply-adds forward, and as
    /// many again backward for each operand in `grads` that needs a gradient.
    pub(crate) fn add(self, macs: u64, grads: [bool; 2]) -> Self {
        let passes = grads.iter().filter(|&&g| g).count() as u64;
        ProductFlops {
            forward: self.forward + 2 * macs,
            backward: self.backward + 2 * macs * passes,
        }
    }
}
