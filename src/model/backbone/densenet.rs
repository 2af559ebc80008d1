//! DenseNet (torchvision's `densenet121/169/201` layout): a stem conv7x7/2 -
//! BN - ReLU - maxpool 3/2, dense blocks whose every layer reads the channel
//! concatenation of the block input and all earlier layers' outputs
//! (BN - ReLU - conv1x1 to `bn_size · growth_rate` - BN - ReLU - conv3x3 to
//! `growth_rate`, dropout after it when training), transitions between the
//! blocks (BN - ReLU - conv1x1 halving the channels - avgpool 2/2), and a
//! final BN and ReLU. It outputs that feature map (NHWC), which the neck
//! pools like the SE-ResNet's. The ABAW4 multi-task winner used DenseNet
//! features.
//!
//! Parameter and buffer names are torchvision's (`features.conv0`,
//! `features.norm0`, `features.denseblock1.denselayer1.norm1`, ...,
//! `features.transition1.conv`, `features.norm5`), so importing its weights
//! is a layout conversion only (`import::densenet`); its `classifier` is not
//! built.
//!
//! Memory: each layer concatenates its block's input with every earlier
//! output into a new tensor (`ops::concat`), and the tape keeps that tensor
//! and its normalised copy for the backward, so a block of L layers keeps
//! O(L²) channels per pixel, not the O(L) of the outputs themselves.
//! torchvision's `memory_efficient` option (recomputing the concatenation
//! and first BN in the backward) is not built; the footprint counts the
//! quadratic term.

use super::{Backbone, BuiltIn, Features};
use crate::model::footprint::{product, Footprint};
use crate::nn::{BatchNorm2d, Buffers, Conv2d, ConvSpec, Ctx, Scope};
use crate::ops::conv::Conv2dParams;
use crate::ops::Pool2dParams;
use crate::{ops, Error, Params, Result, Rng, Var};
use serde::{Deserialize, Serialize};
use std::fmt;

/// `[model.backbone] kind = "densenet"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenseNetConfig {
    /// 121, 169 or 201: torchvision's layers per block.
    pub depth: usize,
    /// Layers per block, replacing `depth`'s (torchvision's `block_config`,
    /// for reduced models); the run header counts its depth as torchvision
    /// does (2 per layer, 1 per transition, the stem and the classifier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_config: Option<Vec<usize>>,
    /// Channels each dense layer adds (torchvision's `growth_rate`, 32).
    pub growth_rate: usize,
    /// Channels of the stem (torchvision's `num_init_features`, 64).
    pub init_features: usize,
    /// The 1x1 convolution's width in units of `growth_rate` (4).
    pub bn_size: usize,
    /// Dropout after each dense layer (torchvision's `drop_rate`, 0).
    pub dropout: f64,
}

impl Default for DenseNetConfig {
    fn default() -> Self {
        DenseNetConfig {
            depth: 121,
            block_config: None,
            growth_rate: 32,
            init_features: 64,
            bn_size: 4,
            dropout: 0.0,
        }
    }
}

/// torchvision's layers per block for each supported depth; the allowed
/// depths otherwise.
fn layout(depth: usize) -> std::result::Result<Vec<usize>, &'static str> {
    Ok(match depth {
        121 => vec![6, 12, 24, 16],
        169 => vec![6, 12, 32, 32],
        201 => vec![6, 12, 48, 32],
        _ => return Err("121, 169, 201"),
    })
}

/// The input channels of a block's `layers` layers summed, the first
/// reading `c0` and each next `g` more: the quadratic term. Saturating.
fn read_channels(c0: usize, g: usize, layers: usize) -> u128 {
    let l = layers as u128;
    let pairs = l.saturating_mul(l.saturating_sub(1)) / 2;
    l.saturating_mul(c0 as u128)
        .saturating_add(pairs.saturating_mul(g as u128))
}

/// Side of a conv7x7/2 pad 3 then a maxpool 3/2 pad 1 over `image` pixels.
fn stem_sides(image: usize) -> (usize, usize) {
    let conv = image.div_ceil(2);
    (conv, conv.div_ceil(2))
}

impl DenseNetConfig {
    /// Layers per block: `block_config`, or `depth`'s.
    pub fn blocks(&self) -> Vec<usize> {
        match &self.block_config {
            Some(b) => b.clone(),
            None => layout(self.depth).unwrap_or_default(),
        }
    }

    /// `section` prefixes the keys in messages (`model.backbone`).
    pub fn validate(&self, section: &str) -> Result<()> {
        let bad = |key: &str, v: &dyn fmt::Display, why: &str| {
            Err(Error::Config(format!("{section}.{key} = {v}: {why}")))
        };
        if let Err(allowed) = layout(self.depth) {
            return bad("depth", &self.depth, &format!("allowed values: {allowed}"));
        }
        if let Some(b) = &self.block_config {
            if b.is_empty() || b.contains(&0) {
                return bad(
                    "block_config",
                    &format!("{b:?}"),
                    "must list at least one block of at least one layer",
                );
            }
        }
        for (key, v) in [
            ("growth_rate", self.growth_rate),
            ("init_features", self.init_features),
            ("bn_size", self.bn_size),
        ] {
            if v == 0 {
                return bad(key, &v, "must be >= 1");
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", &self.dropout, "must be in [0, 1)");
        }
        Ok(())
    }

    /// An error naming the keys unless every transition's 2x2 pool has a
    /// map of at least 2x2 to pool: each halves the side, so the input must
    /// grow with the number of blocks.
    pub fn check_image_size(&self, section: &str, image_size: usize) -> Result<()> {
        let transitions = self.blocks().len().saturating_sub(1) as u32;
        // After the stem the side is ceil(image / 4); the last transition
        // pools side / 2^(transitions - 1), which must be >= 2.
        let side = 2usize.saturating_pow(transitions);
        if stem_sides(image_size).1 >= side {
            return Ok(());
        }
        let min = side.saturating_sub(1).saturating_mul(4).saturating_add(1);
        Err(Error::Config(format!(
            "data.image_size = {image_size} is too small for {section}'s {} blocks \
             ({}): each transition halves the map, so images need at least {min} pixels a side",
            transitions + 1,
            self.name_keys()
        )))
    }

    /// `depth`, or `block_config` when it replaces it, as `key = value`.
    fn name_keys(&self) -> String {
        match &self.block_config {
            Some(b) => format!("block_config = {b:?}"),
            None => format!("depth = {}", self.depth),
        }
    }

    /// The keys that size the model, with their values, for memory messages.
    pub fn size_keys(&self) -> Vec<(&'static str, String)> {
        let layers = match &self.block_config {
            Some(b) => ("block_config", format!("{b:?}")),
            None => ("depth", self.depth.to_string()),
        };
        vec![
            ("growth_rate", self.growth_rate.to_string()),
            layers,
            ("init_features", self.init_features.to_string()),
        ]
    }

    /// Parameters and training activations per image of `image_size`
    /// pixels a side, lower bounds ([`Footprint`]): the input; the stem's
    /// weights, its conv and normalised outputs and the pooled map; per
    /// dense layer, its convolutions' weights and the maps the tape keeps
    /// (the concatenated input and its normalised copy, both convolutions'
    /// inputs and the 1x1 one's output: the quadratic term); per
    /// transition, its input, normalised input and convolution weights; the
    /// final concatenation and its normalised map. Batch-norm parameters,
    /// the 3x3 outputs (inside the next concatenation) and pooled
    /// transition outputs are left out.
    pub fn footprint(&self, image_size: usize) -> Result<Footprint> {
        self.validate("model.backbone")?;
        self.check_image_size("model.backbone", image_size)?;
        let (g, bottleneck) = (
            self.growth_rate,
            self.bn_size.saturating_mul(self.growth_rate),
        );
        let (conv_side, mut side) = stem_sides(image_size);
        let mut c = self.init_features;
        let mut f = Footprint::default();
        f.add(
            product(&[49, 3, c]),
            product(&[3, image_size, image_size])
                .saturating_add(product(&[2, conv_side, conv_side, c]))
                .saturating_add(product(&[side, side, c])),
        );
        let blocks = self.blocks();
        for (i, &layers) in blocks.iter().enumerate() {
            // Summed over the block's layers in closed form (a huge
            // block_config gives a huge count at once, not a long loop).
            let read = read_channels(c, g, layers);
            let l = layers as u128;
            f.add(
                read.saturating_mul(bottleneck as u128)
                    .saturating_add(l.saturating_mul(product(&[9, bottleneck, g]))),
                product(&[2, side, side])
                    .saturating_mul(read.saturating_add(l.saturating_mul(bottleneck as u128))),
            );
            c = c.saturating_add(layers.saturating_mul(g));
            // Pooling itself keeps nothing: a transition's maps and the
            // final ones are its input and normalised input alike.
            let maps = product(&[2, side, side, c]);
            if i + 1 < blocks.len() {
                f.add(product(&[c, c / 2]), maps);
                c /= 2;
                side /= 2;
            } else {
                f.add(0, maps);
            }
        }
        Ok(f)
    }
}

/// "DenseNet-121", with the keys a reduced model changes ("DenseNet-21
/// growth_rate 8 init_features 16 bn_size 2").
impl fmt::Display for DenseNetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks = self.blocks();
        // torchvision's count: two convolutions per layer, one per
        // transition, the stem's and the classifier.
        let depth = 2 * blocks.iter().sum::<usize>() + blocks.len() + 1;
        write!(f, "DenseNet-{depth}")?;
        let standard = DenseNetConfig::default();
        for (key, got, usual) in [
            ("growth_rate", self.growth_rate, standard.growth_rate),
            ("init_features", self.init_features, standard.init_features),
            ("bn_size", self.bn_size, standard.bn_size),
        ] {
            if got != usual {
                write!(f, " {key} {got}")?;
            }
        }
        Ok(())
    }
}

/// BN - ReLU - conv1x1 - BN - ReLU - conv3x3 (torchvision's `_DenseLayer`).
#[derive(Clone, Debug)]
pub(crate) struct DenseLayer {
    pub(crate) norm1: BatchNorm2d,
    pub(crate) conv1: Conv2d,
    pub(crate) norm2: BatchNorm2d,
    pub(crate) conv2: Conv2d,
}

impl DenseLayer {
    fn new(
        p: &mut Params,
        b: &mut Buffers,
        s: &Scope,
        c_in: usize,
        config: &DenseNetConfig,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (g, width) = (config.growth_rate, config.bn_size * config.growth_rate);
        let k3 = ConvSpec::new(width, g, 3).prm(Conv2dParams::new().padding(1));
        Ok(DenseLayer {
            norm1: BatchNorm2d::new(p, b, &s.pp("norm1"), c_in)?,
            conv1: Conv2d::new(p, &s.pp("conv1"), ConvSpec::new(c_in, width, 1), rng)?,
            norm2: BatchNorm2d::new(p, b, &s.pp("norm2"), width)?,
            conv2: Conv2d::new(p, &s.pp("conv2"), k3, rng)?,
        })
    }

    /// The `growth_rate` new channels from the concatenation `x`.
    fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let h = self.norm1.forward_relu(cx, x)?;
        let h = self.conv1.forward(cx, &h)?;
        let h = self.norm2.forward_relu(cx, &h)?;
        self.conv2.forward(cx, &h)
    }
}

/// BN - ReLU - conv1x1 - avgpool 2/2 (torchvision's `_Transition`).
#[derive(Clone, Debug)]
pub(crate) struct Transition {
    pub(crate) norm: BatchNorm2d,
    pub(crate) conv: Conv2d,
}

#[derive(Clone, Debug)]
pub struct DenseNet {
    pub(crate) conv0: Conv2d,
    pub(crate) norm0: BatchNorm2d,
    pub(crate) blocks: Vec<Vec<DenseLayer>>,
    /// One fewer than the blocks: after each but the last.
    pub(crate) transitions: Vec<Transition>,
    pub(crate) norm5: BatchNorm2d,
    dropout: f64,
    out_channels: usize,
}

impl DenseNet {
    /// Registers every parameter and buffer under `s`, in torchvision's
    /// order and with its names (all under `features.`).
    pub fn new(
        p: &mut Params,
        b: &mut Buffers,
        s: &Scope,
        config: &DenseNetConfig,
        rng: &mut Rng,
    ) -> Result<Self> {
        config.validate("model.backbone")?;
        let s = s.pp("features");
        let mut c = config.init_features;
        let stem = ConvSpec::new(3, c, 7).prm(Conv2dParams::new().stride(2).padding(3));
        let conv0 = Conv2d::new(p, &s.pp("conv0"), stem, rng)?;
        let norm0 = BatchNorm2d::new(p, b, &s.pp("norm0"), c)?;
        let (mut blocks, mut transitions) = (Vec::new(), Vec::new());
        let layout = config.blocks();
        for (i, &n) in layout.iter().enumerate() {
            let bs = s.pp(format!("denseblock{}", i + 1));
            let mut layers = Vec::with_capacity(n);
            for l in 0..n {
                let ls = bs.pp(format!("denselayer{}", l + 1));
                layers.push(DenseLayer::new(p, b, &ls, c, config, rng)?);
                c += config.growth_rate;
            }
            blocks.push(layers);
            if i + 1 < layout.len() {
                let ts = s.pp(format!("transition{}", i + 1));
                transitions.push(Transition {
                    norm: BatchNorm2d::new(p, b, &ts.pp("norm"), c)?,
                    conv: Conv2d::new(p, &ts.pp("conv"), ConvSpec::new(c, c / 2, 1), rng)?,
                });
                c /= 2;
            }
        }
        let norm5 = BatchNorm2d::new(p, b, &s.pp("norm5"), c)?;
        Ok(DenseNet {
            conv0,
            norm0,
            blocks,
            transitions,
            norm5,
            dropout: config.dropout,
            out_channels: c,
        })
    }
}

impl Backbone for DenseNet {
    /// NHWC images [N, H, W, 3] -> feature map [N, h, w, out_channels]
    /// after norm5 and ReLU (h = floor(ceil(H / 4) / 2^transitions)).
    fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let h = self.conv0.forward(cx, x)?;
        let h = self.norm0.forward_relu(cx, &h)?;
        let mut h = ops::max_pool2d(cx.tape, &h, Pool2dParams::new(3, 2).padding(1))?;
        for (i, layers) in self.blocks.iter().enumerate() {
            for layer in layers {
                let new = layer.forward(cx, &h)?;
                let new = ops::dropout(cx.tape, &new, self.dropout, cx.training, cx.rng)?;
                h = ops::concat(cx.tape, &[&h, &new], -1)?;
            }
            if let Some(t) = self.transitions.get(i) {
                let y = t.norm.forward_relu(cx, &h)?;
                let y = t.conv.forward(cx, &y)?;
                h = ops::avg_pool2d(cx.tape, &y, Pool2dParams::new(2, 2))?;
            }
        }
        self.norm5.forward_relu(cx, &h)
    }

    fn out_features(&self) -> usize {
        self.out_channels
    }

    fn output(&self) -> Features {
        Features::Map
    }

    fn built_in(&self) -> Option<BuiltIn<'_>> {
        Some(BuiltIn::Densenet(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Tape, Tensor};

    fn small() -> DenseNetConfig {
        DenseNetConfig {
            block_config: Some(vec![2, 3]),
            growth_rate: 4,
            init_features: 8,
            bn_size: 2,
            ..DenseNetConfig::default()
        }
    }

    #[test]
    fn names_shapes_and_output_follow_torchvision() {
        let (mut p, mut b) = (Params::new(), Buffers::new());
        let cfg = small();
        let net = DenseNet::new(&mut p, &mut b, &Scope::root(), &cfg, &mut Rng::new(1)).unwrap();
        let shape = |name: &str| match p.find(name) {
            Some(id) => p.get(id).dims().to_vec(),
            None => b.get(b.find(name).expect(name)).dims().to_vec(),
        };
        assert_eq!(shape("features.conv0.weight"), [8, 7, 7, 3]);
        assert_eq!(shape("features.norm0.running_mean"), [8]);
        // Block 1: 8 + 2·4 = 16 channels, halved to 8 by the transition.
        assert_eq!(shape("features.denseblock1.denselayer2.norm1.weight"), [12]);
        assert_eq!(
            shape("features.denseblock1.denselayer2.conv1.weight"),
            [8, 1, 1, 12]
        );
        assert_eq!(
            shape("features.denseblock1.denselayer2.conv2.weight"),
            [4, 3, 3, 8]
        );
        assert_eq!(shape("features.transition1.conv.weight"), [8, 1, 1, 16]);
        assert_eq!(
            shape("features.denseblock2.denselayer3.norm2.running_var"),
            [8]
        );
        assert_eq!(shape("features.norm5.bias"), [20]);
        assert!(p.find("features.transition2.conv.weight").is_none());
        assert_eq!(p.name(crate::ParamId(0)), "features.conv0.weight");

        let tape = Tape::no_grad();
        let x = Tensor::randn([2, 40, 24, 3], 1.0, DType::F32, &mut Rng::new(2));
        let mut rng = Rng::new(3);
        let mut cx = Ctx {
            tape: &tape,
            params: &p,
            buffers: &mut b,
            training: false,
            rng: &mut rng,
            frozen: false,
        };
        let y = net.forward(&mut cx, &tape.constant(x)).unwrap();
        // 40 x 24 -> stem 10 x 6 -> transition 5 x 3; after a ReLU.
        assert_eq!(y.dims(), [2, 5, 3, 20]);
        assert!(y.value().to_f64_vec().iter().all(|&v| v >= 0.0));
        assert_eq!((net.output(), net.out_features()), (Features::Map, 20));
    }

    #[test]
    fn config_errors_name_the_key() {
        let msg = |c: DenseNetConfig| c.validate("model.backbone").unwrap_err().to_string();
        let e = msg(DenseNetConfig {
            depth: 161,
            ..small()
        });
        assert!(
            e.contains("model.backbone.depth = 161") && e.contains("121, 169, 201"),
            "{e}"
        );
        let e = msg(DenseNetConfig {
            block_config: Some(vec![2, 0]),
            ..small()
        });
        assert!(e.contains("model.backbone.block_config = [2, 0]"), "{e}");
        for (key, c) in [
            (
                "growth_rate",
                DenseNetConfig {
                    growth_rate: 0,
                    ..small()
                },
            ),
            (
                "init_features",
                DenseNetConfig {
                    init_features: 0,
                    ..small()
                },
            ),
            (
                "bn_size",
                DenseNetConfig {
                    bn_size: 0,
                    ..small()
                },
            ),
            (
                "dropout",
                DenseNetConfig {
                    dropout: 1.0,
                    ..small()
                },
            ),
        ] {
            let e = msg(c);
            assert!(e.contains(&format!("model.backbone.{key}")), "{e}");
        }
        // Four blocks need a stem map of at least 8: 29 pixels.
        let d = DenseNetConfig::default();
        assert!(d.check_image_size("model.backbone", 29).is_ok());
        let e = d
            .check_image_size("model.backbone", 28)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.image_size = 28")
                && e.contains("model.backbone's 4 blocks (depth = 121)")
                && e.contains("at least 29"),
            "{e}"
        );
        assert!(d.footprint(28).is_err());
    }

    #[test]
    fn the_footprint_sums_each_layers_reads_and_saturates() {
        // Three layers reading 8, 12 and 16 channels.
        assert_eq!(read_channels(8, 4, 3), 36);
        assert_eq!(read_channels(8, 4, 0), 0);
        // The parameters counted are exactly the built convolutions'.
        let (mut p, mut b) = (Params::new(), Buffers::new());
        DenseNet::new(&mut p, &mut b, &Scope::root(), &small(), &mut Rng::new(1)).unwrap();
        let convs: usize = p
            .ids()
            .map(|id| p.get(id))
            .filter(|t| t.dims().len() == 4)
            .map(|t| t.numel())
            .sum();
        assert_eq!(small().footprint(64).unwrap().params, convs as u128);
        let absurd = DenseNetConfig {
            block_config: Some(vec![usize::MAX / 2]),
            growth_rate: usize::MAX / 2,
            ..small()
        };
        let f = absurd.footprint(64).unwrap();
        assert_eq!((f.params, f.activations), (u128::MAX, u128::MAX));
        let many = DenseNetConfig {
            block_config: Some(vec![1; 200]),
            ..small()
        };
        let e = many.footprint(64).unwrap_err().to_string();
        assert!(e.contains("200 blocks"), "{e}");
    }

    #[test]
    fn the_run_header_counts_depth_as_torchvision() {
        assert_eq!(DenseNetConfig::default().to_string(), "DenseNet-121");
        let c = DenseNetConfig {
            depth: 201,
            ..Default::default()
        };
        assert_eq!(c.to_string(), "DenseNet-201");
        let c = DenseNetConfig {
            block_config: Some(vec![2, 2, 2, 2]),
            growth_rate: 8,
            ..small()
        };
        assert_eq!(
            c.to_string(),
            "DenseNet-21 growth_rate 8 init_features 8 bn_size 2"
        );
    }
}
