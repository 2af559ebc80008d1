//! Residual blocks with squeeze-and-excitation on the residual branch, or
//! without it (the plain torchvision ResNet: `se_reduction = 0`).

use crate::nn::{BatchNorm2d, Buffers, Conv2d, ConvSpec, Ctx, Scope, SeBlock};
use crate::ops::conv::Conv2dParams;
use crate::{ops, Params, Result, Rng, Var};

/// What a residual block is built from (its name comes from its scope).
#[derive(Clone, Copy, Debug)]
pub struct BlockSpec {
    pub c_in: usize,
    /// Channels of the inner convolutions (the output is `width * EXPANSION`).
    pub width: usize,
    /// Stride of the block's spatial convolution (and of the shortcut).
    pub stride: usize,
    /// 0: no SE block; else the gate's hidden width is
    /// `SeBlock::hidden(out, se_reduction, se_divisor)`.
    pub se_reduction: usize,
    pub se_divisor: usize,
}

impl BlockSpec {
    /// The block's SE gate over its `out` channels, unless SE is off.
    fn se(
        &self,
        p: &mut Params,
        block: &Scope,
        out: usize,
        rng: &mut Rng,
    ) -> Result<Option<SeBlock>> {
        if self.se_reduction == 0 {
            return Ok(None);
        }
        let hidden = SeBlock::hidden(out, self.se_reduction, self.se_divisor);
        SeBlock::new(p, &block.pp("se"), out, hidden, rng).map(Some)
    }
}

/// 1x1 conv + BN that matches the shortcut to a changed width or stride.
#[derive(Clone, Debug)]
pub struct Downsample {
    pub(crate) conv: Conv2d,
    pub(crate) bn: BatchNorm2d,
}

impl Downsample {
    /// Present only where the shortcut changes shape; registered as
    /// `<block>.downsample.{0,1}` (torchvision's names).
    fn build(
        p: &mut Params,
        b: &mut Buffers,
        block: &Scope,
        (c_in, c_out, stride): (usize, usize, usize),
        rng: &mut Rng,
    ) -> Result<Option<Self>> {
        if stride == 1 && c_in == c_out {
            return Ok(None);
        }
        let s = block.pp("downsample");
        let spec = ConvSpec::new(c_in, c_out, 1).prm(Conv2dParams::new().stride(stride));
        Ok(Some(Downsample {
            conv: Conv2d::new(p, &s.pp(0), spec, rng)?,
            bn: BatchNorm2d::new(p, b, &s.pp(1), c_out)?,
        }))
    }

    fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let y = self.conv.forward(cx, x)?;
        self.bn.forward(cx, &y)
    }
}

/// Run first in a block's forward, so that its conv's input gradient comes
/// last in the backward and adds onto the main branch's (in place: a 1x1
/// stride-2 conv then only touches the pixels it reads, with no zero fill).
fn shortcut(ds: &Option<Downsample>, cx: &mut Ctx, x: &Var) -> Result<Var> {
    match ds {
        Some(d) => d.forward(cx, x),
        None => Ok(x.clone()),
    }
}

/// `relu(se(h) + shortcut)`, or `relu(h + shortcut)` without SE.
fn end(se: &Option<SeBlock>, cx: &mut Ctx, h: &Var, shortcut: &Var) -> Result<Var> {
    match se {
        Some(se) => se.forward_add_relu(cx, h, shortcut),
        None => ops::relu(cx.tape, &ops::add(cx.tape, h, shortcut)?),
    }
}

/// conv3x3 - BN - ReLU - conv3x3 - BN - SE (if on), plus the shortcut, then ReLU.
#[derive(Clone, Debug)]
pub struct BasicBlock {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm2d,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: BatchNorm2d,
    pub(crate) se: Option<SeBlock>,
    pub(crate) downsample: Option<Downsample>,
}

impl BasicBlock {
    pub const EXPANSION: usize = 1;

    pub fn new(
        p: &mut Params,
        b: &mut Buffers,
        s: &Scope,
        spec: BlockSpec,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (c_in, width, stride) = (spec.c_in, spec.width, spec.stride);
        let k3 = |c_in, stride| {
            ConvSpec::new(c_in, width, 3).prm(Conv2dParams::new().stride(stride).padding(1))
        };
        Ok(BasicBlock {
            conv1: Conv2d::new(p, &s.pp("conv1"), k3(c_in, stride), rng)?,
            bn1: BatchNorm2d::new(p, b, &s.pp("bn1"), width)?,
            conv2: Conv2d::new(p, &s.pp("conv2"), k3(width, 1), rng)?,
            bn2: BatchNorm2d::new(p, b, &s.pp("bn2"), width)?,
            se: spec.se(p, s, width, rng)?,
            downsample: Downsample::build(p, b, s, (c_in, width, stride), rng)?,
        })
    }

    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let s = shortcut(&self.downsample, cx, x)?;
        let h = self.conv1.forward(cx, x)?;
        let h = self.bn1.forward_relu(cx, &h)?;
        let h = self.conv2.forward(cx, &h)?;
        let h = self.bn2.forward(cx, &h)?;
        end(&self.se, cx, &h, &s)
    }
}

/// 1x1 - BN - ReLU - 3x3(stride) - BN - ReLU - 1x1 (x4) - BN - SE (if on), plus shortcut, ReLU.
#[derive(Clone, Debug)]
pub struct Bottleneck {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm2d,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: BatchNorm2d,
    pub(crate) conv3: Conv2d,
    pub(crate) bn3: BatchNorm2d,
    pub(crate) se: Option<SeBlock>,
    pub(crate) downsample: Option<Downsample>,
}

impl Bottleneck {
    pub const EXPANSION: usize = 4;

    pub fn new(
        p: &mut Params,
        b: &mut Buffers,
        s: &Scope,
        spec: BlockSpec,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (c_in, width) = (spec.c_in, spec.width);
        let out = width * Self::EXPANSION;
        let k3 = Conv2dParams::new().stride(spec.stride).padding(1);
        Ok(Bottleneck {
            conv1: Conv2d::new(p, &s.pp("conv1"), ConvSpec::new(c_in, width, 1), rng)?,
            bn1: BatchNorm2d::new(p, b, &s.pp("bn1"), width)?,
            conv2: Conv2d::new(
                p,
                &s.pp("conv2"),
                ConvSpec::new(width, width, 3).prm(k3),
                rng,
            )?,
            bn2: BatchNorm2d::new(p, b, &s.pp("bn2"), width)?,
            conv3: Conv2d::new(p, &s.pp("conv3"), ConvSpec::new(width, out, 1), rng)?,
            bn3: BatchNorm2d::new(p, b, &s.pp("bn3"), out)?,
            se: spec.se(p, s, out, rng)?,
            downsample: Downsample::build(p, b, s, (c_in, out, spec.stride), rng)?,
        })
    }

    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let s = shortcut(&self.downsample, cx, x)?;
        let h = self.conv1.forward(cx, x)?;
        let h = self.bn1.forward_relu(cx, &h)?;
        let h = self.conv2.forward(cx, &h)?;
        let h = self.bn2.forward_relu(cx, &h)?;
        let h = self.conv3.forward(cx, &h)?;
        let h = self.bn3.forward(cx, &h)?;
        end(&self.se, cx, &h, &s)
    }
}
