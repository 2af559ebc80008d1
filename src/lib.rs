//! mtaffect: a from-scratch training framework for multi-task facial affect
//! models (valence/arousal, action units, expressions).
//!
//! Layers, top to bottom: [`ops`] (differentiable ops with CPU references)
//! and [`optim`], [`autograd`] (the explicit tape), [`tensor_math`]
//! (arithmetic on plain tensors, with no tape), [`tensor`] (runtime-shaped
//! NHWC tensors), [`backend`] (CPU reference and fast kernels; the CUDA
//! runtime), and above them [`nn`], [`model`], [`data`], [`train`] and
//! [`dist`] (the host side of data-parallel training).

// The README's example is compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod autograd;
pub mod backend;
pub mod data;
pub mod dist;
pub mod error;
pub mod export;
pub mod gradcheck;
pub mod import;
pub mod io;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod stats;
pub mod tensor;
pub mod tensor_file;
pub mod tensor_math;
pub mod train;

pub use autograd::{Gradients, ParamId, Params, Tape, Var};
pub use error::{Error, Result};
pub use tensor::{DType, Device, Rng, Shape, Tensor};
