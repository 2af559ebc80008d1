//! The two players' objectives. The discriminator is the multi-task network:
//! its loss is the adversarial term plus the masked multi-task loss on the
//! labelled real frames; the generator's is the adversarial term plus the
//! discriminator's multi-task loss on the generated images against the
//! condition they were asked for (a face asked to smile must be read as smiling).

use super::GanSettings;
use crate::model::MtlOutput;
use crate::ops::loss::{gan_discriminator_loss, gan_generator_loss};
use crate::train::{MtlLoss, MtlTargets};
use crate::{ops, Error, Params, Result, Tape, Var};

/// A player's weighted total (on the tape) and its unweighted parts.
pub struct GanTerms {
    pub total: Var,
    pub adv: f64,
    /// Weighted multi-task total and its three unweighted tasks.
    pub mtl: f64,
    pub va: f64,
    pub au: f64,
    pub expr: f64,
}

fn real_fake<'a>(out: &'a MtlOutput, who: &str) -> Result<&'a Var> {
    out.real_fake.as_ref().ok_or_else(|| {
        Error::Config(format!(
            "gan: the {who} output has no real/fake logit (build the discriminator with real_fake_head)"
        ))
    })
}

fn combine(
    tape: &Tape,
    adv: Var,
    w_adv: f64,
    mtl: crate::train::LossTerms,
    w_mtl: f64,
) -> Result<GanTerms> {
    let (adv_v, mtl_v) = (adv.value().item()?, mtl.total.value().item()?);
    let [va, au, expr] = mtl.values()?;
    let total = ops::add(
        tape,
        &ops::scale(tape, &adv, w_adv)?,
        &ops::scale(tape, &mtl.total, w_mtl)?,
    )?;
    Ok(GanTerms {
        total,
        adv: adv_v,
        mtl: mtl_v,
        va,
        au,
        expr,
    })
}

/// `d_adv·adversarial(real, fake) + d_mtl·multi-task(real outputs, labels)`.
pub fn discriminator_loss(
    tape: &Tape,
    s: &GanSettings,
    mtl: &MtlLoss,
    d_params: &Params,
    real: &MtlOutput,
    fake: &MtlOutput,
    labels: &MtlTargets,
) -> Result<GanTerms> {
    let adv = gan_discriminator_loss(
        tape,
        s.loss,
        real_fake(real, "real")?,
        real_fake(fake, "generated")?,
    )?;
    let m = mtl.forward(tape, d_params, real, labels)?;
    combine(tape, adv, s.d_adv_weight, m, s.d_mtl_weight)
}

/// `g_adv·adversarial(fake) + g_mtl·multi-task(fake outputs, requested condition)`.
pub fn generator_loss(
    tape: &Tape,
    s: &GanSettings,
    mtl: &MtlLoss,
    d_params: &Params,
    fake: &MtlOutput,
    requested: &MtlTargets,
) -> Result<GanTerms> {
    let adv = gan_generator_loss(tape, s.loss, real_fake(fake, "generated")?)?;
    let m = mtl.forward(tape, d_params, fake, requested)?;
    combine(tape, adv, s.g_adv_weight, m, s.g_mtl_weight)
}
