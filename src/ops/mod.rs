//! Differentiable ops. Each file holds one op family: shape checks, the CPU
//! reference forward and backward, and the tape wiring, with its unit tests.
//!
//! Every op takes the [`Tape`](crate::Tape) and [`Var`](crate::Var)s and
//! returns a `Var`; user mistakes come back as an [`Error`](crate::Error).

pub mod attention;
pub mod batch_norm;
pub mod batch_norm_relu;
pub mod bmm;
pub mod channel_scale;
pub mod concat;
pub mod conv;
pub mod conv_transpose;
pub mod dropout;
pub mod elementwise;
pub mod gather_tokens;
pub mod gru;
pub mod layer_norm;
pub mod loss;
pub mod lstm;
pub mod matmul;
pub mod pool;
pub mod prelu;
pub mod recurrent;
pub mod reduce;
pub mod reshape;
pub mod softmax;
pub mod unary;
pub mod upsample;

pub use attention::attention;
pub use batch_norm::{batch_norm2d, BatchNormParams};
pub use batch_norm_relu::batch_norm_relu;
pub use bmm::{bmm, Transposes};
pub use channel_scale::{channel_scale, channel_scale_add_relu};
pub use concat::concat;
pub use conv::{conv2d, Conv2dParams};
pub use conv_transpose::conv_transpose2d;
pub use dropout::{drop_path, dropout};
pub use elementwise::{add, div, mul, sub};
pub use gather_tokens::{gather_tokens, TokenIndex};
pub use gru::gru;
pub use layer_norm::layer_norm;
pub use lstm::{lstm, LstmState};
pub use matmul::{linear, matmul, transpose};
pub use pool::{avg_pool2d, global_avg_pool, global_max_pool, max_pool2d, Pool2dParams};
pub use prelu::prelu;
pub use recurrent::RnnWeights;
pub use reduce::{mean, sum};
pub use reshape::{narrow, reshape};
pub use softmax::{log_softmax, softmax};
pub use unary::{exp, gelu, gelu_tanh, leaky_relu, log, relu, scale, sigmoid, tanh};
pub use upsample::upsample_nearest2d;
