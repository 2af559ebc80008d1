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
    /// PyTorch's default initialisation: weight and bias
    /// Uniform(±1/sqrt(in_f)).
    pub fn new(
        params: &mut Params,
        scope: &Scope,
        in_f: usize,
        out_f: usize,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        let bias = bias.then_some(Init::UniformFanIn);
        Self::with_init(params, scope, in_f, out_f, Init::UniformFanIn, bias, rng)
    }

    /// `weight`-initialised, with a `bias`-initialised bias where given.
    pub fn with_init(
        params: &mut Params,
        scope: &Scope,
        in_f: usize,
        out_f: usize,
        weight: Init,
        bias: Option<Init>,
        rng: &mut Rng,
    ) -> Result<Self> {
        let weight = params.add(
            scope.name("weight"),
            weight.make(&[out_f, in_f], in_f, out_f, rng),
        )?;
        let bias = match bias {
            Some(init) => {
                Some(params.add(scope.name("bias"), init.make(&[out_f], in_f, out_f, rng))?)
            }
            None => None,
        };
        Ok(Linear { weight, bias })
    }

    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let b = self.bias.map(|b| cx.param(b));
        ops::linear(cx.tape, x, &cx.param(self.weight), b.as_ref())
    }
}
