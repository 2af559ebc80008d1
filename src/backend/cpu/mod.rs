//! CPU backend: the element trait the reference kernels are generic over, and GEMM.

mod float;
mod gemm;

pub use float::Float;
pub use gemm::{gemm, gemm_strided, MatRef};
