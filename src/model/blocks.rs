//! Residual blocks with squeeze-and-excitation on the residual branch.

use crate::nn::{BatchNorm2d, Buffers, Conv2d, Ctx, SeBlock};
use crate::ops::conv::Conv2dParams;
use crate::{Params, Result, Rng, Var};

/// 1x1 conv + BN that matches the shortcut to a changed width or stride.
#[derive(Clone, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl Downsample {
    fn new(
        p: &mut Params,
        b: &mut Buffers,
        name: &str,
        c_in: usize,
        c_out: usize,
        stride: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(Downsample {
            conv: Conv2d::new(
                p,
                &format!("{name}.0"),
                c_in,
                c_out,
                1,
                Conv2dParams::new().stride(stride),
                false,
                rng,
            )?,
            bn: BatchNorm2d::new(p, b, &format!("{name}.1"), c_out)?,
        })
    }

    fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let y = self.conv.forward(cx, x)?;
        self.bn.forward(cx, &y)
    }

    /// Present only where the shortcut changes shape.
    fn build(
        p: &mut Params,
        b: &mut Buffers,
        name: &str,
        c_in: usize,
        c_out: usize,
        stride: usize,
        rng: &mut Rng,
    ) -> Result<Option<Self>> {
        if stride == 1 && c_in == c_out {
            Ok(None)
        } else {
            Self::new(
                p,
                b,
                &format!("{name}.downsample"),
                c_in,
                c_out,
                stride,
                rng,
            )
            .map(Some)
        }
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

/// conv3x3 - BN - ReLU - conv3x3 - BN - SE, plus the shortcut, then ReLU.
#[derive(Clone, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    se: SeBlock,
    downsample: Option<Downsample>,
}

impl BasicBlock {
    pub const EXPANSION: usize = 1;

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &mut Params,
        b: &mut Buffers,
        name: &str,
        c_in: usize,
        width: usize,
        stride: usize,
        se_reduction: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let k3 = |s: usize| Conv2dParams::new().stride(s).padding(1);
        Ok(BasicBlock {
            conv1: Conv2d::new(
                p,
                &format!("{name}.conv1"),
                c_in,
                width,
                3,
                k3(stride),
                false,
                rng,
            )?,
            bn1: BatchNorm2d::new(p, b, &format!("{name}.bn1"), width)?,
            conv2: Conv2d::new(
                p,
                &format!("{name}.conv2"),
                width,
                width,
                3,
                k3(1),
                false,
                rng,
            )?,
            bn2: BatchNorm2d::new(p, b, &format!("{name}.bn2"), width)?,
            se: SeBlock::new(p, &format!("{name}.se"), width, se_reduction, rng)?,
            downsample: Downsample::build(p, b, name, c_in, width, stride, rng)?,
        })
    }

    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let s = shortcut(&self.downsample, cx, x)?;
        let h = self.conv1.forward(cx, x)?;
        let h = self.bn1.forward_relu(cx, &h)?;
        let h = self.conv2.forward(cx, &h)?;
        let h = self.bn2.forward(cx, &h)?;
        self.se.forward_add_relu(cx, &h, &s)
    }
}

/// 1x1 - BN - ReLU - 3x3(stride) - BN - ReLU - 1x1 (x4) - BN - SE, plus shortcut, ReLU.
#[derive(Clone, Debug)]
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    conv3: Conv2d,
    bn3: BatchNorm2d,
    se: SeBlock,
    downsample: Option<Downsample>,
}

impl Bottleneck {
    pub const EXPANSION: usize = 4;

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &mut Params,
        b: &mut Buffers,
        name: &str,
        c_in: usize,
        width: usize,
        stride: usize,
        se_reduction: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let out = width * Self::EXPANSION;
        Ok(Bottleneck {
            conv1: Conv2d::new(
                p,
                &format!("{name}.conv1"),
                c_in,
                width,
                1,
                Conv2dParams::new(),
                false,
                rng,
            )?,
            bn1: BatchNorm2d::new(p, b, &format!("{name}.bn1"), width)?,
            conv2: Conv2d::new(
                p,
                &format!("{name}.conv2"),
                width,
                width,
                3,
                Conv2dParams::new().stride(stride).padding(1),
                false,
                rng,
            )?,
            bn2: BatchNorm2d::new(p, b, &format!("{name}.bn2"), width)?,
            conv3: Conv2d::new(
                p,
                &format!("{name}.conv3"),
                width,
                out,
                1,
                Conv2dParams::new(),
                false,
                rng,
            )?,
            bn3: BatchNorm2d::new(p, b, &format!("{name}.bn3"), out)?,
            se: SeBlock::new(p, &format!("{name}.se"), out, se_reduction, rng)?,
            downsample: Downsample::build(p, b, name, c_in, out, stride, rng)?,
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
        self.se.forward_add_relu(cx, &h, &s)
    }
}
