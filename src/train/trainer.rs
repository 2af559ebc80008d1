//! The multi-task training loop: one tape per step, masked multi-task loss,
//! clipping, the LR schedule, periodic validation with the ABAW metrics, and
//! a state that can be captured and restored exactly (weights, buffers,
//! optimizer, loss weighting, RNG, step and position in the epoch).

use super::checkpoint::{self, CheckpointRef, TrainProgress};
use super::data_parallel::DataParallel;
use super::head_outputs::HeadOutputs;
use super::{
    ConfigFile, InitReport, LoopConfig, LossTerms, MtlLoss, MtlTargets, OptimConfig, TrainConfig,
};
use crate::autograd::ProductFlops;
use crate::data::{Batch, Loader};
use crate::metrics::{MtlEvaluator, MtlLabels, MtlMetrics, MtlPredictions};
use crate::model::{MtlNet, MtlOutput, ParamGroup};
use crate::nn::{Buffers, Ctx};
use crate::optim::{checked_grad_norm, Adam, LrMults, LrSchedule, Optimizer, Sgd, StepGuard};
use crate::{Device, Error, Params, Result, Rng, Tape, Tensor};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Loss values of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    pub step: u64,
    pub loss: f64,
    pub va: f64,
    pub au: f64,
    pub expr: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

/// Host wall time of a step's phases, in ms. On a GPU the first two are the
/// time the host took to queue the work (the GPU runs behind it) and the
/// last includes waiting for the device at the step's read-back, so a large
/// `forward_ms + backward_ms` means a host-bound step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepPhases {
    /// Upload, forward and the loss.
    pub forward_ms: f64,
    pub backward_ms: f64,
    /// Norm, clipping, the optimizer and reading the step's figures back.
    pub update_ms: f64,
}

pub struct Trainer {
    pub config: TrainConfig,
    /// Where the weights, buffers, optimizer state and each step's batch
    /// live (`train.device`); checkpoints are always written from the host.
    pub device: Device,
    pub net: MtlNet,
    pub params: Params,
    pub buffers: Buffers,
    loss: MtlLoss,
    opt: Box<dyn Optimizer>,
    /// Dropout masks.
    pub(crate) rng: Rng,
    /// Step, epoch, position and best score; `rng` is filled in when saving.
    pub progress: TrainProgress,
    /// Sums of (va, au, expr) losses and count since the last period end (DWA).
    period: ([f64; 3], u64),
    /// Where the host time of the last step went.
    pub last_phases: StepPhases,
    /// What the last step's convolutions and matrix products computed
    /// (model FLOP utilisation = this over the step time and the peak).
    pub last_flops: ProductFlops,
    /// This process's rank of a data-parallel run (`None`: one process).
    pub dist: Option<DataParallel>,
}

/// The update every trainer ends a step with: backward of the multi-task
/// loss, clipping to `grad_clip` (0: none), the scheduled rate and the
/// optimizer step. A non-finite loss or gradient norm is an error before
/// any weight changes. The tape is dropped before the update, freeing
/// what the forward saved.
///
/// On a GPU the step reads back once: the norm, the clip and the
/// finiteness check run on the device, the optimizer kernels skip the
/// update when the check fails, and the host reads {loss, va, au, expr,
/// norm} together after the update is queued (optim/guard.rs).
/// `phases` gets the backward and update times. With `dist` the gradients
/// are averaged over the ranks before the norm, so every rank clips and
/// steps alike.
#[allow(clippy::too_many_arguments)]
pub(crate) fn optimizer_step(
    tape: Tape,
    terms: LossTerms,
    params: &mut Params,
    opt: &mut dyn Optimizer,
    (grad_clip, schedule): (f64, &LrSchedule),
    step: u64,
    phases: &mut StepPhases,
    dist: Option<&mut DataParallel>,
) -> Result<StepStats> {
    let start = Instant::now();
    let total = terms.total.value();
    let lr = schedule.lr_at(step);
    // On the host the loss is checked before backward (no sync to save).
    let host = match total.is_cuda() {
        false => Some(checked(host_stats(&terms, step, lr)?)?),
        true => None,
    };
    let mut grads = tape.backward(&terms.total)?;
    drop(tape);
    if let Some(d) = dist {
        d.average_gradients(&mut grads)?;
    }
    let update_start = Instant::now();
    phases.backward_ms = ms(update_start - start);
    let before = match host {
        Some(s) => s,
        None => {
            let loss = [total, &terms.va, &terms.au, &terms.expr];
            if let Some(guard) = StepGuard::queue(&grads, loss, grad_clip)? {
                opt.step_guarded(params, &grads, lr, &guard)?;
                let r = guard.read()?;
                opt.settle(!r.skipped);
                phases.update_ms = ms(update_start.elapsed());
                return checked(StepStats {
                    step,
                    loss: r.loss,
                    va: r.va,
                    au: r.au,
                    expr: r.expr,
                    lr,
                    grad_norm: r.grad_norm,
                });
            }
            // No gradient lives on the GPU: nothing for the device to check.
            checked(host_stats(&terms, step, lr)?)?
        }
    };
    let grad_norm = checked_grad_norm(&mut grads, grad_clip)
        .map_err(|e| Error::NonFinite(format!("step {step}: {e}")))?;
    opt.step(params, &grads, lr)?;
    phases.update_ms = ms(update_start.elapsed());
    Ok(StepStats {
        grad_norm,
        ..before
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The loss values read one by one on the host (the norm still to come).
fn host_stats(terms: &LossTerms, step: u64, lr: f64) -> Result<StepStats> {
    let [va, au, expr] = terms.values()?;
    Ok(StepStats {
        step,
        loss: terms.total.value().item()?,
        va,
        au,
        expr,
        lr,
        grad_norm: 0.0,
    })
}

/// `stats` when its loss and gradient norm are finite, otherwise the error
/// a training step reports (the loss is checked first).
fn checked(stats: StepStats) -> Result<StepStats> {
    let StepStats { step, loss, .. } = stats;
    if !loss.is_finite() {
        return Err(Error::NonFinite(format!(
            "step {step}: loss is {loss} (va {}, au {}, expr {})",
            stats.va, stats.au, stats.expr
        )));
    }
    if !stats.grad_norm.is_finite() {
        let e = Error::NonFinite(format!("gradient norm is {}", stats.grad_norm));
        return Err(Error::NonFinite(format!("step {step}: {e}")));
    }
    Ok(stats)
}

pub(crate) fn make_optimizer(cfg: &OptimConfig) -> Box<dyn Optimizer> {
    match cfg {
        OptimConfig::Sgd(c) => Box::new(Sgd::new(c.clone())),
        OptimConfig::Adam(c) => Box::new(Adam::new(c.clone())),
    }
}

/// The per-parameter multipliers of a run: the learning-rate ones `lr`
/// (by parameter index), and no weight decay for parameters of at most one
/// dimension when `train.decay_biases_and_norms` is false.
pub(crate) fn param_rates(params: &Params, train: &LoopConfig, lr: Vec<f64>) -> LrMults {
    let decay = params
        .ids()
        .map(
            |id| match train.decay_biases_and_norms || params.get(id).dims().len() > 1 {
                true => 1.0,
                false => 0.0,
            },
        )
        .collect();
    LrMults::new(lr).with_decay(decay)
}

/// The frame trainer's optimizer, with `train.lr_mult`'s rate per group
/// and `train.layer_decay`'s per backbone layer.
fn group_optimizer(config: &TrainConfig, net: &MtlNet, params: &Params) -> Box<dyn Optimizer> {
    let mut mults = vec![1.0; params.len()];
    for (&group, &m) in &config.train.lr_mult {
        for id in net.group_params(group) {
            mults[id.index()] = m;
        }
    }
    let decay = config.train.layer_decay;
    if decay != 1.0 {
        for id in net.group_params(ParamGroup::Backbone) {
            let (layer, top) = config
                .model
                .backbone
                .lr_layer(params.name(id))
                .expect("validated: layer_decay only with a layered backbone");
            mults[id.index()] *= decay.powi((top - layer) as i32);
        }
    }
    let mut opt = make_optimizer(&config.optim);
    opt.set_lr_mults(param_rates(params, &config.train, mults));
    opt
}

impl Trainer {
    /// A fresh model initialised from the config's seed.
    pub fn new(config: &TrainConfig) -> Result<Self> {
        let mut rng = Rng::new(config.train.seed);
        let mut init_rng = rng.fork(1);
        let (mut params, mut buffers) = (Params::new(), Buffers::new());
        let net = MtlNet::new(&config.model, &mut params, &mut buffers, &mut init_rng)?;
        let loss = MtlLoss::new(&config.loss, &mut params)?;
        // Frozen parameters enter every tape as constants (no gradient, no
        // update). Their batch norms still use batch statistics in training
        // and update their running statistics, as PyTorch's
        // requires_grad_(False) leaves them.
        for &group in &config.train.freeze {
            for id in net.group_params(group) {
                params.set_frozen(id, true);
            }
        }
        let opt = group_optimizer(config, &net, &params);
        // Initialised on the host from the seed, then copied: a CUDA run
        // starts from exactly the weights the CPU run of the same seed has.
        let device = Device::parse(&config.train.device)?;
        params.to_device(&device)?;
        buffers.to_device(&device)?;
        Ok(Trainer {
            config: config.clone(),
            device,
            net,
            params,
            buffers,
            loss,
            opt,
            rng: rng.fork(2),
            progress: TrainProgress::start(),
            period: ([0.0; 3], 0),
            last_phases: StepPhases::default(),
            last_flops: ProductFlops::default(),
            dist: None,
        })
    }

    /// The model of a checkpoint, rebuilt from the config stored in it, on
    /// GPU 0 where there is one, else on the CPU (a checkpoint trained on
    /// either evaluates on either).
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        let text = checkpoint::read_config(path)?;
        let mut cfg =
            TrainConfig::from_toml(&text, &format!("{} (stored config)", path.display()))?;
        cfg.train.device = "auto".into();
        // The stored sizes are input like any config's: bounded before the
        // model is built.
        super::memory_budget::check_frame(&cfg, &Device::parse(&cfg.train.device)?)?;
        let mut t = Trainer::new(&cfg)?;
        t.load_checkpoint(path)?;
        Ok(t)
    }

    /// Starts this (fresh) trainer's model from the matching parameters
    /// and batch-norm buffers of the checkpoint at `path` (see
    /// [`init_from`](super::init_from)); optimizer, loss state and progress
    /// stay fresh.
    pub fn init_from(&mut self, path: &Path, strict: bool) -> Result<InitReport> {
        super::init_from::load_matching(
            path,
            strict,
            &mut self.params,
            &mut self.buffers,
            &self.device,
        )
    }

    /// One optimizer step on `batch`. A non-finite loss or gradient is an
    /// error and leaves the weights untouched.
    pub fn step(&mut self, batch: &Batch) -> Result<StepStats> {
        let step = self.progress.step;
        let start = Instant::now();
        let tape = Tape::new();
        // Training steps only: evaluation and inference stay f32.
        tape.set_precision(self.config.train.precision);
        let x = tape.constant(batch.images.to_device(&self.device)?);
        let mut cx = Ctx {
            tape: &tape,
            params: &self.params,
            buffers: &mut self.buffers,
            training: true,
            rng: &mut self.rng,
            frozen: false,
        };
        let out = self.net.forward(&mut cx, &x)?;
        let (va, au) = (
            batch.va.to_device(&self.device)?,
            batch.aus.to_device(&self.device)?,
        );
        let targets = MtlTargets {
            va: &va,
            au: &au,
            expr: &batch.expr_class,
        };
        let scales = match &mut self.dist {
            Some(d) => d.loss_scales(batch)?,
            None => [1.0; 3],
        };
        let terms = self
            .loss
            .forward_scaled(&tape, &self.params, &out, &targets, scales)?;
        let mut phases = StepPhases {
            forward_ms: ms(start.elapsed()),
            ..StepPhases::default()
        };
        self.last_flops = tape.product_flops();
        let mut stats = optimizer_step(
            tape,
            terms,
            &mut self.params,
            self.opt.as_mut(),
            (self.config.train.grad_clip, &self.config.schedule),
            step,
            &mut phases,
            self.dist.as_mut(),
        )?;
        if let Some(d) = &mut self.dist {
            // Each rank's terms are its share of the global means.
            let mut v = [stats.loss, stats.va, stats.au, stats.expr];
            d.mean(&mut v)?;
            [stats.loss, stats.va, stats.au, stats.expr] = v;
        }
        self.last_phases = phases;
        self.progress.step += 1;
        self.period.0[0] += stats.va;
        self.period.0[1] += stats.au;
        self.period.0[2] += stats.expr;
        self.period.1 += 1;
        Ok(stats)
    }

    /// The random stream of dropout masks and batch transforms (checkpointed).
    pub fn rng_mut(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// The optimizer's state (moments, step count), copied to the host.
    pub fn optimizer_state(&self) -> Result<BTreeMap<String, Tensor>> {
        let state = self.opt.state_dict().into_iter();
        state.map(|(k, t)| Ok((k, t.to_cpu()?))).collect()
    }

    /// Closes a weighting period (DWA uses the mean task losses of the last two).
    pub fn end_period(&mut self) {
        let (sums, n) = self.period;
        if n > 0 {
            self.loss.end_period(sums.map(|s| s / n as f64));
        }
        self.period = ([0.0; 3], 0);
    }

    /// Eval-mode forward of images [N, H, W, 3]: (va [N*2], expression
    /// logits [N*C], AU logits [N*A]), row-major. Records nothing.
    pub fn infer(&mut self, images: &Tensor) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        infer(
            &self.net,
            &self.params,
            &mut self.buffers,
            &mut self.rng,
            images,
        )
    }

    /// Eval-mode forward of images [N, H, W, 3]: the heads and the per-frame
    /// embeddings [N, F] they read (what temporal models are trained on).
    pub fn eval_forward(&mut self, images: &Tensor) -> Result<MtlOutput> {
        eval_forward(
            &self.net,
            &self.params,
            &mut self.buffers,
            &mut self.rng,
            images,
        )
    }

    /// The ABAW metrics over one pass of `loader`.
    pub fn evaluate(&mut self, loader: &Loader) -> Result<MtlMetrics> {
        evaluate(
            &self.net,
            &self.params,
            &mut self.buffers,
            &mut self.rng,
            loader,
        )
    }

    /// Named non-trained state: BN running statistics plus the loss
    /// weighting's state (`loss.*`), in fixed shapes so a checkpoint can be
    /// validated against a fresh trainer.
    fn buffer_map(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for id in self.buffers.ids() {
            out.insert(
                self.buffers.name(id).to_string(),
                self.buffers.get(id).clone(),
            );
        }
        let hist = self.loss.history();
        let mut rows = [0.0f64; 6];
        for (i, h) in hist.iter().enumerate() {
            rows[3 * i..3 * i + 3].copy_from_slice(h);
        }
        let f64s = |v: &[f64], d: &[usize]| Tensor::from_vec(v.to_vec(), d).expect("sizes match");
        out.insert("loss.dwa_history".into(), f64s(&rows, &[2, 3]));
        out.insert("loss.dwa_rows".into(), f64s(&[hist.len() as f64], &[1]));
        let (sums, n) = self.period;
        out.insert(
            "loss.period".into(),
            f64s(&[sums[0], sums[1], sums[2], n as f64], &[4]),
        );
        out
    }

    /// Writes `path` atomically: weights, buffers, optimizer and loss state,
    /// progress, RNG and the resolved config.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        checkpoint::save(
            path,
            &CheckpointRef {
                params: &self.params,
                optimizer: &self.opt.state_dict(),
                buffers: &self.buffer_map(),
                progress: self.progress.with_rng(&self.rng),
                config_toml: &self.config.to_toml(),
            },
        )
    }

    /// Restores everything `save_checkpoint` wrote; on error nothing changes.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let mut buffers = self.buffer_map();
        let mut params = self.params.clone();
        let ck = checkpoint::load(path, &mut params, &mut buffers)?;
        let mut opt = group_optimizer(&self.config, &self.net, &self.params);
        opt.load_state_dict(&ck.optimizer)?;
        let mut model_buffers = self.buffers.clone();
        let ids: Vec<_> = model_buffers.ids().collect();
        for id in ids {
            let t = buffers
                .remove(model_buffers.name(id))
                .expect("checkpoint::load checked every buffer");
            model_buffers.set(id, t)?;
        }
        let get = |k: &str| buffers[k].to_f64_vec();
        let (rows, n) = (get("loss.dwa_history"), get("loss.dwa_rows")[0] as usize);
        let period = get("loss.period");
        self.loss.set_history(
            rows.chunks(3)
                .take(n.min(2))
                .map(|c| [c[0], c[1], c[2]])
                .collect(),
        );
        self.period = ([period[0], period[1], period[2]], period[3] as u64);
        self.params = params;
        self.buffers = model_buffers;
        self.opt = opt;
        self.rng = Rng::from_state(ck.progress.rng);
        self.progress = ck.progress;
        Ok(())
    }
}

/// Eval-mode forward of `net` on images [N, H, W, 3]: the heads and the
/// per-frame embeddings [N, F] they read. Records nothing.
pub fn eval_forward(
    net: &MtlNet,
    params: &Params,
    buffers: &mut Buffers,
    rng: &mut Rng,
    images: &Tensor,
) -> Result<MtlOutput> {
    let tape = Tape::no_grad();
    let x = tape.constant(images.to_device(&params.device())?);
    let mut cx = Ctx {
        tape: &tape,
        params,
        buffers,
        training: false,
        rng,
        frozen: false,
    };
    net.forward(&mut cx, &x)
}

/// [`eval_forward`]'s heads as row-major vectors: (va [N*2], expression
/// logits [N*C], AU logits [N*A]).
pub fn infer(
    net: &MtlNet,
    params: &Params,
    buffers: &mut Buffers,
    rng: &mut Rng,
    images: &Tensor,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let out = eval_forward(net, params, buffers, rng, images)?;
    let host = |v: &crate::Var| v.value().to_cpu()?.to_vec();
    Ok((host(&out.va)?, host(&out.expr)?, host(&out.au)?))
}

/// The ABAW metrics of `net` over one pass of `loader` (the GAN's
/// discriminator is scored with it too).
pub fn evaluate(
    net: &MtlNet,
    params: &Params,
    buffers: &mut Buffers,
    rng: &mut Rng,
    loader: &Loader,
) -> Result<MtlMetrics> {
    evaluate_with(loader, |images| {
        let (va, expr, au) = infer(net, params, buffers, rng, images)?;
        Ok(HeadOutputs { va, expr, au })
    })
}

/// The ABAW metrics of the outputs `infer` gives for each batch of one pass
/// of `loader` (a model, or an ensemble).
pub fn evaluate_with(
    loader: &Loader,
    mut infer: impl FnMut(&Tensor) -> Result<HeadOutputs>,
) -> Result<MtlMetrics> {
    let ls = loader.dataset().label_set;
    let mut ev = MtlEvaluator::new(ls.num_expressions(), ls.num_aus());
    for batch in loader.epoch(0, 0) {
        let batch = batch?;
        let out = infer(&batch.images)?;
        let (lva, lexpr, lau) = (
            batch.va.to_vec::<f32>()?,
            batch.expr.to_vec::<f32>()?,
            batch.aus.to_vec::<f32>()?,
        );
        ev.add_batch(
            batch.len(),
            MtlPredictions {
                va: &out.va,
                expr_logits: &out.expr,
                au_logits: &out.au,
            },
            MtlLabels {
                va: &lva,
                expr: &lexpr,
                au: &lau,
            },
        )?;
    }
    Ok(ev.finish())
}
