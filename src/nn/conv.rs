//! The convolution layer, and the shape spec it shares with the transposed one.

use super::{Ctx, Init, Scope};
use crate::ops::conv::Conv2dParams;
use crate::{ops, ParamId, Params, Result, Rng, Var};

/// Shape and options of a (transposed) convolution layer.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    /// Square kernel side.
    pub kernel: usize,
    pub prm: Conv2dParams,
    pub bias: bool,
}

impl ConvSpec {
    /// A `kernel x kernel` convolution `c_in -> c_out`: stride 1, no padding, no bias.
    pub fn new(c_in: usize, c_out: usize, kernel: usize) -> Self {
        ConvSpec {
            c_in,
            c_out,
            kernel,
            prm: Conv2dParams::new(),
            bias: false,
        }
    }

    /// The same with stride, padding, dilation and groups from `prm`.
    pub fn prm(self, prm: Conv2dParams) -> Self {
        ConvSpec { prm, ..self }
    }

    /// The same with a bias.
    pub fn bias(self) -> Self {
        ConvSpec { bias: true, ..self }
    }
}

/// 2-D convolution over NHWC input, weight [K, R, S, C/groups].
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
    pub prm: Conv2dParams,
}

impl Conv2d {
    /// `spec`'s convolution, He-initialised (fan-out), named in `scope`.
    pub fn new(params: &mut Params, scope: &Scope, spec: ConvSpec, rng: &mut Rng) -> Result<Self> {
        let ConvSpec {
            c_in,
            c_out,
            kernel,
            prm,
            bias,
        } = spec;
        let cg = c_in / prm.groups.max(1);
        let fan_out = c_out * kernel * kernel / prm.groups.max(1);
        let fan_in = cg * kernel * kernel;
        let weight = params.add(
            scope.name("weight"),
            Init::KaimingNormalFanOut.make(&[c_out, kernel, kernel, cg], fan_in, fan_out, rng),
        )?;
        let bias = if bias {
            Some(params.add(
                scope.name("bias"),
                Init::UniformFanIn.make(&[c_out], fan_in, fan_out, rng),
            )?)
        } else {
            None
        };
        Ok(Conv2d { weight, bias, prm })
    }

    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let b = self.bias.map(|b| cx.param(b));
        ops::conv2d(cx.tape, x, &cx.param(self.weight), b.as_ref(), self.prm)
    }
}
