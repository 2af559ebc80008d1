//! Trained models written in the formats that deployment runtimes read.
//! Today: ONNX ([`onnx`]), for ONNX Runtime, TensorRT and the like.

pub mod onnx;
