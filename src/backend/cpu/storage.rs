//! Host memory behind a CPU tensor, one variant per dtype: what the
//! [`Float`](super::Float) trait's `slice` and `wrap` map each element type
//! to, as `CudaStorage` is the device memory behind a CUDA tensor.

use crate::tensor::DType;

/// Host memory of one dtype.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
