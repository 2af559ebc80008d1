//! The masked autoencoder (He et al., 2022) around a ViT encoder: per
//! sample, a random share of the patch tokens is hidden; the encoder sees
//! only the visible ones; a lightweight decoder (its own depth and width)
//! gets the encoded tokens back at their positions with a learned mask
//! token everywhere else, and predicts every patch's pixels.
//!
//! Names: the encoder's parameters are the ViT backbone's (`cls_token`,
//! `patch_embed.*`, `blocks.*`, `norm.*`) at the root, so a fine-tuning run
//! started from a pretraining checkpoint (`--init-from`) finds them under
//! the same names; the decoder's are MAE's (`decoder_embed`, `mask_token`,
//! `decoder_blocks.*`, `decoder_norm`, `decoder_pred`) and are reported as
//! unused there.

use super::{Pooling, Vit, VitConfig};
use crate::nn::{
    Ctx, Init, LayerNorm, Linear, PosEmbedCache, Scope, VitStack, VitStackSpec, VIT_LN_EPS,
};
use crate::ops::{self, TokenIndex};
use crate::{Error, ParamId, Params, Result, Rng, Tensor, Var};
use serde::{Deserialize, Serialize};

/// The `[mae]` section: masking and the decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaeConfig {
    /// Share of each image's patches hidden from the encoder.
    pub mask_ratio: f64,
    pub decoder_depth: usize,
    pub decoder_width: usize,
    pub decoder_heads: usize,
    /// Reconstruct each patch normalised to zero mean and unit variance
    /// (MAE's `norm_pix_loss`) rather than raw pixels.
    pub norm_pix_loss: bool,
}

impl Default for MaeConfig {
    /// The paper's: 75 % masked, an 8-block decoder 512 wide with 16 heads,
    /// normalised-pixel targets.
    fn default() -> Self {
        MaeConfig {
            mask_ratio: 0.75,
            decoder_depth: 8,
            decoder_width: 512,
            decoder_heads: 16,
            norm_pix_loss: true,
        }
    }
}

impl MaeConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0) {
            return Err(Error::Config(format!(
                "mae.mask_ratio = {}: must be in (0, 1)",
                self.mask_ratio
            )));
        }
        let (w, h) = (self.decoder_width, self.decoder_heads);
        if self.decoder_depth == 0 || h == 0 || w == 0 || !w.is_multiple_of(h) {
            return Err(Error::Config(format!(
                "mae.decoder_depth = {}, decoder_width = {w}, decoder_heads = {h}: depth >= 1 and a width that is a positive multiple of the heads",
                self.decoder_depth
            )));
        }
        Ok(())
    }

    /// Visible patches per image out of `tokens`: `tokens · (1 - ratio)`
    /// rounded down (MAE's `int(L * (1 - mask_ratio))`), at least one, and
    /// at least one patch is always hidden.
    pub fn visible(&self, tokens: usize) -> usize {
        ((tokens as f64 * (1.0 - self.mask_ratio)) as usize)
            .clamp(1, tokens.saturating_sub(1).max(1))
    }

    /// The decoder's blocks.
    fn stack_spec(&self) -> VitStackSpec {
        VitStackSpec {
            depth: self.decoder_depth,
            width: self.decoder_width,
            heads: self.decoder_heads,
            mlp_ratio: 4.0,
            drop_path: 0.0,
        }
    }
}

/// Which patches of each image the encoder sees, and how to put them back.
#[derive(Clone, Debug)]
pub struct MaskPlan {
    /// [N, K] visible patch positions, in the shuffled order.
    pub keep: TokenIndex,
    /// [N, L - K] hidden patch positions.
    pub masked: TokenIndex,
    /// [N, L] the inverse shuffle: gathers (visible, mask tokens) back into
    /// patch order.
    pub restore: TokenIndex,
}

impl MaskPlan {
    /// An independent random shuffle of the `tokens` patches per image
    /// (drawn from `rng`); the first `visible` stay visible.
    pub fn draw(n: usize, tokens: usize, visible: usize, rng: &mut Rng) -> Result<MaskPlan> {
        MaskPlan::from_shuffle(&TokenIndex::shuffle(n, tokens, rng)?, visible)
    }

    /// The plan of a given per-image permutation of the patches (MAE's
    /// `ids_shuffle`): the first `visible` of each row stay visible. The
    /// random path draws the permutation; a caller that must hide exactly
    /// the patches another framework hid (the PyTorch golden test) passes
    /// it in. A row that is not a permutation is an error.
    pub fn from_shuffle(shuffle: &TokenIndex, visible: usize) -> Result<MaskPlan> {
        Ok(MaskPlan {
            keep: shuffle.first(visible)?,
            masked: shuffle.after(visible)?,
            restore: shuffle.inverse()?,
        })
    }
}

#[derive(Debug)]
pub struct Mae {
    pub encoder: Vit,
    decoder_embed: Linear,
    mask_token: ParamId,
    decoder_blocks: VitStack,
    decoder_norm: LayerNorm,
    decoder_pred: Linear,
    /// The decoder's position embeddings, class token row first.
    decoder_pos: PosEmbedCache,
    patch: usize,
}

impl Mae {
    /// The encoder (class-token pooling: MAE's encoder ends in `norm`) and
    /// the decoder, initialised as MAE does: xavier-uniform linears with
    /// zero biases, mask token Normal(0, 0.02).
    pub fn new(
        p: &mut Params,
        encoder: &VitConfig,
        cfg: &MaeConfig,
        rng: &mut Rng,
    ) -> Result<Self> {
        if encoder.pooling != Pooling::Cls {
            return Err(Error::Config(
                "encoder.pooling = \"mean\": pretraining ends the encoder in its class-token `norm`; choose mean pooling in the fine-tuning run's [model.backbone]".into(),
            ));
        }
        cfg.validate()?;
        let root = Scope::root();
        let encoder_net = Vit::new(p, &root, encoder, rng)?;
        let (d, dd) = (encoder_net.width(), cfg.decoder_width);
        let xavier = |p: &mut Params, name: &str, i: usize, o: usize, rng: &mut Rng| {
            Linear::with_init(
                p,
                &root.pp(name),
                i,
                o,
                Init::XavierUniform,
                Some(Init::Zeros),
                rng,
            )
        };
        let decoder_embed = xavier(p, "decoder_embed", d, dd, rng)?;
        let mask_token = p.add(
            root.name("mask_token"),
            Init::Normal(0.02).make(&[1, 1, dd], dd, dd, rng),
        )?;
        let decoder_blocks = VitStack::new(p, &root.pp("decoder_blocks"), cfg.stack_spec(), rng)?;
        let decoder_norm = LayerNorm::new(p, &root.pp("decoder_norm"), dd, VIT_LN_EPS)?;
        let k = encoder.patch;
        let decoder_pred = xavier(p, "decoder_pred", dd, k * k * 3, rng)?;
        Ok(Mae {
            encoder: encoder_net,
            decoder_embed,
            mask_token,
            decoder_blocks,
            decoder_norm,
            decoder_pred,
            decoder_pos: PosEmbedCache::new(dd, true),
            patch: k,
        })
    }

    /// Images [N, S, S, 3] -> the predicted patch vectors [N, L, P·P·3] of
    /// every patch in patch order (the loss reads the hidden ones).
    pub fn forward(&self, cx: &mut Ctx, images: &Var, plan: &MaskPlan) -> Result<Var> {
        let tokens = self.encoder.patch_tokens(cx, images)?;
        let &[n, l, _] = tokens.dims() else {
            unreachable!("patch tokens are [N, L, D]")
        };
        let visible = ops::gather_tokens(cx.tape, &tokens, &plan.keep)?;
        let encoded = self.encoder.encode(cx, &visible)?;
        let x = self.decoder_embed.forward(cx, &encoded)?;
        let &[_, k1, dd] = x.dims() else {
            unreachable!("encoded tokens are [N, 1+K, D]")
        };
        let cls = ops::narrow(cx.tape, &x, 1, 0, 1)?;
        let seen = ops::narrow(cx.tape, &x, 1, 1, k1 - 1)?;
        let like = x.value();
        let zeros = Tensor::zeros_on([n, l + 1 - k1, dd], like.dtype(), &like.device())?;
        let masks = ops::add(
            cx.tape,
            &cx.tape.constant(zeros),
            &cx.param(self.mask_token),
        )?;
        let shuffled = ops::concat(cx.tape, &[&seen, &masks], 1)?;
        let ordered = ops::gather_tokens(cx.tape, &shuffled, &plan.restore)?;
        let x = ops::concat(cx.tape, &[&cls, &ordered], 1)?;
        let side = images.dims()[1] / self.patch;
        let pos = self.decoder_pos.get(side, side, like)?;
        let x = ops::add(cx.tape, &x, &cx.tape.constant(pos))?;
        let x = self.decoder_blocks.forward(cx, &x)?;
        let x = self.decoder_norm.forward(cx, &x)?;
        let x = self.decoder_pred.forward(cx, &x)?;
        ops::narrow(cx.tape, &x, 1, 1, l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Buffers;
    use crate::{DType, Tape};

    fn tiny() -> (VitConfig, MaeConfig) {
        let enc = VitConfig {
            depth: Some(1),
            width: Some(16),
            heads: Some(2),
            patch: 8,
            ..VitConfig::default()
        };
        let mae = MaeConfig {
            decoder_depth: 1,
            decoder_width: 8,
            decoder_heads: 2,
            ..MaeConfig::default()
        };
        (enc, mae)
    }

    #[test]
    fn visible_counts_round_down_and_keep_one_of_each() {
        let c = MaeConfig::default();
        assert_eq!(c.visible(64), 16);
        assert_eq!(c.visible(49), 12);
        assert_eq!(c.visible(2), 1);
        let keep_most = MaeConfig {
            mask_ratio: 0.01,
            ..c
        };
        assert_eq!(keep_most.visible(16), 15);
    }

    #[test]
    fn a_given_permutation_keeps_its_first_patches_and_is_undone() {
        // Image 0 shows patch 2; image 1 shows patch 0.
        let shuffle = TokenIndex::new(&[2, 0, 3, 1, 0, 1, 2, 3], 2, 4).unwrap();
        let plan = MaskPlan::from_shuffle(&shuffle, 1).unwrap();
        let rows = |t: &TokenIndex| t.rows().map(<[u32]>::to_vec).collect::<Vec<_>>();
        assert_eq!(rows(&plan.keep), [[2], [0]]);
        assert_eq!(rows(&plan.masked), [[0, 3, 1], [1, 2, 3]]);
        assert_eq!(rows(&plan.restore), [[1, 3, 0, 2], [0, 1, 2, 3]]);
        let twice = TokenIndex::new(&[0, 0, 1], 1, 3).unwrap();
        assert!(MaskPlan::from_shuffle(&twice, 1).is_err());
    }

    #[test]
    fn predicts_every_patch_and_names_follow_mae() {
        let (enc, cfg) = tiny();
        let mut p = Params::new();
        let mae = Mae::new(&mut p, &enc, &cfg, &mut Rng::new(3)).unwrap();
        for n in [
            "cls_token",
            "blocks.0.attn.qkv.weight",
            "norm.weight",
            "mask_token",
        ] {
            assert!(p.find(n).is_some(), "{n}");
        }
        for n in [
            "decoder_embed.weight",
            "decoder_blocks.0.mlp.fc2.bias",
            "decoder_norm.bias",
            "decoder_pred.weight",
        ] {
            assert!(p.find(n).is_some(), "{n}");
        }
        let tape = Tape::new();
        let mut rng = Rng::new(5);
        let x = tape.constant(Tensor::randn([2, 16, 16, 3], 1.0, DType::F32, &mut rng));
        let plan = MaskPlan::draw(2, 4, cfg.visible(4), &mut rng).unwrap();
        let mut buffers = Buffers::new();
        let mut cx = Ctx {
            tape: &tape,
            params: &p,
            buffers: &mut buffers,
            training: true,
            rng: &mut rng,
            frozen: false,
        };
        let y = mae.forward(&mut cx, &x, &plan).unwrap();
        assert_eq!(y.dims(), [2, 4, 8 * 8 * 3]);
        let bad = VitConfig {
            pooling: Pooling::Mean,
            ..enc
        };
        let e = Mae::new(&mut Params::new(), &bad, &cfg, &mut Rng::new(3)).unwrap_err();
        assert!(e.to_string().contains("encoder.pooling"), "{e}");
    }
}
