//! Backends: the plain CPU reference (f32 and f64) and CUDA (NVRTC-compiled kernels).

pub mod cpu;
pub mod cuda;
