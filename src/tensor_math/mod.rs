//! Arithmetic on plain tensors, with no tape: the broadcasting binary and
//! the unary elementwise forwards, the sum of two same-shaped tensors, the
//! in-place scaling and the sum of squares of many tensors, and the index
//! arithmetic and chunk tables their kernels are launched with.
//!
//! It sits between the tensor and backend layers below and autograd above:
//! the tape adds gradients with it and [`Gradients`](crate::Gradients)
//! scales them and takes their norm, while ops/ wraps the same forwards in
//! tape nodes with their backward rules, and optim/ launches its updates
//! through the same chunk tables.

pub(crate) mod binary;
pub(crate) mod chunks;
mod norm;
pub(crate) mod strided;
pub(crate) mod unary;

pub use binary::add_same_shape;
pub use norm::sum_of_squares;
pub use unary::scale_in_place;
