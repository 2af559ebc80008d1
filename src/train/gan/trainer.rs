//! Alternating GAN updates on the tape. The generator and the discriminator
//! keep separate parameter registries and separate Adam optimizers, so a
//! discriminator step cannot touch the generator's weights (its images enter
//! as constants) and a generator step cannot touch the discriminator's (its
//! parameters enter frozen, see [`Ctx::frozen`]).
//!
//! Batch norm: the discriminator sees real and generated images in one batch
//! (see `disc_joint`), on a scratch copy of its buffers; its running
//! statistics come from a separate pass over the real batch alone, so its
//! eval-mode multi-task heads are scored on the statistics of real faces.

use super::condition::{
    prototypes_from_tensor, prototypes_to_tensor, ConditionBank, Conditions, LabelRow,
};
use super::loss::{discriminator_loss, generator_loss, mode_seeking_loss, GanTerms};
use super::GanConfig;
use crate::data::{Batch, Loader};
use crate::metrics::MtlMetrics;
use crate::model::{Generator, MtlNet, MtlOutput, NetConfig};
use crate::nn::{Buffers, Ctx};
use crate::optim::{checked_grad_norm, Adam, AdamConfig, Optimizer};
use crate::train::checkpoint::{self, CheckpointRef, TrainProgress};
use crate::train::{ConfigFile, LossConfig, MtlLoss, MtlTargets};
use crate::{ops, DType, Device, Error, Gradients, Params, Result, Rng, Tape, Tensor, Var};
use std::collections::BTreeMap;
use std::path::Path;

const G_PREFIX: &str = "generator.";
const D_PREFIX: &str = "discriminator.";
const PROTOTYPES: &str = "gan.prototypes";
/// Buffer-name prefix of the generator's moving-average weights.
const EMA_PREFIX: &str = "generator_ema.";

/// One player's step: its loss terms and gradient norm.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PlayerStats {
    pub loss: f64,
    pub adv: f64,
    pub mtl: f64,
    pub va: f64,
    pub au: f64,
    pub expr: f64,
    /// The unweighted mode-seeking term (generator, when on).
    pub mode_seeking: f64,
    pub grad_norm: f64,
    /// Mean D(x) = sigmoid(logit) on real (D step) or generated images.
    pub d_real: f64,
    pub d_fake: f64,
}

impl PlayerStats {
    fn new(loss: f64, terms: &GanTerms, grad_norm: f64, (d_real, d_fake): (f64, f64)) -> Self {
        PlayerStats {
            loss,
            adv: terms.adv,
            mtl: terms.mtl,
            va: terms.va,
            au: terms.au,
            expr: terms.expr,
            mode_seeking: terms.mode_seeking,
            grad_norm,
            d_real,
            d_fake,
        }
    }
}

pub struct GanTrainer {
    pub config: GanConfig,
    /// Where both players' weights, buffers and optimizer states live and
    /// every step runs (`train.device`); checkpoints are written from the host.
    pub device: Device,
    pub generator: Generator,
    pub g_params: Params,
    /// Moving average of `g_params` (`gan.g_ema_decay` > 0): what sampling uses.
    pub g_ema: Option<Params>,
    pub g_buffers: Buffers,
    pub discriminator: MtlNet,
    pub d_params: Params,
    pub d_buffers: Buffers,
    mtl: MtlLoss,
    /// The generator's multi-task weights: `mtl`'s with the expression
    /// weight times `gan.g_expr_weight`.
    mtl_g: MtlLoss,
    opt_g: Adam,
    opt_d: Adam,
    /// Noise, conditions and dropout masks.
    rng: Rng,
    /// Per-expression conditions for sample grids and judging (expression e at index e).
    pub prototypes: Vec<LabelRow>,
    /// `step` counts generator steps.
    pub progress: TrainProgress,
}

/// An optimizer key `<buffer>.<parameter index>` split in two (see `optim::save_buffers`).
fn split_index(key: &str) -> Option<(&str, usize)> {
    let (b, i) = key.rsplit_once('.')?;
    Some((b, i.parse().ok()?))
}

/// Rows `start..start + len` of every head output.
fn rows(tape: &Tape, out: &MtlOutput, start: usize, len: usize) -> Result<MtlOutput> {
    let r = |v: &Var| ops::narrow(tape, v, 0, start, len);
    Ok(MtlOutput {
        va: r(&out.va)?,
        au: r(&out.au)?,
        expr: r(&out.expr)?,
        features: r(&out.features)?,
        real_fake: out.real_fake.as_ref().map(r).transpose()?,
    })
}

/// Mean D(x) = sigmoid(logit) over the real rows and over the generated
/// rows (the discriminator's outputs, which carry the real/fake head).
fn mean_d(real: &MtlOutput, fake: &MtlOutput) -> (f64, f64) {
    let mean_sigmoid = |out: &MtlOutput| {
        let logits = out.real_fake.as_ref().expect("discriminator has the head");
        let v = logits.value().to_f64_vec();
        v.iter().map(|x| 1.0 / (1.0 + (-x).exp())).sum::<f64>() / v.len().max(1) as f64
    };
    (mean_sigmoid(real), mean_sigmoid(fake))
}

impl GanTrainer {
    /// Fresh players initialised from the config's seed.
    pub fn new(config: &GanConfig) -> Result<Self> {
        let mut rng = Rng::new(config.train.seed);
        let (mut g_params, mut g_buffers) = (Params::new(), Buffers::new());
        let generator = Generator::new(
            &config.generator,
            &mut g_params,
            &mut g_buffers,
            &mut rng.fork(1),
        )?;
        let d_cfg = NetConfig {
            real_fake_head: true,
            ..config.discriminator.clone()
        };
        let (mut d_params, mut d_buffers) = (Params::new(), Buffers::new());
        let discriminator = MtlNet::new(&d_cfg, &mut d_params, &mut d_buffers, &mut rng.fork(2))?;
        let mtl = MtlLoss::new(&config.mtl, &mut d_params)?;
        // Fixed weighting (the config insists) registers no parameters.
        let mtl_g = MtlLoss::new(
            &LossConfig {
                w_expr: config.mtl.w_expr * config.gan.g_expr_weight,
                ..config.mtl.clone()
            },
            &mut Params::new(),
        )?;
        // Initialised on the host from the seed, then copied (as `Trainer::new`).
        let device = Device::parse(&config.train.device)?;
        for p in [&mut g_params, &mut g_buffers, &mut d_params, &mut d_buffers] {
            p.to_device(&device)?;
        }
        let s = &config.gan;
        let g_ema = (s.g_ema_decay > 0.0).then(|| g_params.clone());
        let adam = || {
            Adam::new(AdamConfig {
                beta1: s.beta1,
                beta2: s.beta2,
                ..AdamConfig::default()
            })
        };
        let g = &config.generator;
        Ok(GanTrainer {
            config: config.clone(),
            device,
            generator,
            g_params,
            g_ema,
            g_buffers,
            discriminator,
            d_params,
            d_buffers,
            mtl,
            mtl_g,
            opt_g: adam(),
            opt_d: adam(),
            rng: rng.fork(3),
            prototypes: (0..g.n_expr)
                .map(|expr| LabelRow {
                    va: [0.0; 2],
                    aus: vec![0.0; g.n_aus],
                    expr,
                })
                .collect(),
            progress: TrainProgress {
                step: 0,
                epoch: 0,
                position_in_epoch: 0,
                rng: [0; 4],
                best: None,
            },
        })
    }

    /// The players of a GAN checkpoint, rebuilt from the config stored in it,
    /// on GPU 0 where there is one, else on the CPU (as `Trainer::from_checkpoint`).
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        let text = checkpoint::read_config(path)?;
        let mut cfg = GanConfig::from_toml(&text, &format!("{} (stored config)", path.display()))
            .map_err(|e| {
            Error::Config(format!(
                "{e} (is this a GAN checkpoint from `mtaffect gan train`?)"
            ))
        })?;
        cfg.train.device = "auto".into();
        // The stored sizes are input like any config's: bounded before the
        // model is built.
        crate::train::memory_budget::check_gan(&cfg, &Device::parse(&cfg.train.device)?)?;
        let mut t = GanTrainer::new(&cfg)?;
        t.load_checkpoint(path)?;
        Ok(t)
    }

    /// Standard normal noise [n, z_dim].
    pub fn noise(&mut self, n: usize) -> Tensor {
        Tensor::randn(
            [n, self.config.generator.z_dim],
            1.0,
            DType::F32,
            &mut self.rng,
        )
    }

    /// Images for noise `z` and condition inputs `cond` (from any device),
    /// on the trainer's device, recording nothing. Training mode uses the
    /// live weights, otherwise the moving average where there is one.
    /// `training` normalises with batch statistics, leaving the running ones
    /// alone (they follow the generator's own steps); otherwise it uses the
    /// running statistics (sampling).
    pub fn generate(&mut self, z: &Tensor, cond: &Tensor, training: bool) -> Result<Tensor> {
        let tape = Tape::no_grad();
        let mut scratch;
        let buffers = if training {
            scratch = self.g_buffers.clone();
            &mut scratch
        } else {
            &mut self.g_buffers
        };
        let params = match (&self.g_ema, training) {
            (Some(ema), false) => ema,
            _ => &self.g_params,
        };
        let mut cx = Ctx {
            tape: &tape,
            params,
            buffers,
            training,
            rng: &mut self.rng,
            frozen: false,
        };
        let (z, c) = (
            tape.constant(z.to_device(&self.device)?),
            tape.constant(cond.to_device(&self.device)?),
        );
        Ok(self.generator.forward(&mut cx, &z, &c)?.into_value())
    }

    /// The discriminator's training-mode forward on real and generated images
    /// as one batch, on a scratch copy of its BN buffers; returns (real rows,
    /// generated rows). One batch, because batch norm normalises with the
    /// batch's own statistics: a generated-only batch would have its mean
    /// colour and contrast normalised away, so the discriminator could not
    /// see them differ from real faces and the generator would get no
    /// gradient to fix them (the first runs stayed textured noise that way).
    /// With `gan.instance_noise` both halves get fresh Gaussian noise first.
    fn disc_joint(
        &mut self,
        tape: &Tape,
        real: &Var,
        fake: &Var,
        frozen: bool,
    ) -> Result<(MtlOutput, MtlOutput)> {
        let (n, m) = (real.dims()[0], fake.dims()[0]);
        let mut x = ops::concat(tape, &[real, fake], 0)?;
        let sigma = self.instance_noise_std();
        if sigma > 0.0 {
            let noise = Tensor::randn(x.dims(), sigma, DType::F32, &mut self.rng);
            x = ops::add(tape, &x, &tape.constant(noise.to_device(&self.device)?))?;
        }
        let mut scratch = self.d_buffers.clone();
        let mut cx = Ctx {
            tape,
            params: &self.d_params,
            buffers: &mut scratch,
            training: true,
            rng: &mut self.rng,
            frozen,
        };
        let out = self.discriminator.forward(&mut cx, &x)?;
        Ok((rows(tape, &out, 0, n)?, rows(tape, &out, n, m)?))
    }

    /// The instance noise's std at the current step: `gan.instance_noise`
    /// decaying linearly to 0 at `train.steps`.
    pub fn instance_noise_std(&self) -> f64 {
        let left = 1.0 - self.progress.step as f64 / self.config.train.steps.max(1) as f64;
        self.config.gan.instance_noise * left.max(0.0)
    }

    /// Updates the discriminator's running statistics from real images alone
    /// (recording nothing): the statistics its eval-mode heads use on real frames.
    fn track_real_stats(&mut self, images: &Tensor) -> Result<()> {
        let tape = Tape::no_grad();
        let mut cx = Ctx {
            tape: &tape,
            params: &self.d_params,
            buffers: &mut self.d_buffers,
            training: true,
            rng: &mut self.rng,
            frozen: false,
        };
        self.discriminator
            .forward(&mut cx, &tape.constant(images.to_device(&self.device)?))?;
        Ok(())
    }

    fn finish_step(
        &self,
        who: &str,
        terms: &GanTerms,
        grads: &mut Gradients,
    ) -> Result<(f64, f64)> {
        let step = self.progress.step;
        let loss = terms.total.value().item()?;
        if !loss.is_finite() {
            return Err(Error::NonFinite(format!(
                "step {step}: {who} loss is {loss} (adversarial {}, multi-task {}: va {}, au {}, expr {})",
                terms.adv, terms.mtl, terms.va, terms.au, terms.expr
            )));
        }
        let clip = self.config.train.grad_clip;
        let norm = checked_grad_norm(grads, clip)
            .map_err(|e| Error::NonFinite(format!("step {step}: {who}: {e}")))?;
        Ok((loss, norm))
    }

    /// One discriminator update on a real batch and as many generated images.
    /// Only the discriminator's state changes: its parameters, optimizer and
    /// real-data BN statistics.
    pub fn d_step(&mut self, batch: &Batch, bank: &ConditionBank) -> Result<PlayerStats> {
        let n = batch.len();
        let cond = bank.sample(n, &mut self.rng)?;
        let z = self.noise(n);
        let fake = self.generate(&z, &cond.input, true)?;
        let tape = Tape::new();
        let x_real = tape.constant(batch.images.to_device(&self.device)?);
        let (real, fake) = self.disc_joint(&tape, &x_real, &tape.constant(fake), false)?;
        let (va, au) = (
            batch.va.to_device(&self.device)?,
            batch.aus.to_device(&self.device)?,
        );
        let labels = MtlTargets {
            va: &va,
            au: &au,
            expr: &batch.expr_class,
        };
        let terms = discriminator_loss(
            &tape,
            &self.config.gan,
            &self.mtl,
            &self.d_params,
            &real,
            &fake,
            &labels,
        )?;
        let (d_real, d_fake) = mean_d(&real, &fake);
        let mut grads = tape.backward(&terms.total)?;
        drop(tape);
        let (loss, grad_norm) = self.finish_step("discriminator", &terms, &mut grads)?;
        self.opt_d
            .step(&mut self.d_params, &grads, self.config.gan.lr_d)?;
        self.track_real_stats(&batch.images)?;
        Ok(PlayerStats::new(loss, &terms, grad_norm, (d_real, d_fake)))
    }

    /// One generator update on as many images as `real` holds, with
    /// conditions from `bank`; `real` joins them in the discriminator's batch
    /// (see `disc_joint`). Only the generator's state changes: parameters,
    /// optimizer, BN statistics. With the mode-seeking term on, the
    /// conditions come in pairs (see [`ConditionBank::sample_paired`]).
    pub fn g_step(&mut self, real: &Tensor, bank: &ConditionBank) -> Result<PlayerStats> {
        let n = real.dims()[0];
        let cond = if self.config.gan.mode_seeking_weight > 0.0 {
            bank.sample_paired(n, &mut self.rng)?
        } else {
            bank.sample(n, &mut self.rng)?
        };
        let z = self.noise(n);
        self.g_step_on(real, &z, &cond)
    }

    /// The generator step for given real images, noise and conditions (rows
    /// i and i + n/2 of `cond` must match when the mode-seeking term is on).
    pub fn g_step_on(
        &mut self,
        real: &Tensor,
        z: &Tensor,
        cond: &Conditions,
    ) -> Result<PlayerStats> {
        let tape = Tape::new();
        let images = {
            let mut cx = Ctx {
                tape: &tape,
                params: &self.g_params,
                buffers: &mut self.g_buffers,
                training: true,
                rng: &mut self.rng,
                frozen: false,
            };
            let (zv, cv) = (
                tape.constant(z.to_device(&self.device)?),
                tape.constant(cond.input.to_device(&self.device)?),
            );
            self.generator.forward(&mut cx, &zv, &cv)?
        };
        let mode_seeking = (self.config.gan.mode_seeking_weight > 0.0)
            .then(|| mode_seeking_loss(&tape, &images, z))
            .transpose()?;
        let real = tape.constant(real.to_device(&self.device)?);
        let (real_out, fake) = self.disc_joint(&tape, &real, &images, true)?;
        let (va, au) = (
            cond.va.to_device(&self.device)?,
            cond.aus.to_device(&self.device)?,
        );
        let requested = MtlTargets {
            va: &va,
            au: &au,
            expr: &cond.expr,
        };
        let terms = generator_loss(
            &tape,
            &self.config.gan,
            &self.mtl_g,
            &self.d_params,
            &fake,
            &requested,
            mode_seeking.as_ref(),
        )?;
        let (d_real, d_fake) = mean_d(&real_out, &fake);
        let mut grads = tape.backward(&terms.total)?;
        drop(tape);
        let (loss, grad_norm) = self.finish_step("generator", &terms, &mut grads)?;
        self.opt_g
            .step(&mut self.g_params, &grads, self.config.gan.lr_g)?;
        self.update_ema()?;
        self.progress.step += 1;
        Ok(PlayerStats::new(loss, &terms, grad_norm, (d_real, d_fake)))
    }

    /// `ema = decay * ema + (1 - decay) * live` for every generator weight.
    fn update_ema(&mut self) -> Result<()> {
        let Some(ema) = &mut self.g_ema else {
            return Ok(());
        };
        let d = self.config.gan.g_ema_decay;
        let tape = Tape::no_grad();
        let ids: Vec<_> = ema.ids().collect();
        for id in ids {
            let (avg, live) = (
                tape.constant(ema.get(id).clone()),
                tape.constant(self.g_params.get(id).clone()),
            );
            let next = ops::add(
                &tape,
                &ops::scale(&tape, &avg, d)?,
                &ops::scale(&tape, &live, 1.0 - d)?,
            )?;
            ema.set(id, next.into_value())?;
        }
        Ok(())
    }

    /// The discriminator's multi-task heads scored with the ABAW metrics.
    pub fn evaluate_discriminator(&mut self, loader: &Loader) -> Result<MtlMetrics> {
        crate::train::trainer::evaluate(
            &self.discriminator,
            &self.d_params,
            &mut self.d_buffers,
            &mut self.rng,
            loader,
        )
    }

    /// Both players in one registry, names prefixed; the generator's come
    /// first, so the discriminator's optimizer indices shift by its count.
    fn joint_params(&self) -> Result<Params> {
        let mut all = Params::new();
        for (prefix, p) in [(G_PREFIX, &self.g_params), (D_PREFIX, &self.d_params)] {
            for id in p.ids() {
                all.add(format!("{prefix}{}", p.name(id)), p.get(id).clone())?;
            }
        }
        Ok(all)
    }

    /// Both players' buffers, the generator's moving average and the prototypes.
    fn joint_buffers(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (prefix, b) in [(G_PREFIX, &self.g_buffers), (D_PREFIX, &self.d_buffers)] {
            for id in b.ids() {
                out.insert(format!("{prefix}{}", b.name(id)), b.get(id).clone());
            }
        }
        if let Some(ema) = &self.g_ema {
            for id in ema.ids() {
                out.insert(format!("{EMA_PREFIX}{}", ema.name(id)), ema.get(id).clone());
            }
        }
        out.insert(
            PROTOTYPES.into(),
            prototypes_to_tensor(&self.prototypes, self.config.generator.n_aus)?,
        );
        Ok(out)
    }

    /// Both optimizers' state, keys `<buffer>.<index>` renamed
    /// `<prefix><buffer>.<index + offset>`.
    fn joint_optimizer(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        let offset = self.g_params.len();
        for (prefix, state, shift) in [
            (G_PREFIX, self.opt_g.state_dict(), 0),
            (D_PREFIX, self.opt_d.state_dict(), offset),
        ] {
            for (k, t) in state {
                let key = match split_index(&k) {
                    Some((b, i)) => format!("{prefix}{b}.{}", i + shift),
                    None => format!("{prefix}{k}"),
                };
                out.insert(key, t);
            }
        }
        out
    }

    /// Writes both players, their optimizers, BN buffers, the prototypes,
    /// progress and the config atomically (safetensors).
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        checkpoint::save(
            path,
            &CheckpointRef {
                params: &self.joint_params()?,
                optimizer: &self.joint_optimizer(),
                buffers: &self.joint_buffers()?,
                progress: self.progress.with_rng(&self.rng),
                config_toml: &self.config.to_toml(),
            },
        )
    }

    /// Restores what `save_checkpoint` wrote; on error nothing changes.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let mut all = self.joint_params()?;
        let mut buffers = self.joint_buffers()?;
        let ck = checkpoint::load(path, &mut all, &mut buffers)?;
        let offset = self.g_params.len();
        let (mut g_state, mut d_state) = (BTreeMap::new(), BTreeMap::new());
        for (k, t) in ck.optimizer {
            if let Some(rest) = k.strip_prefix(G_PREFIX) {
                g_state.insert(rest.to_string(), t);
            } else if let Some(rest) = k.strip_prefix(D_PREFIX) {
                let key = match split_index(rest) {
                    Some((b, i)) if i >= offset => format!("{b}.{}", i - offset),
                    _ => rest.to_string(),
                };
                d_state.insert(key, t);
            }
        }
        let (mut opt_g, mut opt_d) = (
            Adam::new(self.opt_g.config.clone()),
            Adam::new(self.opt_d.config.clone()),
        );
        opt_g.load_state_dict(&g_state)?;
        opt_d.load_state_dict(&d_state)?;
        let prototypes = prototypes_from_tensor(&buffers[PROTOTYPES])?;
        let mut g_params = self.g_params.clone();
        let mut d_params = self.d_params.clone();
        let mut ids = all.ids();
        for p in [&mut g_params, &mut d_params] {
            let own: Vec<_> = p.ids().collect();
            for id in own {
                let src = ids.next().expect("joint registry holds both players");
                p.set(id, all.get(src).clone())?;
            }
        }
        let mut g_buffers = self.g_buffers.clone();
        let mut d_buffers = self.d_buffers.clone();
        for (prefix, b) in [(G_PREFIX, &mut g_buffers), (D_PREFIX, &mut d_buffers)] {
            let own: Vec<_> = b.ids().collect();
            for id in own {
                let key = format!("{prefix}{}", b.name(id));
                b.set(id, buffers[&key].clone())?;
            }
        }
        let g_ema = match &self.g_ema {
            Some(ema) => {
                let mut ema = ema.clone();
                let ids: Vec<_> = ema.ids().collect();
                for id in ids {
                    let key = format!("{EMA_PREFIX}{}", ema.name(id));
                    ema.set(id, buffers[&key].clone())?;
                }
                Some(ema)
            }
            None => None,
        };
        self.g_params = g_params;
        self.g_ema = g_ema;
        self.d_params = d_params;
        self.g_buffers = g_buffers;
        self.d_buffers = d_buffers;
        self.opt_g = opt_g;
        self.opt_d = opt_d;
        self.prototypes = prototypes;
        self.rng = Rng::from_state(ck.progress.rng);
        self.progress = ck.progress;
        Ok(())
    }
}
