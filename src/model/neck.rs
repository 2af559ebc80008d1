//! From the backbone's output (a feature map, or a vector taken as a 1x1
//! map) to one feature vector per image.

use super::Features;
use crate::nn::{Conv2d, ConvSpec, Ctx, Scope};
use crate::{ops, Params, Result, Rng, Var};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeckKind {
    /// Global average pool.
    Gap,
    /// MTANet: two branches of dropout -> 1x1 conv -> LeakyReLU, one
    /// average-pooled and one max-pooled, concatenated.
    Mtanet,
}

#[derive(Clone, Debug)]
pub struct Neck {
    /// The MTANet (average, max) branches; `None` for a plain pool.
    pub(crate) branches: Option<(Conv2d, Conv2d)>,
    /// What the backbone hands over.
    pub(crate) input: Features,
    pub(crate) dropout: f64,
    /// Length of the feature vector.
    pub out_features: usize,
}

/// LeakyReLU slope of the MTANet branches (PyTorch's default).
pub(crate) const LEAKY_SLOPE: f64 = 0.01;

impl Neck {
    /// A neck named in `s` over `input` features of width `c_in`.
    pub fn new(
        p: &mut Params,
        s: &Scope,
        kind: NeckKind,
        (input, c_in): (Features, usize),
        dropout: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(match kind {
            NeckKind::Gap => Neck {
                branches: None,
                input,
                dropout,
                out_features: c_in,
            },
            NeckKind::Mtanet => {
                let spec = ConvSpec::new(c_in, c_in, 1).bias();
                let a = Conv2d::new(p, &s.pp("avg_branch"), spec, rng)?;
                let m = Conv2d::new(p, &s.pp("max_branch"), spec, rng)?;
                Neck {
                    branches: Some((a, m)),
                    input,
                    dropout,
                    out_features: 2 * c_in,
                }
            }
        })
    }

    /// [N, h, w, C] (or [N, C]) -> [N, out_features].
    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let map;
        let x = match self.input {
            Features::Map => x,
            Features::Vector => {
                map = ops::reshape(cx.tape, x, [x.dims()[0], 1, 1, x.dims()[1]])?;
                &map
            }
        };
        match &self.branches {
            Some((avg, max)) => {
                let branch = |cx: &mut Ctx, conv: &Conv2d| -> Result<Var> {
                    let d = ops::dropout(cx.tape, x, self.dropout, cx.training, cx.rng)?;
                    ops::leaky_relu(cx.tape, &conv.forward(cx, &d)?, LEAKY_SLOPE)
                };
                let a = ops::global_avg_pool(cx.tape, &branch(cx, avg)?)?;
                let m = ops::global_max_pool(cx.tape, &branch(cx, max)?)?;
                ops::concat(cx.tape, &[&a, &m], -1)
            }
            None => {
                let g = ops::global_avg_pool(cx.tape, x)?;
                ops::dropout(cx.tape, &g, self.dropout, cx.training, cx.rng)
            }
        }
    }
}
