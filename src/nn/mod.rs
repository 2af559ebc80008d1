//! Layers: parameter registration with initialisation, and forward passes
//! built from [`ops`](crate::ops). A layer holds only ids; the tensors live
//! in [`Params`] (trained) and [`Buffers`] (running statistics), so one
//! registry is what optimizers update and checkpoints save.

mod batch_norm;
mod conv;
mod conv_transpose;
mod init;
mod layer_norm;
mod linear;
mod pos_embed;
mod scope;
mod se;
mod vit_block;

pub use batch_norm::BatchNorm2d;
pub use conv::{Conv2d, ConvSpec};
pub use conv_transpose::ConvTranspose2d;
pub use init::Init;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use pos_embed::{sincos_pos_embed_2d, PosEmbedCache};
pub use scope::Scope;
pub use se::SeBlock;
pub use vit_block::{VitBlock, VitStack, VitStackSpec, VIT_LN_EPS};

use crate::{Params, Rng, Tape};

/// Named tensors that are part of the model but not trained (BN running
/// mean/var). Same registry type as parameters, kept apart from them.
pub type Buffers = Params;

/// What a forward pass needs besides its input.
pub struct Ctx<'a> {
    pub tape: &'a Tape,
    pub params: &'a Params,
    pub buffers: &'a mut Buffers,
    /// Batch statistics and dropout when true; running statistics otherwise.
    pub training: bool,
    /// Dropout masks.
    pub rng: &'a mut Rng,
    /// Parameters enter as constants, so no gradient reaches them: the GAN's
    /// generator step runs the discriminator this way (its backward then
    /// needs only the input gradients, and the two models' `ParamId`s, which
    /// index separate registries, never meet in one `Gradients`).
    pub frozen: bool,
}

impl Ctx<'_> {
    pub fn param(&self, id: crate::ParamId) -> crate::Var {
        if self.frozen {
            self.tape.constant(self.params.get(id).clone())
        } else {
            self.tape.param(self.params, id)
        }
    }
}
