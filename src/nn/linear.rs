//! The fully connected layer.

use super::{Ctx, Init, Scope};
use crate::{ops, ParamId, Params, Result, Rng, Var};

/// `y = x·Wᵀ + b`, W [out, in].
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
}

impl Linear {
    pub fn new(
        params: &mut Params,
        scope: &Scope,
        in_f: usize,
        out_f: usize,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        let weight = params.add(
            scope.name("weight"),
            Init::UniformFanIn.make(&[out_f, in_f], in_f, out_f, rng),
        )?;
        let bias = if bias {
            Some(params.add(
                scope.name("bias"),
                Init::UniformFanIn.make(&[out_f], in_f, out_f, rng),
            )?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let b = self.bias.map(|b| cx.param(b));
        ops::linear(cx.tape, x, &cx.param(self.weight), b.as_ref())
    }
}
