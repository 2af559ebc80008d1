use super::{Ctx, Init};
use crate::ops::conv::Conv2dParams;
use crate::{ops, ParamId, Params, Result, Rng, Var};

/// 2-D convolution over NHWC input, weight [K, R, S, C/groups].
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
    pub prm: Conv2dParams,
}

impl Conv2d {
    /// A `kernel x kernel` convolution `c_in -> c_out`, He-initialised (fan-out).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        params: &mut Params,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        prm: Conv2dParams,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Self> {
        let cg = c_in / prm.groups.max(1);
        let fan_out = c_out * kernel * kernel / prm.groups.max(1);
        let fan_in = cg * kernel * kernel;
        let weight = params.add(
            format!("{name}.weight"),
            Init::KaimingNormalFanOut.make(&[c_out, kernel, kernel, cg], fan_in, fan_out, rng),
        )?;
        let bias = if bias {
            Some(params.add(
                format!("{name}.bias"),
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
