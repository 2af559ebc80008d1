//! From the backbone's feature map to one feature vector per image.

use crate::nn::{Conv2d, Ctx};
use crate::ops::conv::Conv2dParams;
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
    branches: Option<(Conv2d, Conv2d)>,
    dropout: f64,
    /// Length of the feature vector.
    pub out_features: usize,
}

/// LeakyReLU slope of the MTANet branches (PyTorch's default).
const LEAKY_SLOPE: f64 = 0.01;

impl Neck {
    pub fn new(
        p: &mut Params,
        kind: NeckKind,
        c_in: usize,
        dropout: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(match kind {
            NeckKind::Gap => Neck {
                branches: None,
                dropout,
                out_features: c_in,
            },
            NeckKind::Mtanet => {
                let conv = |p: &mut Params, name: &str, rng: &mut Rng| {
                    Conv2d::new(p, name, c_in, c_in, 1, Conv2dParams::new(), true, rng)
                };
                let a = conv(p, "neck.avg_branch", rng)?;
                let m = conv(p, "neck.max_branch", rng)?;
                Neck {
                    branches: Some((a, m)),
                    dropout,
                    out_features: 2 * c_in,
                }
            }
        })
    }

    /// [N, h, w, C] -> [N, out_features].
    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
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
