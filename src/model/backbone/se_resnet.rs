//! The SE-ResNet backbone: stem, four stages of residual SE blocks; with
//! `se_reduction = 0` the plain ResNet (torchvision's layout: stride on the
//! 3x3 convolution, 1x1 + BN downsample). Its parameter names
//! (`stem.conv.weight`, `layer1.0.conv1.weight`, ...) follow torchvision's
//! except the stem's, and key every checkpoint written so far.

use super::blocks::{BasicBlock, BlockSpec, Bottleneck};
use super::{Backbone, BuiltIn, Features};
use crate::model::footprint::{product, Footprint};
use crate::nn::{BatchNorm2d, Buffers, Conv2d, ConvSpec, Ctx, Scope};
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

/// `[model.backbone] kind = "se_resnet"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeResNetConfig {
    /// 10, 18, 34 (basic blocks) or 50 (bottlenecks).
    pub depth: usize,
    /// Scales the stage widths 64/128/256/512 (at least 8 channels each).
    pub width_mult: f64,
    /// The SE gate's channel reduction; 0: no SE (a plain ResNet).
    pub se_reduction: usize,
    /// Rounds the SE gate's hidden width to a multiple of this (timm's
    /// SE-ResNets: 8); 1: `C / se_reduction` as it is.
    pub se_divisor: usize,
    pub stem: Stem,
}

impl Default for SeResNetConfig {
    fn default() -> Self {
        SeResNetConfig {
            depth: 18,
            width_mult: 1.0,
            se_reduction: 16,
            se_divisor: 1,
            stem: Stem::Imagenet,
        }
    }
}

impl SeResNetConfig {
    /// `section` prefixes the keys in messages (`model.backbone`).
    pub fn validate(&self, section: &str) -> Result<()> {
        layout(self.depth).map_err(|allowed| {
            Error::Config(format!(
                "{section}.depth = {}: allowed values: {allowed}",
                self.depth
            ))
        })?;
        if self.se_divisor == 0 {
            return Err(Error::Config(format!(
                "{section}.se_divisor = 0: must be >= 1 (1: no rounding)"
            )));
        }
        if !(self.width_mult > 0.0) {
            return Err(Error::Config(format!(
                "{section}.width_mult = {}: must be > 0",
                self.width_mult
            )));
        }
        Ok(())
    }
}

/// What [`SeResNet::new`] builds and [`SeResNetConfig::footprint`] counts.
struct Plan {
    stem_channels: usize,
    bottleneck: bool,
    /// (stage, index in the stage, spec) of every block, in build order.
    blocks: Vec<(usize, usize, BlockSpec)>,
}

impl SeResNetConfig {
    fn plan(&self) -> Result<Plan> {
        self.validate("model.backbone")?;
        let (counts, bottleneck) = layout(self.depth).expect("validated");
        // `as usize` saturates: an absurd width_mult gives usize::MAX
        // channels, which the footprint counts (and the memory check refuses).
        let w = |c: usize| ((c as f64 * self.width_mult).round() as usize).max(8);
        let expansion = if bottleneck {
            Bottleneck::EXPANSION
        } else {
            BasicBlock::EXPANSION
        };
        let mut blocks = Vec::new();
        let mut c_in = w(64);
        for (stage, (&n, base)) in counts.iter().zip([64, 128, 256, 512]).enumerate() {
            let width = w(base);
            for i in 0..n {
                let spec = BlockSpec {
                    c_in,
                    width,
                    stride: if i == 0 && stage > 0 { 2 } else { 1 },
                    se_reduction: self.se_reduction,
                    se_divisor: self.se_divisor,
                };
                blocks.push((stage, i, spec));
                c_in = width.saturating_mul(expansion);
            }
        }
        Ok(Plan {
            stem_channels: w(64),
            bottleneck,
            blocks,
        })
    }

    /// The keys that size the model, with their values, for memory messages.
    pub fn size_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            ("width_mult", self.width_mult.to_string()),
            ("depth", self.depth.to_string()),
        ]
    }

    /// Parameters and training activations per image of `image_size`
    /// pixels a side, lower bounds ([`Footprint`]): the input; the stem's
    /// weights and its conv and normalised outputs; each block's
    /// convolution weights and, per convolution, its output and normalised
    /// output at the block's output resolution. Shortcuts, SE gates and
    /// batch-norm parameters are left out.
    pub fn footprint(&self, image_size: usize) -> Result<Footprint> {
        let Plan {
            stem_channels: stem_c,
            bottleneck,
            blocks,
        } = self.plan()?;
        let mut f = Footprint::default();
        let (k, stride) = match self.stem {
            Stem::Imagenet => (7, 2),
            Stem::Small => (3, 1),
        };
        let mut side = image_size.div_ceil(stride);
        f.add(
            product(&[3, stem_c, k, k]),
            product(&[3, image_size, image_size]).saturating_add(product(&[2, side, side, stem_c])),
        );
        if self.stem == Stem::Imagenet {
            side = side.div_ceil(2);
        }
        for (_, _, b) in blocks {
            side = side.div_ceil(b.stride);
            let (c, w) = (b.c_in, b.width);
            let (params, maps) = if bottleneck {
                let params = product(&[c, w])
                    .saturating_add(product(&[9, w, w]))
                    .saturating_add(product(&[w, Bottleneck::EXPANSION, w]));
                (
                    params,
                    product(&[2, side, side, w, 2 + Bottleneck::EXPANSION]),
                )
            } else {
                let params = product(&[9, c, w]).saturating_add(product(&[9, w, w]));
                (params, product(&[2, side, side, w, 2]))
            };
            f.add(params, maps);
        }
        Ok(f)
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Block {
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
    pub(crate) stem_conv: Conv2d,
    pub(crate) stem_bn: BatchNorm2d,
    pub(crate) stem: Stem,
    pub(crate) blocks: Vec<Block>,
    /// Channels of the last stage's output.
    pub out_channels: usize,
}

/// Blocks per stage for each supported depth, and whether they are
/// bottlenecks; the allowed depths otherwise.
fn layout(depth: usize) -> std::result::Result<([usize; 4], bool), &'static str> {
    Ok(match depth {
        10 => ([1, 1, 1, 1], false),
        18 => ([2, 2, 2, 2], false),
        34 => ([3, 4, 6, 3], false),
        50 => ([3, 4, 6, 3], true),
        _ => return Err("10, 18, 34, 50"),
    })
}

impl SeResNet {
    /// Registers the stem and the blocks under `s`, in the order (and so
    /// with the RNG draws) every SE-ResNet checkpoint was initialised with.
    pub fn new(
        p: &mut Params,
        b: &mut Buffers,
        s: &Scope,
        config: &SeResNetConfig,
        rng: &mut Rng,
    ) -> Result<Self> {
        let Plan {
            stem_channels: stem_c,
            bottleneck,
            blocks: plan,
        } = config.plan()?;
        let stem_spec = match config.stem {
            Stem::Imagenet => {
                ConvSpec::new(3, stem_c, 7).prm(Conv2dParams::new().stride(2).padding(3))
            }
            Stem::Small => ConvSpec::new(3, stem_c, 3).prm(Conv2dParams::new().padding(1)),
        };
        let stem_conv = Conv2d::new(p, &s.pp("stem").pp("conv"), stem_spec, rng)?;
        let stem_bn = BatchNorm2d::new(p, b, &s.pp("stem").pp("bn"), stem_c)?;
        let mut blocks = Vec::new();
        let mut c_in = stem_c;
        for (stage, i, spec) in plan {
            let bs = s.pp(format!("layer{}", stage + 1)).pp(i);
            if bottleneck {
                blocks.push(Block::Bottleneck(Bottleneck::new(p, b, &bs, spec, rng)?));
                c_in = spec.width * Bottleneck::EXPANSION;
            } else {
                blocks.push(Block::Basic(BasicBlock::new(p, b, &bs, spec, rng)?));
                c_in = spec.width * BasicBlock::EXPANSION;
            }
        }
        Ok(SeResNet {
            stem_conv,
            stem_bn,
            stem: config.stem,
            blocks,
            out_channels: c_in,
        })
    }
}

impl Backbone for SeResNet {
    /// NHWC images [N, H, W, 3] -> feature map [N, h, w, out_channels].
    fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
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

    fn out_features(&self) -> usize {
        self.out_channels
    }

    fn output(&self) -> Features {
        Features::Map
    }

    fn built_in(&self) -> Option<BuiltIn<'_>> {
        Some(BuiltIn::SeResnet(self))
    }
}
