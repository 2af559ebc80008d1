//! CPU backend: the element trait the reference kernels are generic over,
//! the host storage of each dtype, and GEMM.

mod float;
mod gemm;
mod storage;

pub use float::Float;
pub use gemm::{gemm, gemm_strided, MatRef};
pub use storage::CpuStorage;
