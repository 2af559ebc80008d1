//! The frame multi-task trainer as a runner task, and a whole run as
//! `mtaffect train` drives it: the data (generating the synthetic set when
//! missing), the chance baseline, steps on shuffled batches (optionally
//! transformed, e.g. with generated faces mixed in), validation with the
//! ABAW metrics, `best` by P_MTL.

use super::cursor::BatchCursor;
use super::data_parallel::DataParallel;
use super::memory_budget;
use super::runner::{self, Evaluation, RunOutcome, StepReport, Task};
use super::RunDir;
use super::{
    chance_baseline, make_loader, prepare_data, InitReport, MetricsLog, StepStats, TrainConfig,
    TrainProgress, Trainer,
};
use crate::data::{BatchTransform, Loader};
use crate::dist::ProcessGroup;
use crate::dist::{rendezvous, require_nccl, DistEnv, Shard};
use crate::metrics::MtlMetrics;
use crate::{Device, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub struct FrameTask {
    pub trainer: Trainer,
    train: Loader,
    /// Scored at every evaluation (none: evaluations only checkpoint).
    val: Option<Loader>,
    cursor: BatchCursor,
    transform: Option<Box<dyn BatchTransform>>,
    /// Train-mean VA, majority expression and no AU, scored on the
    /// validation labels.
    pub chance: Option<MtlMetrics>,
    /// The validation metrics of the last evaluation.
    pub last: Option<MtlMetrics>,
    /// What `model.init_from` loaded into a fresh run.
    init: Option<InitReport>,
}

impl FrameTask {
    pub fn new(
        trainer: Trainer,
        train: Loader,
        val: Option<Loader>,
        transform: Option<Box<dyn BatchTransform>>,
    ) -> Result<Self> {
        let ls = train.dataset().label_set;
        let chance = val
            .as_ref()
            .map(|v| {
                chance_baseline(
                    &train.dataset().samples,
                    &v.dataset().samples,
                    ls.num_expressions(),
                    ls.num_aus(),
                )
            })
            .transpose()?;
        Ok(FrameTask {
            trainer,
            train,
            val,
            cursor: BatchCursor::default(),
            transform,
            chance,
            last: None,
            init: None,
        })
    }
}

/// A trainer step's figures as the runner logs them (frame and temporal runs).
pub(crate) fn step_report(s: &StepStats, items: f64) -> StepReport {
    let record = json!({
        "loss": s.loss,
        "loss_va": s.va,
        "loss_au": s.au,
        "loss_expr": s.expr,
        "lr": s.lr,
        "grad_norm": s.grad_norm,
    });
    let Value::Object(record) = record else {
        unreachable!("a JSON object literal")
    };
    StepReport {
        loss: s.loss,
        line: format!("loss {:.4} lr {:.2e}", s.loss, s.lr),
        record,
        items,
    }
}

/// Logs what loading dropped or merged, per split, as the `data` record at
/// step 0, so nothing skipped stays hidden (frame and GAN runs).
pub(crate) fn log_data(log: &mut MetricsLog, train: &Loader, val: Option<&Loader>) -> Result<()> {
    log.log(
        "data",
        0,
        &json!({
            "train": train.skipped(),
            "val": val.map(Loader::skipped),
        }),
    )
}

/// Logs validation metrics, offers P_MTL as the selection score and prints
/// the line (frame and temporal runs).
pub(crate) fn report_validation(ev: &mut Evaluation, m: &MtlMetrics) -> Result<()> {
    ev.log.log("val", ev.step, m)?;
    let best = if ev.offer(m.p_mtl) { " best" } else { "" };
    ev.say(&format!("step {}: val {}{best}", ev.step, m.summary()));
    Ok(())
}

impl Task for FrameTask {
    fn unit(&self) -> &'static str {
        "img"
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} parameters), {} train / {} val frames",
            self.trainer.config.model.backbone,
            self.trainer.params.numel(),
            self.train.dataset().samples.len(),
            self.val.as_ref().map_or(0, |v| v.dataset().samples.len()),
        )
    }

    fn progress(&self) -> &TrainProgress {
        &self.trainer.progress
    }

    fn progress_mut(&mut self) -> &mut TrainProgress {
        &mut self.trainer.progress
    }

    /// Logs the data's skip counts, what `model.init_from` loaded and the
    /// chance baseline.
    fn begin(&mut self, log: &mut MetricsLog) -> Result<Vec<String>> {
        log_data(log, &self.train, self.val.as_ref())?;
        let mut lines = Vec::new();
        if let Some(report) = &self.init {
            lines.push(report.to_string());
            log.log("init", 0, report)?;
        }
        if let Some(chance) = &self.chance {
            log.log("baseline", 0, chance)?;
            lines.push(format!(
                "chance baseline on the validation set (train-mean VA, majority expression, no AU): P_MTL {:.3}",
                chance.p_mtl
            ));
        }
        Ok(lines)
    }

    fn step(&mut self) -> Result<StepReport> {
        let batch = self.cursor.next(&self.train, &mut self.trainer.progress)?;
        let batch = match &mut self.transform {
            Some(t) => t.apply(&batch, self.trainer.rng_mut())?,
            None => batch,
        };
        let s = self.trainer.step(&batch)?;
        Ok(step_report(&s, batch.len() as f64))
    }

    fn evaluate(&mut self, ev: &mut Evaluation) -> Result<()> {
        self.trainer.end_period();
        if let Some(d) = &mut self.trainer.dist {
            d.broadcast_buffers(&mut self.trainer.buffers)?;
        }
        if let Some(val) = &self.val {
            let t = &mut self.trainer;
            let m = match &mut t.dist {
                Some(d) => d.evaluate(val, |images| {
                    let (va, expr, au) = super::trainer::infer(
                        &t.net,
                        &t.params,
                        &mut t.buffers,
                        &mut t.rng,
                        images,
                    )?;
                    Ok(super::HeadOutputs { va, expr, au })
                })?,
                None => t.evaluate(val)?,
            };
            report_validation(ev, &m)?;
            self.last = Some(m);
        }
        Ok(())
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.trainer.save_checkpoint(path)
    }

    fn group(&mut self) -> Option<&mut ProcessGroup> {
        self.trainer.dist.as_mut().map(|d| &mut d.group)
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        self.trainer.load_checkpoint(path)
    }
}

/// Trains `cfg` in a new run directory, or continues the run in `resume`
/// (whose saved config is used; `cfg` is then ignored). Returns the task
/// (its last validation metrics, the chance baseline) and the outcome.
pub fn train_run(cfg: &TrainConfig, resume: Option<&Path>) -> Result<(FrameTask, RunOutcome)> {
    train_rank(cfg, resume, None)
}

/// How long rank 0 waits for the others to join, and they for it.
const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(120);

/// [`train_run`] as one process of a data-parallel run when `env` is given
/// (torchrun's variables): the rendezvous first (rank 0 makes the NCCL id
/// on a GPU), each GPU rank on `cuda:LOCAL_RANK` where the config says
/// `cuda` or `auto`, the data prepared by rank 0 alone, each rank's loaders
/// sharded, and at the end the parameters compared across ranks by
/// checksum. An error on this rank after the rendezvous is reported to
/// every rank.
pub fn train_rank(
    cfg: &TrainConfig,
    resume: Option<&Path>,
    env: Option<&DistEnv>,
) -> Result<(FrameTask, RunOutcome)> {
    let (mut cfg, run) = runner::resolve(cfg, resume)?;
    let Some(env) = env else {
        return train_process(&cfg, run, None, &[]);
    };
    let dev = cfg.train.device.as_str();
    if dev == "cuda" || (dev == "auto" && crate::backend::cuda::driver_available()) {
        cfg.train.device = format!("cuda:{}", env.local_rank);
    }
    let cuda = Device::parse(&cfg.train.device)?.is_cuda();
    if cuda {
        require_nccl()?;
    }
    let (id, control) = rendezvous(
        env,
        || match cuda {
            true => crate::dist::nccl::unique_id(),
            false => Ok(Vec::new()),
        },
        RENDEZVOUS_TIMEOUT,
    )?;
    train_process(&cfg, run, Some(ProcessGroup::new(control)), &id)
}

/// The run of one process; `group` (with the NCCL id) for a rank of a
/// data-parallel run, whose failures before the runner starts are
/// reported to every rank here (the runner reports its own).
fn train_process(
    cfg: &TrainConfig,
    run: Option<RunDir>,
    mut group: Option<ProcessGroup>,
    nccl_id: &[u8],
) -> Result<(FrameTask, RunOutcome)> {
    let task = build_task(cfg, run.is_none(), &mut group, nccl_id);
    if let (Err(e), Some(g)) = (&task, &mut group) {
        g.fail(&e.to_string());
    }
    let mut task = task?;
    let out = runner::run(&mut task, cfg, run)?;
    if let Some(d) = &mut task.trainer.dist {
        let line = d.check_identical(&task.trainer.params)?;
        if d.rank() == 0 {
            println!("{line}");
        }
    }
    Ok((task, out))
}

/// The task of a run: data, loaders (sharded in a data-parallel run),
/// trainer, the fresh run's `model.init_from`, and the trainer's place in
/// the group. Takes the group out of `group` once the trainer holds it.
fn build_task(
    cfg: &TrainConfig,
    fresh: bool,
    group: &mut Option<ProcessGroup>,
    nccl_id: &[u8],
) -> Result<FrameTask> {
    memory_budget::check_frame(cfg, &Device::parse(&cfg.train.device)?)?;
    // Rank 0 generates missing synthetic data; the others wait and read it.
    let root = match group {
        Some(g) if g.rank() != 0 => {
            g.barrier()?;
            prepare_data(&cfg.data, true)?
        }
        Some(g) => {
            let root = prepare_data(&cfg.data, cfg.run.quiet);
            g.barrier()?;
            root?
        }
        None => prepare_data(&cfg.data, cfg.run.quiet)?,
    };
    let mut train = make_loader(cfg, &root, &cfg.data.train_annotations, true)?;
    let mut val = make_loader(cfg, &root, &cfg.data.val_annotations, false)?;
    let transform = crate::train::gan::GanMixer::load(
        &cfg.gan_mix,
        cfg.data.image_size,
        cfg.model.n_aus,
        cfg.model.n_expr,
    )?
    .map(|m| Box::new(m) as Box<dyn BatchTransform>);
    let mut trainer = Trainer::new(cfg)?;
    // Before the run directory exists: a strict load that fails leaves none.
    let init = match (fresh, &cfg.model.init_from) {
        (true, Some(path)) => Some(trainer.init_from(path, cfg.model.init_strict)?),
        _ => None,
    };
    if let Some(g) = group {
        let shard = |b| Shard::new(g.rank(), g.world_size(), b);
        train = train.sharded(shard(cfg.data.batch_size)?)?;
        let val_batch = val.batching().0;
        val = val.sharded(shard(val_batch)?)?;
    }
    if let Some(g) = group.take() {
        trainer.dist = Some(DataParallel::new(
            g,
            &trainer.params,
            &trainer.device,
            nccl_id,
        )?);
    }
    let mut task = FrameTask::new(trainer, train, Some(val), transform)?;
    task.init = init;
    Ok(task)
}
