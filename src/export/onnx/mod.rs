//! ONNX export of the frame multi-task network in inference mode, for the
//! runtimes models are deployed with (ONNX Runtime, TensorRT, ...).
//!
//! The file is one self-contained graph, opset 17 by default, standard
//! operators only, the weights inside as initializers:
//! - input `images`: f32 NCHW [N, 3, S, S], S = `data.image_size`, RGB
//!   scaled to [-1, 1] (`v · 2/255 - 1`), as `predict` feeds the network
//!   after resizing; the graph runs in NCHW throughout, so our NHWC
//!   weights are rearranged once at export ([`layout`]);
//! - outputs `valence_arousal` [N, 2] (after tanh), `au_logits` [N, n_aus]
//!   and `expr_logits` [N, n_expr]: what `eval` and `predict` read (they
//!   threshold sigmoid(AU logit) at 0.5 and take the expression arg-max).
//!
//! Batch norm uses its running statistics and dropout and drop path are
//! the identity, as in `eval`. N is fixed or named (dynamic).

mod densenet;
mod graph;
mod iresnet;
mod layers;
pub mod layout;
mod mtl_net;
pub mod proto;
mod se_resnet;
mod vit;

use crate::model::MtlNet;
use crate::nn::Buffers;
use crate::{Error, Params, Result};
use graph::{f32_value, Dim, Graph};
use prost::Message;
use proto::{ModelProto, OperatorSetIdProto};
use std::path::Path;
use std::str::FromStr;

pub const INPUT: &str = "images";
pub const VA_OUTPUT: &str = "valence_arousal";
pub const AU_OUTPUT: &str = "au_logits";
pub const EXPR_OUTPUT: &str = "expr_logits";
/// The name of the batch axis of a dynamic-batch export.
pub const BATCH_DIM: &str = "N";

pub const DEFAULT_OPSET: i64 = 17;
/// Opsets written: 17 brought LayerNormalization; up to 21 every operator
/// used here keeps its meaning (18 moved ReduceMean's axes to an input,
/// which the export follows).
pub const OPSETS: std::ops::RangeInclusive<i64> = 17..=21;
/// The IR version of opset 17's release (ONNX 1.12), read by every runtime
/// that reads opset 17.
const IR_VERSION: i64 = 8;

/// The batch axis of the exported input and outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    Fixed(usize),
    /// Any N, given when the model runs.
    Dynamic,
}

impl FromStr for Batch {
    type Err = String;

    /// `dynamic`, or a batch size of at least 1.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "dynamic" {
            return Ok(Batch::Dynamic);
        }
        match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Batch::Fixed(n)),
            _ => Err(format!("{s:?}: give a batch size >= 1 or \"dynamic\"")),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct OnnxOptions {
    pub batch: Batch,
    pub opset: i64,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        OnnxOptions {
            batch: Batch::Dynamic,
            opset: DEFAULT_OPSET,
        }
    }
}

/// The ONNX model of `net` (weights from `params` and `buffers`, on any
/// device) for square images of `image_size` pixels a side.
pub fn export(
    net: &MtlNet,
    params: &Params,
    buffers: &Buffers,
    image_size: usize,
    opts: OnnxOptions,
) -> Result<ModelProto> {
    if !OPSETS.contains(&opts.opset) {
        return Err(Error::Config(format!(
            "--opset {}: the export writes opsets {} to {}",
            opts.opset,
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let mut e = layers::Emit::new(Graph::new(opts.opset), params, buffers);
    let [va, au, expr] = mtl_net::mtl_net(&mut e, net, image_size, INPUT)?;
    debug_assert_eq!([&va, &au, &expr], [VA_OUTPUT, AU_OUTPUT, EXPR_OUTPUT]);
    let n = match opts.batch {
        Batch::Fixed(n) => Dim::Fixed(n),
        Batch::Dynamic => Dim::Named(BATCH_DIM.into()),
    };
    let s = Dim::Fixed(image_size);
    let input = f32_value(INPUT, &[n.clone(), Dim::Fixed(3), s.clone(), s]);
    let out = |name: &str, width: usize| f32_value(name, &[n.clone(), Dim::Fixed(width)]);
    let outputs = vec![
        out(VA_OUTPUT, 2),
        out(AU_OUTPUT, net.config.n_aus),
        out(EXPR_OUTPUT, net.config.n_expr),
    ];
    let graph = e.g.finish("mtaffect", vec![input], outputs);
    Ok(ModelProto {
        ir_version: IR_VERSION,
        producer_name: "mtaffect".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{} multi-task network, inference mode. Input `images`: f32 NCHW \
             [N, 3, {image_size}, {image_size}], RGB scaled to [-1, 1]. Outputs: \
             valence_arousal (tanh), au_logits, expr_logits.",
            net.config.backbone
        ),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opts.opset,
        }],
    })
}

/// Writes `model` to `path` atomically.
pub fn write(path: &Path, model: &ModelProto) -> Result<()> {
    crate::io::write_atomic(path, &model.encode_to_vec())
}

/// Reads an ONNX file into the structs of [`proto`].
pub fn read(path: &Path) -> Result<ModelProto> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    ModelProto::decode(bytes.as_slice())
        .map_err(|e| crate::tensor_file::invalid(path, "ONNX model", format!("cannot decode: {e}")))
}
