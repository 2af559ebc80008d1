//! The two players' objectives. The discriminator is the multi-task network:
//! its loss is the adversarial term plus the masked multi-task loss on the
//! labelled real frames; the generator's is the adversarial term plus the
//! discriminator's multi-task loss on the generated images against the
//! condition they were asked for (a face asked to smile must be read as smiling),
//! optionally with a mode-seeking term that asks different noise for different faces.

use super::GanSettings;
use crate::model::MtlOutput;
use crate::ops::loss::{gan_discriminator_loss, gan_generator_loss};
use crate::train::{MtlLoss, MtlTargets};
use crate::{ops, Error, Params, Result, Tape, Tensor, Var};

/// A player's weighted total (on the tape) and its unweighted parts.
pub struct GanTerms {
    pub total: Var,
    pub adv: f64,
    /// Weighted multi-task total and its three unweighted tasks.
    pub mtl: f64,
    pub va: f64,
    pub au: f64,
    pub expr: f64,
    /// The unweighted mode-seeking term (0 where there is none).
    pub mode_seeking: f64,
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
        mode_seeking: 0.0,
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

/// `g_adv·adversarial(fake) + g_mtl·multi-task(fake outputs, requested condition)`,
/// plus `mode_seeking_weight·mode_seeking` when the term is given (see
/// [`mode_seeking_loss`]). `mtl` carries the generator's task weights.
pub fn generator_loss(
    tape: &Tape,
    s: &GanSettings,
    mtl: &MtlLoss,
    d_params: &Params,
    fake: &MtlOutput,
    requested: &MtlTargets,
    mode_seeking: Option<&Var>,
) -> Result<GanTerms> {
    let adv = gan_generator_loss(tape, s.loss, real_fake(fake, "generated")?)?;
    let m = mtl.forward(tape, d_params, fake, requested)?;
    let mut terms = combine(tape, adv, s.g_adv_weight, m, s.g_mtl_weight)?;
    if let Some(ms) = mode_seeking {
        terms.mode_seeking = ms.value().item()?;
        terms.total = ops::add(
            tape,
            &terms.total,
            &ops::scale(tape, ms, s.mode_seeking_weight)?,
        )?;
    }
    Ok(terms)
}

/// Keeps the term finite (at `1 / eps`) when two paired faces coincide.
const MODE_SEEKING_EPS: f64 = 1e-5;

/// The mode-seeking term of MSGAN (Mao et al. 2019) for `images` [N, ...]
/// generated from noise `z` [N, z_dim] whose rows i and i + N/2 share a
/// condition (an odd last row is left out): `1 / sqrt(d_img / d_z + eps²)`,
/// with `d` the mean squared difference over the pairs' elements, so the
/// ratio is one of root-mean-square distances (MSGAN divides mean absolute
/// distances, `1 / (ratio + eps)`; squares and exp/log need no new op and
/// keep the same scale). Minimising it pushes faces apart where their noise
/// differs, against collapse to one face per condition.
pub fn mode_seeking_loss(tape: &Tape, images: &Var, z: &Tensor) -> Result<Var> {
    let n = images.dims()[0];
    if n < 2 || z.dims().len() != 2 || z.dims()[0] != n {
        return Err(Error::shape(
            "gan mode_seeking_loss",
            format!(
                "images {} and noise {}: expected N >= 2 images and noise [N, z_dim]",
                images.shape(),
                z.shape()
            ),
        ));
    }
    let h = n / 2;
    let zv = z.try_to_f64_vec()?;
    let width = z.dims()[1];
    let d_z = zv[..h * width]
        .iter()
        .zip(&zv[h * width..2 * h * width])
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / (h * width) as f64;
    let diff = ops::sub(
        tape,
        &ops::narrow(tape, images, 0, 0, h)?,
        &ops::narrow(tape, images, 0, h, h)?,
    )?;
    let d_img = ops::mean(tape, &ops::mul(tape, &diff, &diff)?, &[], false)?;
    let ratio_sq = ops::scale(tape, &d_img, 1.0 / d_z.max(f64::MIN_POSITIVE))?;
    let value = images.value();
    let eps_sq = tape.constant(
        Tensor::scalar(MODE_SEEKING_EPS * MODE_SEEKING_EPS, value.dtype())
            .to_device(&value.device())?,
    );
    // (ratio² + eps²)^(-1/2) as exp(-log(.) / 2).
    let log = ops::log(tape, &ops::add(tape, &ratio_sq, &eps_sq)?)?;
    ops::exp(tape, &ops::scale(tape, &log, -0.5)?)
}
