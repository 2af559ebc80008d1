//! A small builder of ONNX graphs: nodes in the order they are added (so in
//! topological order, as a node can only read values that exist), constant
//! tensors (initializers), and the helpers that make attributes and typed
//! inputs/outputs. It knows nothing of mtaffect's models; the files beside
//! it say what to add.

use super::proto::{
    attribute_type, data_type, AttributeProto, DimValue, Dimension, GraphProto, NodeProto,
    TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use crate::{Error, Result};
use std::collections::HashSet;

pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Every value name in use (node outputs and initializers share one
    /// namespace in ONNX).
    taken: HashSet<String>,
    /// The `ai.onnx` opset the graph is written for (some operators changed
    /// their signature between versions).
    pub opset: i64,
}

impl Graph {
    pub fn new(opset: i64) -> Self {
        Graph {
            nodes: Vec::new(),
            initializers: Vec::new(),
            taken: HashSet::new(),
            opset,
        }
    }

    /// `base` if no value has that name yet, else `base.1`, `base.2`, ...
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 0;
        while self.taken.contains(&name) {
            k += 1;
            name = format!("{base}.{k}");
        }
        self.taken.insert(name.clone());
        name
    }

    fn initializer(&mut self, name: &str, dims: &[usize], dtype: i32, raw: Vec<u8>) -> String {
        let name = self.fresh(name);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dtype,
            name: name.clone(),
            raw_data: raw,
        });
        name
    }

    /// An f32 initializer of shape `dims` (row-major `data`); returns its name.
    pub fn f32s(&mut self, name: &str, dims: &[usize], data: &[f32]) -> Result<String> {
        if dims.iter().product::<usize>() != data.len() {
            return Err(Error::shape(
                "onnx_export",
                format!("{name}: {} values for dims {dims:?}", data.len()),
            ));
        }
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(self.initializer(name, dims, data_type::FLOAT, raw))
    }

    /// A 1-D int64 initializer (shapes, axes, indices).
    pub fn i64s(&mut self, name: &str, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, &[values.len()], data_type::INT64, raw)
    }

    /// A scalar (0-D) int64 initializer: an index that drops its axis in Gather.
    pub fn i64_scalar(&mut self, name: &str, value: i64) -> String {
        self.initializer(name, &[], data_type::INT64, value.to_le_bytes().to_vec())
    }

    /// A scalar (0-D) f32 initializer, broadcast by the elementwise operators.
    pub fn f32_scalar(&mut self, name: &str, value: f32) -> Result<String> {
        self.f32s(name, &[], &[value])
    }

    /// Adds a node of operator `op` reading `inputs`; its one output (and the
    /// node) is named `name`, or `name.k` where that is taken. Returns the
    /// output's name.
    pub fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(name);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.to_string(),
            attribute,
        });
        out
    }

    pub fn finish(
        self,
        name: &str,
        input: Vec<ValueInfoProto>,
        output: Vec<ValueInfoProto>,
    ) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.to_string(),
            initializer: self.initializers,
            input,
            output,
        }
    }
}

pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: Some(v),
        r#type: attribute_type::INT,
        ..AttributeProto::default()
    }
}

pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: attribute_type::INTS,
        ..AttributeProto::default()
    }
}

pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: Some(v),
        r#type: attribute_type::FLOAT,
        ..AttributeProto::default()
    }
}

/// One axis of a graph input's or output's shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Fixed(usize),
    /// Fixed only when the model runs (the batch of a dynamic-batch export).
    Named(String),
}

/// An f32 graph input or output of shape `dims`.
pub fn f32_value(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => DimValue::DimValue(*n as i64),
                Dim::Named(s) => DimValue::DimParam(s.clone()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}
