//! The SE-ResNet backbone: stem, four stages of residual SE blocks.

use super::blocks::{BasicBlock, Bottleneck};
use crate::nn::{BatchNorm2d, Buffers, Conv2d, Ctx};
use crate::ops::conv::Conv2dParams;
use crate::ops::pool::Pool2dParams;
use crate::{ops, Error, Params, Result, Rng, Var};
use serde::{Deserialize, Serialize};

/// How the network first reduces the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// 7x7/2 conv + 3x3/2 max-pool: the ImageNet ResNet stem (112 -> 28).
    Imagenet,
    /// 3x3/1 conv, no pool: keeps resolution for small inputs (64x64 on CPU).
    Small,
}

#[derive(Clone, Debug)]
enum Block {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

impl Block {
    fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        match self {
            Block::Basic(b) => b.forward(cx, x),
            Block::Bottleneck(b) => b.forward(cx, x),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SeResNet {
    stem_conv: Conv2d,
    stem_bn: BatchNorm2d,
    stem: Stem,
    blocks: Vec<Block>,
    /// Channels of the last stage's output.
    pub out_channels: usize,
}

/// Blocks per stage for each supported depth, and whether they are bottlenecks.
fn layout(depth: usize) -> Result<([usize; 4], bool)> {
    Ok(match depth {
        10 => ([1, 1, 1, 1], false),
        18 => ([2, 2, 2, 2], false),
        34 => ([3, 4, 6, 3], false),
        50 => ([3, 4, 6, 3], true),
        _ => {
            return Err(Error::Config(format!(
                "model.depth = {depth}: allowed values are 10, 18, 34, 50"
            )))
        }
    })
}

impl SeResNet {
    /// `width_mult` scales the stage widths 64/128/256/512 (at least 8 channels each).
    pub fn new(
        p: &mut Params,
        b: &mut Buffers,
        depth: usize,
        width_mult: f64,
        se_reduction: usize,
        stem: Stem,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (counts, bottleneck) = layout(depth)?;
        if !(width_mult > 0.0) {
            return Err(Error::Config(format!(
                "model.width_mult = {width_mult}: must be > 0"
            )));
        }
        let w = |c: usize| ((c as f64 * width_mult).round() as usize).max(8);
        let stem_c = w(64);
        let stem_conv = match stem {
            Stem::Imagenet => Conv2d::new(
                p,
                "stem.conv",
                3,
                stem_c,
                7,
                Conv2dParams::new().stride(2).padding(3),
                false,
                rng,
            )?,
            Stem::Small => Conv2d::new(
                p,
                "stem.conv",
                3,
                stem_c,
                3,
                Conv2dParams::new().padding(1),
                false,
                rng,
            )?,
        };
        let stem_bn = BatchNorm2d::new(p, b, "stem.bn", stem_c)?;
        let mut blocks = Vec::new();
        let mut c_in = stem_c;
        for (stage, (&n, base)) in counts.iter().zip([64, 128, 256, 512]).enumerate() {
            let width = w(base);
            for i in 0..n {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let name = format!("layer{}.{i}", stage + 1);
                if bottleneck {
                    blocks.push(Block::Bottleneck(Bottleneck::new(
                        p,
                        b,
                        &name,
                        c_in,
                        width,
                        stride,
                        se_reduction,
                        rng,
                    )?));
                    c_in = width * Bottleneck::EXPANSION;
                } else {
                    blocks.push(Block::Basic(BasicBlock::new(
                        p,
                        b,
                        &name,
                        c_in,
                        width,
                        stride,
                        se_reduction,
                        rng,
                    )?));
                    c_in = width * BasicBlock::EXPANSION;
                }
            }
        }
        Ok(SeResNet {
            stem_conv,
            stem_bn,
            stem,
            blocks,
            out_channels: c_in,
        })
    }

    /// NHWC images [N, H, W, 3] -> feature map [N, h, w, out_channels].
    pub fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let h = self.stem_conv.forward(cx, x)?;
        let mut h = self.stem_bn.forward_relu(cx, &h)?;
        if self.stem == Stem::Imagenet {
            h = ops::max_pool2d(cx.tape, &h, Pool2dParams::new(3, 2).padding(1))?;
        }
        for blk in &self.blocks {
            h = blk.forward(cx, &h)?;
        }
        Ok(h)
    }
}
