//! The transposed convolution layer (the generator's learned upsampling).

use super::{ConvSpec, Ctx, Init, Scope};
use crate::ops::conv::Conv2dParams;
use crate::{ops, ParamId, Params, Result, Rng, Var};

/// Transposed 2-D convolution over NHWC input, weight [C_in, R, S, C_out]
/// (the layout of [`ops::conv_transpose2d`]): the generator's learned upsampling.
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
    pub prm: Conv2dParams,
    pub output_padding: [usize; 2],
}

impl ConvTranspose2d {
    /// `spec`'s transposed convolution, named in `scope`. He init on
    /// the fan-in each output pixel sees on average (`c_in·k²/stride²`).
    pub fn new(params: &mut Params, scope: &Scope, spec: ConvSpec, rng: &mut Rng) -> Result<Self> {
        let (prm, k) = (spec.prm, spec.kernel);
        let stride2 = (prm.stride[0] * prm.stride[1]).max(1);
        let fan_in = (spec.c_in * k * k / stride2).max(1);
        // KaimingNormalFanOut draws N(0, 2/fan_out); pass the fan-in in its place.
        let weight = params.add(
            scope.name("weight"),
            Init::KaimingNormalFanOut.make(&[spec.c_in, k, k, spec.c_out], fan_in, fan_in, rng),
        )?;
        let bias = if spec.bias {
            Some(params.add(
                scope.name("bias"),
                Init::Zeros.make(&[spec.c_out], 1, 1, rng),
            )?)
        } else {
            None
        };
        Ok(ConvTranspose2d {
            weight,
            bias,
            prm,
            output_padding: [0, 0],
        })
    }

    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let b = self.bias.map(|b| cx.param(b));
        ops::conv_transpose2d(
            cx.tape,
            x,
            &cx.param(self.weight),
            b.as_ref(),
            self.prm,
            self.output_padding,
        )
    }
}
