//! The conditional face generator of the multi-task GAN: noise z and the
//! requested affect (valence, arousal, AU intensities, expression one-hot)
//! -> linear -> a small feature map -> upsampling blocks (each doubling H
//! and W, with batch norm and ReLU) -> 3x3 conv -> tanh RGB in [-1, 1].

use super::footprint::{product, Footprint};
use crate::nn::{
    BatchNorm2d, Buffers, Conv2d, ConvSpec, ConvTranspose2d, Ctx, Init, Linear, Scope,
};
use crate::ops::conv::Conv2dParams;
use crate::{ops, Error, Params, Result, Rng, Var};
use serde::{Deserialize, Serialize};

/// How a block doubles the resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsample {
    /// 4x4 transposed convolution, stride 2, padding 1 (DCGAN).
    ConvTranspose,
    /// Nearest-neighbour x2 then a 3x3 convolution (no checkerboard artefacts).
    NearestConv,
}

/// The `[generator]` section of a GAN config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Output height and width: 4·2^k (64) or 7·2^k (112).
    pub image_size: usize,
    /// Length of the noise vector z.
    pub z_dim: usize,
    /// Channels of the first feature map; each block halves them.
    pub channels: usize,
    /// Lower bound of the halving.
    pub min_channels: usize,
    pub upsample: Upsample,
    /// Condition layout: 2 (valence, arousal) + n_aus + n_expr.
    pub n_aus: usize,
    pub n_expr: usize,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            image_size: 64,
            z_dim: 128,
            channels: 256,
            min_channels: 16,
            upsample: Upsample::ConvTranspose,
            n_aus: 12,
            n_expr: 8,
        }
    }
}

impl GeneratorConfig {
    /// Length of the condition vector: valence, arousal, AUs, expression one-hot.
    pub fn cond_dim(&self) -> usize {
        2 + self.n_aus + self.n_expr
    }

    /// (side of the first feature map, number of doubling blocks): the side
    /// is the image size halved while it stays even and above 7, so 64 -> (4, 4)
    /// and 112 -> (7, 4).
    pub fn layout(&self) -> Result<(usize, usize)> {
        let (mut side, mut blocks) = (self.image_size, 0);
        while side > 7 && side.is_multiple_of(2) {
            side /= 2;
            blocks += 1;
        }
        if !(4..=7).contains(&side) || blocks == 0 {
            return Err(Error::Config(format!(
                "generator.image_size = {}: must be 4·2^k or 7·2^k with k >= 1 (e.g. 64, 112)",
                self.image_size
            )));
        }
        Ok((side, blocks))
    }

    /// Parameters and training activations per generated image, lower
    /// bounds ([`Footprint`]): the input layer's weights and output, each
    /// up-block's convolution weights and its conv and normalised outputs,
    /// and the image. Biases and batch-norm parameters are left out.
    pub fn footprint(&self) -> Result<Footprint> {
        self.validate()?;
        let (mut side, n_blocks) = self.layout()?;
        let c0 = self.channels;
        let mut f = Footprint::default();
        f.add(
            product(&[self.z_dim + self.cond_dim(), side, side, c0]),
            product(&[2, side, side, c0]),
        );
        let k = match self.upsample {
            Upsample::ConvTranspose => 4,
            Upsample::NearestConv => 3,
        };
        let mut c_in = c0;
        for _ in 0..n_blocks {
            let c_out = (c_in / 2).max(self.min_channels);
            side *= 2;
            f.add(
                product(&[c_in, c_out, k, k]),
                product(&[2, side, side, c_out]),
            );
            c_in = c_out;
        }
        f.add(product(&[c_in, 3, 9]), product(&[3, side, side]));
        Ok(f)
    }

    fn validate(&self) -> Result<()> {
        self.layout()?;
        if self.z_dim == 0 || self.channels == 0 || self.min_channels == 0 {
            return Err(Error::Config(format!(
                "generator.z_dim/channels/min_channels = {}/{}/{}: must be >= 1",
                self.z_dim, self.channels, self.min_channels
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum UpLayer {
    Transposed(ConvTranspose2d),
    Nearest(Conv2d),
}

#[derive(Clone, Debug)]
struct UpBlock {
    up: UpLayer,
    bn: BatchNorm2d,
}

impl UpBlock {
    fn forward(&self, cx: &mut Ctx, x: &Var) -> Result<Var> {
        let h = match &self.up {
            UpLayer::Transposed(ct) => ct.forward(cx, x)?,
            UpLayer::Nearest(conv) => {
                let u = ops::upsample_nearest2d(cx.tape, x, 2)?;
                conv.forward(cx, &u)?
            }
        };
        self.bn.forward_relu(cx, &h)
    }
}

#[derive(Clone, Debug)]
pub struct Generator {
    pub config: GeneratorConfig,
    fc: Linear,
    fc_bn: BatchNorm2d,
    blocks: Vec<UpBlock>,
    to_rgb: Conv2d,
    /// (side, channels) of the first feature map.
    start: (usize, usize),
}

impl Generator {
    /// Registers every parameter and buffer, initialised from `rng`. The
    /// generator keeps its own registries (checkpoints prefix them `generator.`).
    pub fn new(
        config: &GeneratorConfig,
        p: &mut Params,
        b: &mut Buffers,
        rng: &mut Rng,
    ) -> Result<Self> {
        config.validate()?;
        let (side, n_blocks) = config.layout()?;
        let c0 = config.channels;
        let root = Scope::root();
        let fc = Linear::new(
            p,
            &root.pp("fc"),
            config.z_dim + config.cond_dim(),
            side * side * c0,
            false,
            rng,
        )?;
        let fc_bn = BatchNorm2d::new(p, b, &root.pp("fc_bn"), c0)?;
        let mut blocks = Vec::with_capacity(n_blocks);
        let mut c_in = c0;
        for i in 0..n_blocks {
            let c_out = (c_in / 2).max(config.min_channels);
            let s = root.pp(format!("up{i}"));
            let up = match config.upsample {
                Upsample::ConvTranspose => UpLayer::Transposed(ConvTranspose2d::new(
                    p,
                    &s.pp("conv"),
                    ConvSpec::new(c_in, c_out, 4).prm(Conv2dParams::new().stride(2).padding(1)),
                    rng,
                )?),
                Upsample::NearestConv => UpLayer::Nearest(Conv2d::new(
                    p,
                    &s.pp("conv"),
                    ConvSpec::new(c_in, c_out, 3).prm(Conv2dParams::new().padding(1)),
                    rng,
                )?),
            };
            let bn = BatchNorm2d::new(p, b, &s.pp("bn"), c_out)?;
            blocks.push(UpBlock { up, bn });
            c_in = c_out;
        }
        let to_rgb = Conv2d::new(
            p,
            &root.pp("to_rgb"),
            ConvSpec::new(c_in, 3, 3)
                .prm(Conv2dParams::new().padding(1))
                .bias(),
            rng,
        )?;
        // He init (fan-out 27) would give outputs of std ~2 and a saturated
        // tanh with almost no gradient; PyTorch's default conv init
        // (uniform ±1/sqrt(fan_in)) starts it near std 0.4.
        let fan_in = c_in * 9;
        p.set(
            to_rgb.weight,
            Init::UniformFanIn.make(&[3, 3, 3, c_in], fan_in, 27, rng),
        )?;
        Ok(Generator {
            config: config.clone(),
            fc,
            fc_bn,
            blocks,
            to_rgb,
            start: (side, c0),
        })
    }

    /// Noise [N, z_dim] and condition [N, cond_dim] -> images [N, S, S, 3] in [-1, 1].
    pub fn forward(&self, cx: &mut Ctx, z: &Var, cond: &Var) -> Result<Var> {
        let c = &self.config;
        let (zd, cd) = (z.dims(), cond.dims());
        if zd.len() != 2
            || cd.len() != 2
            || zd[1] != c.z_dim
            || cd[1] != c.cond_dim()
            || zd[0] != cd[0]
        {
            return Err(Error::shape(
                "generator",
                format!(
                    "noise {} and condition {} must be [N, {}] and [N, {}]",
                    z.shape(),
                    cond.shape(),
                    c.z_dim,
                    c.cond_dim()
                ),
            ));
        }
        let (side, c0) = self.start;
        let h = ops::concat(cx.tape, &[z, cond], -1)?;
        let h = self.fc.forward(cx, &h)?;
        let h = ops::reshape(cx.tape, &h, [zd[0], side, side, c0])?;
        let mut h = self.fc_bn.forward_relu(cx, &h)?;
        for blk in &self.blocks {
            h = blk.forward(cx, &h)?;
        }
        ops::tanh(cx.tape, &self.to_rgb.forward(cx, &h)?)
    }
}
