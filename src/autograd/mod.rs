//! A minimal reverse-mode autograd tape.
//!
//! The tape is an explicit value. Each recorded op stores its inputs' node
//! ids and a boxed backward rule that owns whatever the op saved; backward
//! walks the nodes in reverse, calls each rule once (so saved tensors are
//! freed as soon as they are used) and hands out parameter gradients.

mod flops;
mod gradients;
mod params;
mod precision;
mod tape;

pub use flops::ProductFlops;
pub use gradients::Gradients;
pub use params::{ParamId, Params};
pub use precision::Precision;
pub use tape::{AccumulatingBackwardFn, BackwardFn, Pending, Tape, Var};
