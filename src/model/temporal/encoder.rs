//! Temporal encoders over per-frame features [N, T, F] -> [N, T, E]: stacked
//! GRU or LSTM layers (dropout between layers, as `nn.GRU`/`nn.LSTM` apply
//! it), or a Transformer encoder (linear input projection, sinusoidal
//! positions, post-norm layers). Every kind honours the padding mask.

use super::positional::sinusoidal;
use super::transformer::TransformerLayer;
use crate::nn::{Ctx, Init, Linear, Scope};
use crate::ops::{self, LstmState, RnnWeights};
use crate::{ParamId, Params, Result, Rng, Var};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderKind {
    Gru,
    /// Stateful: the (h, c) state of a video's previous chunk starts the next one.
    Lstm,
    Transformer,
}

/// Sizes of one encoder stack.
#[derive(Clone, Copy, Debug)]
pub struct EncoderSpec {
    pub kind: EncoderKind,
    pub in_features: usize,
    pub dim: usize,
    pub layers: usize,
    /// Attention heads and feed-forward width (Transformer only).
    pub heads: usize,
    pub ff: usize,
    pub dropout: f64,
}

#[derive(Clone, Debug)]
enum Layer {
    /// w_ih, w_hh, b_ih, b_hh.
    Rnn([ParamId; 4]),
    Attention(TransformerLayer),
}

/// LSTM states between chunks, in layer order over every encoder of a model:
/// `input` is what the previous chunk left (empty at the start of a video),
/// `output` collects what this chunk leaves.
#[derive(Clone, Debug, Default)]
pub struct Carry {
    pub input: Vec<LstmState>,
    pub output: Vec<LstmState>,
}

#[derive(Clone, Debug)]
pub struct Encoder {
    spec: EncoderSpec,
    input: Option<Linear>,
    layers: Vec<Layer>,
}

impl Encoder {
    pub fn new(p: &mut Params, s: &Scope, spec: EncoderSpec, rng: &mut Rng) -> Result<Self> {
        let h = spec.dim;
        let mut layers = Vec::with_capacity(spec.layers);
        let input = match spec.kind {
            EncoderKind::Transformer => {
                for i in 0..spec.layers {
                    let l = TransformerLayer::new(
                        p,
                        &s.pp(i),
                        h,
                        spec.heads,
                        spec.ff,
                        spec.dropout,
                        rng,
                    )?;
                    layers.push(Layer::Attention(l));
                }
                Some(Linear::new(
                    p,
                    &s.pp("input"),
                    spec.in_features,
                    h,
                    true,
                    rng,
                )?)
            }
            EncoderKind::Gru | EncoderKind::Lstm => {
                let g = if spec.kind == EncoderKind::Gru { 3 } else { 4 };
                for i in 0..spec.layers {
                    let f = if i == 0 { spec.in_features } else { h };
                    // PyTorch's RNN init: every tensor U(-1/√H, 1/√H).
                    let mut add = |part: &str, dims: &[usize]| {
                        p.add(s.pp(i).name(part), Init::UniformFanIn.make(dims, h, h, rng))
                    };
                    layers.push(Layer::Rnn([
                        add("w_ih", &[g * h, f])?,
                        add("w_hh", &[g * h, h])?,
                        add("b_ih", &[g * h])?,
                        add("b_hh", &[g * h])?,
                    ]));
                }
                None
            }
        };
        Ok(Encoder {
            spec,
            input,
            layers,
        })
    }

    pub fn out_features(&self) -> usize {
        self.spec.dim
    }

    /// x [N, T, F], `mask[n·T + t]` false at padded frames -> [N, T, E].
    pub fn forward(&self, cx: &mut Ctx, x: &Var, mask: &[bool], carry: &mut Carry) -> Result<Var> {
        let mut h = match &self.input {
            Some(proj) => {
                let h = proj.forward(cx, x)?;
                let (t, e) = (h.dims()[1], h.dims()[2]);
                // The table lives where the activations do (an explicit host-to-device copy on a GPU).
                let pe = sinusoidal(t, e, h.value().dtype()).to_device(&h.value().device())?;
                let pe = cx.tape.constant(pe);
                let h = ops::add(cx.tape, &h, &pe)?;
                ops::dropout(cx.tape, &h, self.spec.dropout, cx.training, cx.rng)?
            }
            None => x.clone(),
        };
        for (i, layer) in self.layers.iter().enumerate() {
            h = match layer {
                Layer::Attention(l) => l.forward(cx, &h, mask)?,
                Layer::Rnn(ids) => {
                    if i > 0 {
                        h = ops::dropout(cx.tape, &h, self.spec.dropout, cx.training, cx.rng)?;
                    }
                    let v = ids.map(|id| cx.param(id));
                    let w = RnnWeights::from_vars(&v);
                    if self.spec.kind == EncoderKind::Gru {
                        ops::gru(cx.tape, &h, w, None, Some(mask))?.0
                    } else {
                        let start = carry.input.get(carry.output.len());
                        let (y, s) = ops::lstm(cx.tape, &h, w, start, Some(mask))?;
                        carry.output.push(s);
                        y
                    }
                }
            };
        }
        Ok(h)
    }
}
