//! IResNet, the face-recognition ResNet (insightface's arcface_torch
//! `iresnet.py` layout): a 3x3/1 stem with BN and PReLU, four stages of
//! "improved" residual units (BN - conv3x3 - BN - PReLU - conv3x3 - BN,
//! stride 2 in every stage's first unit, no activation after the add), then
//! BN - dropout - flatten - FC - BatchNorm1d to the embedding.
//!
//! Parameter names are the original's (`conv1`, `bn1`, `prelu`,
//! `layer1.0.bn1`, ..., `bn2`, `fc`, `features`), so importing its weights
//! is a layout conversion only (`import::iresnet`). One conversion is not a
//! transpose: our flatten of the NHWC map orders the FC's inputs (h, w, c),
//! PyTorch's NCHW flatten (c, h, w), so the importer permutes `fc.weight`'s
//! columns.

use super::{Backbone, BuiltIn, Features};
use crate::model::footprint::{product, Footprint};
use crate::nn::{BatchNorm2d, Buffers, Conv2d, ConvSpec, Ctx, Linear, Scope};
use crate::ops::conv::Conv2dParams;
use crate::{ops, DType, Error, ParamId, Params, Result, Rng, Tensor, Var};
use serde::{Deserialize, Serialize};

/// `[model.backbone] kind = "iresnet"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IResNetConfig {
    /// 18, 34, 50 or 100.
    pub depth: usize,
    /// Scales the stage widths 64/128/256/512 (at least 8 channels each).
    pub width_mult: f64,
    /// Length of the embedding (the FC's output).
    pub embedding: usize,
    /// Dropout before the FC (the original's `dropout`).
    pub dropout: f64,
    /// Side of the square input images; the FC reads the (image_size / 16)²
    /// map, so the network is built for one size (112: the face-recognition
    /// crops, a 7x7 map). Must equal `data.image_size`.
    pub image_size: usize,
}

impl Default for IResNetConfig {
    fn default() -> Self {
        IResNetConfig {
            depth: 50,
            width_mult: 1.0,
            embedding: 512,
            dropout: 0.0,
            image_size: 112,
        }
    }
}

/// Units per stage for each supported depth; the allowed depths otherwise.
fn layout(depth: usize) -> std::result::Result<[usize; 4], &'static str> {
    Ok(match depth {
        18 => [2, 2, 2, 2],
        34 => [3, 4, 6, 3],
        50 => [3, 4, 14, 3],
        100 => [3, 13, 30, 3],
        _ => return Err("18, 34, 50, 100"),
    })
}

/// The BN eps of every batch norm of the original.
const BN_EPS: f64 = 1e-5;

/// What [`IResNet::new`] builds and [`IResNetConfig::footprint`] counts.
struct Plan {
    stem: usize,
    /// (stage, index in the stage, c_in, width, stride) of every unit.
    units: Vec<(usize, usize, usize, usize, usize)>,
    /// Channels of the last stage.
    last: usize,
    /// Side of the last stage's map.
    side: usize,
}

impl IResNetConfig {
    /// `section` prefixes the keys in messages (`model.backbone`).
    pub fn validate(&self, section: &str) -> Result<()> {
        let bad = |key: &str, v: &dyn std::fmt::Display, why: &str| {
            Err(Error::Config(format!("{section}.{key} = {v}: {why}")))
        };
        if let Err(allowed) = layout(self.depth) {
            return bad("depth", &self.depth, &format!("allowed values: {allowed}"));
        }
        if !(self.width_mult > 0.0) {
            return bad("width_mult", &self.width_mult, "must be > 0");
        }
        if self.embedding == 0 {
            return bad("embedding", &self.embedding, "must be >= 1");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", &self.dropout, "must be in [0, 1)");
        }
        if self.image_size < 16 || !self.image_size.is_multiple_of(16) {
            return bad(
                "image_size",
                &self.image_size,
                "must be a positive multiple of 16 (four stride-2 stages; \
                 112 gives the face-recognition models' 7x7 map)",
            );
        }
        Ok(())
    }

    /// An error naming both keys unless the network was built for
    /// `image_size` (`data.image_size`).
    pub fn check_image_size(&self, section: &str, image_size: usize) -> Result<()> {
        if image_size == self.image_size {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{section}.image_size = {} but data.image_size = {image_size}: the IResNet's FC \
             reads the (image_size / 16)² map, so the two must be equal",
            self.image_size
        )))
    }

    fn plan(&self) -> Result<Plan> {
        self.validate("model.backbone")?;
        let counts = layout(self.depth).expect("validated");
        // `as usize` saturates: an absurd width_mult gives usize::MAX
        // channels, which the footprint counts (and the memory check refuses).
        let w = |c: usize| ((c as f64 * self.width_mult).round() as usize).max(8);
        let mut units = Vec::new();
        let mut c_in = w(64);
        for (stage, (&n, base)) in counts.iter().zip([64, 128, 256, 512]).enumerate() {
            for i in 0..n {
                let stride = if i == 0 { 2 } else { 1 };
                units.push((stage, i, c_in, w(base), stride));
                c_in = w(base);
            }
        }
        Ok(Plan {
            stem: w(64),
            units,
            last: c_in,
            side: self.image_size / 16,
        })
    }

    /// The keys that size the model, with their values, for memory messages.
    pub fn size_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            ("width_mult", self.width_mult.to_string()),
            ("depth", self.depth.to_string()),
            ("image_size", self.image_size.to_string()),
        ]
    }

    /// Parameters and training activations per image of `image_size`
    /// pixels a side, lower bounds ([`Footprint`]): the input; the stem's
    /// weights and its conv, BN and PReLU outputs; each unit's conv weights
    /// and its five saved maps (BN, conv, BN, PReLU at the input's
    /// resolution, conv at the output's); the FC's weights. Shortcuts and
    /// batch-norm parameters are left out.
    pub fn footprint(&self, image_size: usize) -> Result<Footprint> {
        self.check_image_size("model.backbone", image_size)?;
        let plan = self.plan()?;
        let mut f = Footprint::default();
        let mut side = image_size;
        f.add(
            product(&[27, plan.stem]),
            product(&[3, side, side]).saturating_add(product(&[3, side, side, plan.stem])),
        );
        for &(_, _, c, w, stride) in &plan.units {
            let at_input = product(&[side, side, c]).saturating_add(product(&[3, side, side, w]));
            side = side.div_ceil(stride);
            let params = product(&[9, c, w]).saturating_add(product(&[9, w, w]));
            f.add(params, at_input.saturating_add(product(&[side, side, w])));
        }
        let fc_in = product(&[plan.side, plan.side, plan.last]);
        f.add(
            fc_in.saturating_mul(self.embedding as u128),
            fc_in.saturating_add(self.embedding as u128),
        );
        Ok(f)
    }
}

/// BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus the shortcut.
#[derive(Clone, Debug)]
pub(crate) struct Unit {
    pub(crate) bn1: BatchNorm2d,
    pub(crate) conv1: Conv2d,
    pub(crate) bn2: BatchNorm2d,
    pub(crate) prelu: ParamId,
    pub(crate) conv2: Conv2d,
    pub(crate) bn3: BatchNorm2d,
    /// conv1x1(stride) + BN where the shape changes (`downsample.{0,1}`).
    pub(crate) downsample: Option<(Conv2d, BatchNorm2d)>,
}

/// Batch norm with the original's eps.
fn bn(p: &mut Params, b: &mut Buffers, s: &Scope, c: usize) -> Result<BatchNorm2d> {
    let mut n = BatchNorm2d::new(p, b, s, c)?;
    n.eps = BN_EPS;
    Ok(n)
}

/// PReLU slopes, one per channel, at PyTorch's initial 0.25.
fn prelu(p: &mut Params, s: &Scope, c: usize) -> Result<ParamId> {
    p.add(s.name("weight"), Tensor::full([c], 0.25, DType::F32))
}

impl Unit {
    fn new(
        p: &mut Params,
        b: &mut Buffers,
        s: &Scope,
        (c_in, width, stride): (usize, usize, usize),
        rng: &mut Rng,
    ) -> Result<Self> {
        let k3 = |c, stride| {
            ConvSpec::new(c, width, 3).prm(Conv2dParams::new().stride(stride).padding(1))
        };
        // Fields in the original's registration order, the shortcut last.
        let bn1 = bn(p, b, &s.pp("bn1"), c_in)?;
        let conv1 = Conv2d::new(p, &s.pp("conv1"), k3(c_in, 1), rng)?;
        let bn2 = bn(p, b, &s.pp("bn2"), width)?;
        let prelu = prelu(p, &s.pp("prelu"), width)?;
        let conv2 = Conv2d::new(p, &s.pp("conv2"), k3(width, stride), rng)?;
        let bn3 = bn(p, b, &s.pp("bn3"), width)?;
        let downsample = if stride != 1 || c_in != width {
            let d = s.pp("downsample");
            let spec = ConvSpec::new(c_in, width, 1).prm(Conv2dParams::new().stride(stride));
            Some((
                Conv2d::new(p, &d.pp(0), spec, rng)?,
                bn(p, b, &d.pp(1), width)?,
            ))
        } else {
            None
        };
        Ok(Unit {
            bn1,
            conv1,
            bn2,
            prelu,
            conv2,
            bn3,
            downsample,
        })
    }

    fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        // The shortcut first, so its input gradient comes last in backward
        // (as blocks.rs explains).
        let short = match &self.downsample {
            Some((conv, bn)) => {
                let y = conv.forward(cx, x)?;
                bn.forward(cx, &y)?
            }
            None => x.clone(),
        };
        let h = self.bn1.forward(cx, x)?;
        let h = self.conv1.forward(cx, &h)?;
        let h = self.bn2.forward(cx, &h)?;
        let h = ops::prelu(cx.tape, &h, &cx.param(self.prelu))?;
        let h = self.conv2.forward(cx, &h)?;
        let h = self.bn3.forward(cx, &h)?;
        ops::add(cx.tape, &h, &short)
    }
}

#[derive(Clone, Debug)]
pub struct IResNet {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm2d,
    pub(crate) prelu: ParamId,
    pub(crate) units: Vec<Unit>,
    pub(crate) bn2: BatchNorm2d,
    pub(crate) dropout: f64,
    pub(crate) fc: Linear,
    pub(crate) features: BatchNorm2d,
    pub(crate) image_size: usize,
    pub(crate) embedding: usize,
}

impl IResNet {
    /// Registers every parameter and buffer under `s` in the original's
    /// order; `features.weight` is fixed at 1 (frozen: no gradient, no
    /// update), as the original sets `requires_grad = False` on it.
    pub fn new(
        p: &mut Params,
        b: &mut Buffers,
        s: &Scope,
        config: &IResNetConfig,
        rng: &mut Rng,
    ) -> Result<Self> {
        let plan = config.plan()?;
        let stem = ConvSpec::new(3, plan.stem, 3).prm(Conv2dParams::new().padding(1));
        let conv1 = Conv2d::new(p, &s.pp("conv1"), stem, rng)?;
        let bn1 = bn(p, b, &s.pp("bn1"), plan.stem)?;
        let prelu_id = prelu(p, &s.pp("prelu"), plan.stem)?;
        let mut units = Vec::new();
        for &(stage, i, c_in, width, stride) in &plan.units {
            let us = s.pp(format!("layer{}", stage + 1)).pp(i);
            units.push(Unit::new(p, b, &us, (c_in, width, stride), rng)?);
        }
        let bn2 = bn(p, b, &s.pp("bn2"), plan.last)?;
        let fc_in = plan.side * plan.side * plan.last;
        let fc = Linear::new(p, &s.pp("fc"), fc_in, config.embedding, true, rng)?;
        let features = bn(p, b, &s.pp("features"), config.embedding)?;
        p.set_frozen(features.weight, true);
        Ok(IResNet {
            conv1,
            bn1,
            prelu: prelu_id,
            units,
            bn2,
            dropout: config.dropout,
            fc,
            features,
            image_size: config.image_size,
            embedding: config.embedding,
        })
    }
}

impl Backbone for IResNet {
    /// NHWC images [N, S, S, 3] (S = image_size) -> embeddings [N, embedding].
    fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let s = self.image_size;
        if !matches!(x.dims(), &[_, h, w, 3] if h == s && w == s) {
            return Err(Error::shape(
                "iresnet",
                format!(
                    "images {} must be [N, {s}, {s}, 3] (model.backbone.image_size = {s})",
                    x.shape()
                ),
            ));
        }
        let h = self.conv1.forward(cx, x)?;
        let h = self.bn1.forward(cx, &h)?;
        let mut h = ops::prelu(cx.tape, &h, &cx.param(self.prelu))?;
        for u in &self.units {
            h = u.forward(cx, &h)?;
        }
        let h = self.bn2.forward(cx, &h)?;
        let h = ops::dropout(cx.tape, &h, self.dropout, cx.training, cx.rng)?;
        let n = h.dims()[0];
        let flat = h.value().numel() / n.max(1);
        let h = ops::reshape(cx.tape, &h, [n, flat])?;
        let h = self.fc.forward(cx, &h)?;
        self.features.forward(cx, &h)
    }

    fn out_features(&self) -> usize {
        self.embedding
    }

    fn output(&self) -> Features {
        Features::Vector
    }

    fn built_in(&self) -> Option<BuiltIn<'_>> {
        Some(BuiltIn::Iresnet(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tape;

    fn small() -> IResNetConfig {
        IResNetConfig {
            depth: 18,
            width_mult: 0.125,
            embedding: 16,
            dropout: 0.0,
            image_size: 32,
        }
    }

    #[test]
    fn names_shapes_and_output_follow_the_original() {
        let (mut p, mut b) = (Params::new(), Buffers::new());
        let net = IResNet::new(&mut p, &mut b, &Scope::root(), &small(), &mut Rng::new(1)).unwrap();
        let shape = |name: &str| {
            let id = p
                .find(name)
                .or_else(|| b.find(name))
                .unwrap_or_else(|| panic!("{name}"));
            let t = if p.find(name).is_some() {
                p.get(id)
            } else {
                b.get(id)
            };
            t.dims().to_vec()
        };
        assert_eq!(shape("conv1.weight"), [8, 3, 3, 3]);
        assert_eq!(shape("prelu.weight"), [8]);
        assert_eq!(shape("layer1.0.bn1.running_var"), [8]);
        assert_eq!(shape("layer1.0.conv2.weight"), [8, 3, 3, 8]);
        assert_eq!(shape("layer1.0.downsample.0.weight"), [8, 1, 1, 8]);
        assert_eq!(shape("layer2.1.prelu.weight"), [16]);
        assert_eq!(shape("layer4.0.downsample.1.bias"), [64]);
        assert!(p.find("layer2.1.downsample.0.weight").is_none());
        // A 32x32 image ends on a 2x2 map of 64 channels.
        assert_eq!(shape("fc.weight"), [16, 2 * 2 * 64]);
        assert_eq!(shape("features.running_mean"), [16]);
        assert!(p.is_frozen(p.find("features.weight").unwrap()));
        assert!(!p.is_frozen(p.find("features.bias").unwrap()));

        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::randn(
            [2, 32, 32, 3],
            1.0,
            DType::F32,
            &mut Rng::new(2),
        ));
        let mut rng = Rng::new(3);
        let mut cx = Ctx {
            tape: &tape,
            params: &p,
            buffers: &mut b,
            training: false,
            rng: &mut rng,
            frozen: false,
        };
        let y = net.forward(&mut cx, &x).unwrap();
        assert_eq!(y.dims(), [2, 16]);
        assert_eq!((net.output(), net.out_features()), (Features::Vector, 16));
        let wrong = tape.constant(Tensor::zeros([2, 48, 48, 3], DType::F32));
        let e = net.forward(&mut cx, &wrong).unwrap_err().to_string();
        assert!(
            e.contains("image_size = 32") && e.contains("[2, 48, 48, 3]"),
            "{e}"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let msg = |c: IResNetConfig| c.validate("model.backbone").unwrap_err().to_string();
        let e = msg(IResNetConfig {
            depth: 20,
            ..small()
        });
        assert!(
            e.contains("model.backbone.depth = 20") && e.contains("18, 34, 50, 100"),
            "{e}"
        );
        let e = msg(IResNetConfig {
            image_size: 100,
            ..small()
        });
        assert!(
            e.contains("model.backbone.image_size = 100") && e.contains("16"),
            "{e}"
        );
        let e = msg(IResNetConfig {
            width_mult: 0.0,
            ..small()
        });
        assert!(e.contains("model.backbone.width_mult"), "{e}");
        let e = msg(IResNetConfig {
            embedding: 0,
            ..small()
        });
        assert!(e.contains("model.backbone.embedding"), "{e}");
        let e = msg(IResNetConfig {
            dropout: 1.0,
            ..small()
        });
        assert!(e.contains("model.backbone.dropout"), "{e}");
        let e = small().footprint(64).unwrap_err().to_string();
        assert!(
            e.contains("image_size = 32") && e.contains("data.image_size = 64"),
            "{e}"
        );
    }

    #[test]
    fn footprint_counts_the_convolutions_and_the_fc() {
        // IResNet-50 at 112: 43,590,848 parameters in PyTorch
        // (`scripts/torch_iresnet.py --depth 50 --width 1 --embedding 512
        // --size 112` prints the count), most of them
        // convolutions and the 25088 x 512 FC, which this lower bound counts.
        let f = IResNetConfig::default().footprint(112).unwrap();
        assert!(
            f.params > 43_000_000 && f.params < 43_700_000,
            "{}",
            f.params
        );
        let half = IResNetConfig {
            width_mult: 0.5,
            ..Default::default()
        };
        assert!(half.footprint(112).unwrap().activations < f.activations);
    }
}
