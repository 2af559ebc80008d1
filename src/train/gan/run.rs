//! The GAN as a runner task, and a whole run as `mtaffect gan train` drives
//! it: the plain run's data preparation and loaders, alternating updates
//! (`gan.d_steps_per_g_step` discriminator steps, then a generator step),
//! and at every evaluation the discriminator's heads scored on the
//! validation set, an expression grid, a copy of `last.safetensors` per
//! step, and model selection: the discriminator's own reading of the weight
//! average's faces (a `select` record), the best of which is kept as
//! `best.safetensors`. At the end: all three grids.

use super::{
    discriminator_agreement, write_grid, ConditionBank, GanConfig, GanTrainer, GridKind,
    PlayerStats,
};
use crate::data::Loader;
use crate::metrics::MtlMetrics;
use crate::train::frame_run::log_data;
use crate::train::memory_budget;
use crate::train::runner::{self, Evaluation, RunOutcome, StepReport, Task};
use crate::train::{make_loader, prepare_data, BatchCursor, MetricsLog, RunDir, TrainProgress};
use crate::{Device, Error, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Serialize)]
struct GanRecord {
    loss_d: f64,
    loss_d_adv: f64,
    loss_d_mtl: f64,
    loss_g: f64,
    loss_g_adv: f64,
    loss_g_mtl: f64,
    g_expr: f64,
    g_mode_seeking: f64,
    instance_noise: f64,
    d_real: f64,
    d_fake: f64,
    grad_norm_d: f64,
    grad_norm_g: f64,
}

/// Model selection's figures at one evaluation (split `select`).
#[derive(Serialize)]
struct SelectRecord {
    /// Share of the selection faces the discriminator's expression head
    /// reads as requested.
    d_expr_agreement: f64,
    /// Its numerator and denominator: faces read as requested, faces shown.
    d_expr_matched: usize,
    d_expr_total: usize,
    /// Mean probability the head gives the requested expression (breaks ties).
    d_expr_confidence: f64,
    /// Mean squared pixel difference between faces of one expression.
    diversity: f64,
    /// Whether this evaluation's checkpoint became `best.safetensors`.
    best: bool,
}

/// Grid noise seed: fixed, so grids of successive evaluations are comparable.
const GRID_SEED: u64 = 7;

/// The selection score of an evaluation: more faces read as requested, then
/// more confidently (a head that reads them all right still ranks them).
/// `matched + confidence / 2` orders exactly so, since confidence is in
/// [0, 1], and `floor` gives `matched` back ([`GanTask::agreement`]).
fn selection_score(matched: usize, confidence: f64) -> f64 {
    matched as f64 + confidence / 2.0
}

pub struct GanTask {
    pub gan: GanTrainer,
    bank: ConditionBank,
    train: Loader,
    val: Loader,
    cursor: BatchCursor,
    /// The discriminator's heads on the validation set at the last evaluation.
    pub last: Option<MtlMetrics>,
}

impl GanTask {
    /// Fresh players for `cfg` on its training and validation data.
    pub fn new(cfg: &GanConfig) -> Result<Self> {
        let plain = cfg.plain();
        let root = prepare_data(&cfg.data, cfg.run.quiet)?;
        let train = make_loader(&plain, &root, &cfg.data.train_annotations, true)?;
        let val = make_loader(&plain, &root, &cfg.data.val_annotations, false)?;
        let g = &cfg.generator;
        let bank = ConditionBank::from_samples(&train.dataset().samples, g.n_aus, g.n_expr)?;
        if train.steps_per_epoch() == 0 {
            return Err(Error::Config(format!(
                "training set has {} samples, fewer than one batch of {}",
                train.dataset().samples.len(),
                cfg.data.batch_size
            )));
        }
        let mut gan = GanTrainer::new(cfg)?;
        gan.prototypes = bank.prototypes();
        Ok(GanTask {
            gan,
            bank,
            train,
            val,
            cursor: BatchCursor::default(),
            last: None,
        })
    }
}

impl GanTask {
    /// The share of selection faces read as requested behind a selection
    /// score (the runner's best score).
    pub fn agreement(&self, score: f64) -> f64 {
        let c = &self.gan.config;
        score.floor() / (c.gan.select_per_class * c.generator.n_expr).max(1) as f64
    }
}

impl Task for GanTask {
    fn unit(&self) -> &'static str {
        "img"
    }

    fn describe(&self) -> String {
        let c = &self.gan.config;
        format!(
            "generator {} px / discriminator {} ({} / {} parameters), {} train frames ({} fully labelled)",
            c.generator.image_size,
            c.discriminator.backbone,
            self.gan.g_params.numel(),
            self.gan.d_params.numel(),
            self.train.dataset().samples.len(),
            self.bank.len(),
        )
    }

    fn progress(&self) -> &TrainProgress {
        &self.gan.progress
    }

    fn progress_mut(&mut self) -> &mut TrainProgress {
        &mut self.gan.progress
    }

    fn begin(&mut self, log: &mut MetricsLog) -> Result<Vec<String>> {
        log_data(log, &self.train, Some(&self.val))?;
        Ok(Vec::new())
    }

    /// `d_steps_per_g_step` discriminator steps on successive batches, then
    /// a generator step against the last one's real images.
    fn step(&mut self) -> Result<StepReport> {
        let per_g = self.gan.config.gan.d_steps_per_g_step;
        let mut last = None;
        for _ in 0..per_g {
            let batch = self.cursor.next(&self.train, &mut self.gan.progress)?;
            last = Some((self.gan.d_step(&batch, &self.bank)?, batch));
        }
        let (d, batch): (PlayerStats, _) = last.expect("d_steps_per_g_step >= 1 (validated)");
        let gs = self.gan.g_step(&batch.images, &self.bank)?;
        let record = GanRecord {
            loss_d: d.loss,
            loss_d_adv: d.adv,
            loss_d_mtl: d.mtl,
            loss_g: gs.loss,
            loss_g_adv: gs.adv,
            loss_g_mtl: gs.mtl,
            g_expr: gs.expr,
            g_mode_seeking: gs.mode_seeking,
            instance_noise: self.gan.instance_noise_std(),
            d_real: d.d_real,
            d_fake: d.d_fake,
            grad_norm_d: d.grad_norm,
            grad_norm_g: gs.grad_norm,
        };
        let Ok(Value::Object(record)) = serde_json::to_value(&record) else {
            unreachable!("a struct of numbers serialises to an object")
        };
        Ok(StepReport {
            loss: gs.loss,
            line: format!(
                "D {:.3} (adv {:.3}, mtl {:.3}; D(real) {:.2} D(fake) {:.2})  G {:.3} (adv {:.3}, mtl {:.3}, expr {:.3})",
                d.loss, d.adv, d.mtl, d.d_real, d.d_fake, gs.loss, gs.adv, gs.mtl, gs.expr
            ),
            record,
            // Images through the discriminator: per D step real + generated
            // + the real-statistics pass, plus the G step's two.
            items: ((3 * per_g + 2) * batch.len()) as f64,
        })
    }

    fn evaluate(&mut self, ev: &mut Evaluation) -> Result<()> {
        let step = ev.step;
        let m = self.gan.evaluate_discriminator(&self.val)?;
        ev.log.log("val", step, &m)?;
        let samples = ev.run.path().join(format!("samples-{step:06}.png"));
        write_grid(&mut self.gan, GridKind::Expr, GRID_SEED, &samples)?;
        let per_class = self.gan.config.gan.select_per_class;
        if per_class > 0 {
            let a = discriminator_agreement(&mut self.gan, per_class)?;
            let is_best = ev.offer(selection_score(a.matched, a.confidence));
            ev.log.log(
                "select",
                step,
                &SelectRecord {
                    d_expr_agreement: a.rate,
                    d_expr_matched: a.matched,
                    d_expr_total: a.total,
                    d_expr_confidence: a.confidence,
                    diversity: a.diversity,
                    best: is_best,
                },
            )?;
            ev.say(&format!(
                "step {step}: discriminator reads {:.3} of the weight average's faces as requested (diversity {:.4}){}",
                a.rate,
                a.diversity,
                if is_best { ", new best.safetensors" } else { "" }
            ));
        }
        ev.say(&format!(
            "step {step}: discriminator heads on validation: P_MTL {:.3} (CCC V {:.3} A {:.3}, F1 expr {:.3}, F1 AU {:.3})",
            m.p_mtl,
            m.ccc_valence.unwrap_or(0.0),
            m.ccc_arousal.unwrap_or(0.0),
            m.expr_f1,
            m.au_f1
        ));
        self.last = Some(m);
        Ok(())
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.gan.save_checkpoint(path)
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        self.gan.load_checkpoint(path)
    }

    /// Every evaluation's players stay, so generators of a long run can be
    /// judged step by step afterwards.
    fn after_checkpoint(&mut self, run: &RunDir) -> Result<()> {
        let last = run.last_checkpoint();
        let kept = run
            .path()
            .join(format!("step-{:06}.safetensors", self.gan.progress.step));
        std::fs::copy(&last, &kept).map_err(|e| Error::io(&kept, e))?;
        Ok(())
    }

    fn finish(&mut self, run: &RunDir) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for (kind, name) in [
            (GridKind::Expr, "grid-expr.png"),
            (GridKind::Au, "grid-au.png"),
            (GridKind::Va, "grid-va.png"),
        ] {
            let p = run.path().join(name);
            write_grid(&mut self.gan, kind, GRID_SEED, &p)?;
            files.push(p);
        }
        Ok(files)
    }
}

/// Trains `cfg` in a new run directory, or continues the run in `resume`
/// (whose saved config is used; `cfg` is then ignored). Returns the task
/// (its players, the last validation metrics) and the outcome, whose best
/// score is a [`GanTask::agreement`] key.
pub fn gan_run(cfg: &GanConfig, resume: Option<&Path>) -> Result<(GanTask, RunOutcome)> {
    let (cfg, run) = runner::resolve(cfg, resume)?;
    memory_budget::check_gan(&cfg, &Device::parse(&cfg.train.device)?)?;
    let mut task = GanTask::new(&cfg)?;
    let out = runner::run(&mut task, &cfg, run)?;
    Ok((task, out))
}
