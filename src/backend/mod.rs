//! Backends: the plain CPU reference (f32 and f64). The CUDA backend joins here.

pub mod cpu;
