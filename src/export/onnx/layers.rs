//! The layers of `nn` as ONNX nodes, in NCHW: convolution, batch norm (eval
//! mode: running statistics), linear layers, layer norm, PReLU and the
//! elementwise operators. [`Emit`] holds the graph being built and the
//! registries the layers' ids point into; each layer's weights become
//! initializers named as in the checkpoint (`layer1.0.conv1.weight`), and
//! its node is named for the layer (`layer1.0.conv1`).

use super::graph::{float, int, ints, Graph};
use super::layout::{krsc_to_kcrs, transpose};
use crate::nn::{BatchNorm2d, Buffers, Conv2d, LayerNorm, Linear};
use crate::ops::pool::Pool2dParams;
use crate::{ParamId, Params, Result};

/// A weight on the host: its checkpoint name, dims and values.
pub struct Host {
    pub name: String,
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

impl Host {
    /// The layer's name: the weight's without its last component.
    pub fn layer(&self) -> &str {
        self.name.rsplit_once('.').map_or(&self.name, |(l, _)| l)
    }
}

pub struct Emit<'a> {
    pub g: Graph,
    params: &'a Params,
    buffers: &'a Buffers,
}

impl<'a> Emit<'a> {
    pub fn new(g: Graph, params: &'a Params, buffers: &'a Buffers) -> Self {
        Emit { g, params, buffers }
    }

    fn host(reg: &Params, id: ParamId) -> Result<Host> {
        let t = reg.get(id);
        Ok(Host {
            name: reg.name(id).to_string(),
            dims: t.dims().to_vec(),
            data: t.to_cpu()?.to_vec::<f32>()?,
        })
    }

    pub fn param(&self, id: ParamId) -> Result<Host> {
        Self::host(self.params, id)
    }

    /// A parameter's checkpoint name.
    pub fn param_name(&self, id: ParamId) -> &'a str {
        self.params.name(id)
    }

    pub fn buffer(&self, id: ParamId) -> Result<Host> {
        Self::host(self.buffers, id)
    }

    /// A weight as an initializer, unchanged.
    pub fn init(&mut self, h: &Host) -> Result<String> {
        self.g.f32s(&h.name, &h.dims, &h.data)
    }

    /// An operator with no attributes on one input, named `name`.
    pub fn unary(&mut self, op: &str, name: &str, x: &str) -> String {
        self.g.node(op, name, &[x], vec![])
    }

    /// A two-input operator with no attributes (Add, Mul, MatMul, ...).
    pub fn binary(&mut self, op: &str, name: &str, a: &str, b: &str) -> String {
        self.g.node(op, name, &[a, b], vec![])
    }

    /// Conv over NCHW input, the weight [K, R, S, C] written OIHW.
    pub fn conv(&mut self, c: &Conv2d, x: &str) -> Result<String> {
        let w = self.param(c.weight)?;
        let &[k, r, s, ci] = w.dims.as_slice() else {
            unreachable!("a conv weight is 4-D")
        };
        let oihw = krsc_to_kcrs(&w.data, [k, r, s, ci]);
        let wn = self.g.f32s(&w.name, &[k, ci, r, s], &oihw)?;
        let mut inputs = vec![wn];
        if let Some(b) = c.bias {
            let b = self.param(b)?;
            inputs.push(self.init(&b)?);
        }
        let p = c.prm;
        // Ours: (top, bottom, left, right); ONNX: (begins, then ends).
        let [top, bottom, left, right] = p.padding.map(|v| v as i64);
        let attrs = vec![
            ints("kernel_shape", &[r as i64, s as i64]),
            ints("strides", &p.stride.map(|v| v as i64)),
            ints("pads", &[top, left, bottom, right]),
            ints("dilations", &p.dilation.map(|v| v as i64)),
            int("group", p.groups as i64),
        ];
        let ins: Vec<&str> = std::iter::once(x)
            .chain(inputs.iter().map(String::as_str))
            .collect();
        Ok(self.g.node("Conv", w.layer(), &ins, attrs))
    }

    /// MaxPool or AveragePool (`op`) with our pooling parameters (padded
    /// positions never win a max, as in ours and PyTorch's; an average
    /// counts them when `count_include_pad`).
    pub fn pool(&mut self, op: &str, name: &str, x: &str, p: Pool2dParams) -> String {
        let [ph, pw] = p.padding.map(|v| v as i64);
        let mut attrs = vec![
            ints("kernel_shape", &p.kernel.map(|v| v as i64)),
            ints("strides", &p.stride.map(|v| v as i64)),
            ints("pads", &[ph, pw, ph, pw]),
            int("ceil_mode", i64::from(p.ceil_mode)),
        ];
        if op == "AveragePool" {
            attrs.push(int("count_include_pad", i64::from(p.count_include_pad)));
        }
        self.g.node(op, name, &[x], attrs)
    }

    /// BatchNormalization with the running statistics (inference mode), over
    /// axis 1 of [N, C, ...] (a map, or [N, C] features).
    pub fn batch_norm(&mut self, bn: &BatchNorm2d, x: &str) -> Result<String> {
        let scale = self.param(bn.weight)?;
        let ins = [
            self.init(&scale)?,
            self.init(&self.param(bn.bias)?)?,
            self.init(&self.buffer(bn.running_mean)?)?,
            self.init(&self.buffer(bn.running_var)?)?,
        ];
        let attrs = vec![float("epsilon", bn.eps as f32)];
        let ins = [x, &ins[0], &ins[1], &ins[2], &ins[3]];
        Ok(self
            .g
            .node("BatchNormalization", scale.layer(), &ins, attrs))
    }

    /// Gemm(x, W, b) with transB = 1: x [N, in], W [out, in] (as stored, or
    /// rearranged) already written as `wn`; the output is named `name`.
    pub fn gemm(&mut self, wn: &str, bias: Option<ParamId>, x: &str, name: &str) -> Result<String> {
        let mut ins = vec![x.to_string(), wn.to_string()];
        if let Some(b) = bias {
            ins.push(self.init(&self.param(b)?)?);
        }
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        Ok(self.g.node("Gemm", name, &ins, vec![int("transB", 1)]))
    }

    /// A linear layer as a 1x1 Conv on an [N, C, 1, 1] map: W [out, in] is
    /// already OIHW once given two unit axes. Keeps a map-shaped branch
    /// (the SE gate) 4-D, with no reshape round trip.
    pub fn linear_as_conv1x1(&mut self, l: &Linear, x: &str) -> Result<String> {
        let w = self.param(l.weight)?;
        let (out, inp) = (w.dims[0], w.dims[1]);
        let wn = self.g.f32s(&w.name, &[out, inp, 1, 1], &w.data)?;
        let mut ins = vec![x.to_string(), wn];
        if let Some(b) = l.bias {
            ins.push(self.init(&self.param(b)?)?);
        }
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        Ok(self.g.node("Conv", w.layer(), &ins, vec![]))
    }

    /// A linear layer on tokens [N, T, in] (Gemm is 2-D only): MatMul with
    /// the weight written transposed, [in, out], then Add of the bias.
    /// `name` names the nodes, and the initializers `name.weight`/`.bias`.
    pub fn token_linear(
        &mut self,
        name: &str,
        (w, out, inp): (&[f32], usize, usize),
        bias: Option<&[f32]>,
        x: &str,
    ) -> Result<String> {
        let wt = self.g.f32s(
            &format!("{name}.weight"),
            &[inp, out],
            &transpose(w, out, inp),
        )?;
        let y = self.binary("MatMul", &format!("{name}.matmul"), x, &wt);
        match bias {
            Some(b) => {
                let bn = self.g.f32s(&format!("{name}.bias"), &[out], b)?;
                Ok(self.binary("Add", name, &y, &bn))
            }
            None => Ok(y),
        }
    }

    /// [`Emit::token_linear`] of a whole [`Linear`].
    pub fn linear_tokens(&mut self, l: &Linear, x: &str) -> Result<String> {
        let w = self.param(l.weight)?;
        let b = match l.bias {
            Some(b) => Some(self.param(b)?.data),
            None => None,
        };
        let (out, inp) = (w.dims[0], w.dims[1]);
        self.token_linear(w.layer(), (&w.data, out, inp), b.as_deref(), x)
    }

    /// LayerNormalization over the last axis (opset 17's operator).
    pub fn layer_norm(&mut self, ln: &LayerNorm, x: &str) -> Result<String> {
        let w = self.param(ln.weight)?;
        let ins = [self.init(&w)?, self.init(&self.param(ln.bias)?)?];
        let attrs = vec![int("axis", -1), float("epsilon", ln.eps as f32)];
        Ok(self.g.node(
            "LayerNormalization",
            w.layer(),
            &[x, &ins[0], &ins[1]],
            attrs,
        ))
    }

    /// PReLU with one slope per channel of an NCHW map: the slopes [C] are
    /// written [C, 1, 1] so that they broadcast over axis 1, not the last.
    pub fn prelu(&mut self, slopes: ParamId, x: &str) -> Result<String> {
        let a = self.param(slopes)?;
        let an = self.g.f32s(&a.name, &[a.dims[0], 1, 1], &a.data)?;
        Ok(self.binary("PRelu", a.layer(), x, &an))
    }
}
