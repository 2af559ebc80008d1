//! The crate's one error type. Every fallible public function returns [`Result`].
//!
//! Messages name what the user has to fix: the op and both shapes for tensor
//! mistakes, the file, line and field for bad input.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Operand shapes do not fit the op.
    #[error("{op}: shape mismatch: {msg}")]
    Shape { op: &'static str, msg: String },

    /// Operands of different dtypes, or a dtype the op does not support.
    #[error("{op}: dtype mismatch: expected {expected}, found {found}")]
    DType {
        op: &'static str,
        expected: String,
        found: String,
    },

    /// Operands live on different devices.
    #[error("{op}: device mismatch: {lhs} vs {rhs}; move tensors explicitly with to_device")]
    Device {
        op: &'static str,
        lhs: String,
        rhs: String,
    },

    /// A tensor on the wrong backend for the call: host data asked of a CUDA
    /// tensor, or an op with no kernel for that backend.
    #[error("{op}: wrong backend: expected a {expected} tensor, found {found}; copy it explicitly with to_device/to_cpu")]
    Backend {
        op: &'static str,
        expected: String,
        found: String,
    },

    /// An argument outside its valid range (axis, probability, stride, ...).
    #[error("{op}: invalid argument: {msg}")]
    Arg { op: &'static str, msg: String },

    /// Misuse of the autograd tape (backward twice, non-scalar loss without seed, ...).
    #[error("autograd: {0}")]
    Tape(String),

    /// CUDA is not usable: no driver, no device, NVRTC failure, launch failure.
    #[error("cuda: {0}")]
    Cuda(String),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Bad input data: names file, line (1-based) and field.
    #[error("{file}:{line}: field '{field}': {msg}")]
    Parse {
        file: PathBuf,
        line: usize,
        field: String,
        msg: String,
    },

    /// A bad configuration value.
    #[error("config: {0}")]
    Config(String),

    /// A NaN or Inf where a finite number is required (loss, gradient norm).
    #[error("non-finite value: {0}")]
    NonFinite(String),

    /// Distributed setup or a peer process failed: names the variable, the
    /// rank or the address involved.
    #[error("distributed: {0}")]
    Dist(String),

    /// A run stopped by Ctrl-C or SIGTERM after checkpointing.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl Error {
    pub(crate) fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }

    pub(crate) fn arg(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Arg {
            op,
            msg: msg.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
