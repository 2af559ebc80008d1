//! Masked-autoencoder pretraining as a runner task, and a whole run as
//! `mtaffect pretrain` drives it: the images (labels ignored), steps with
//! fresh masks, and at every evaluation the reconstruction error on the
//! held-out images under fixed masks (`val` record `loss`; the lowest is
//! kept as `best.safetensors`) and a reconstruction grid
//! `reconstruction-<step>.png` (original | masked | reconstruction).

use super::trainer::grid_row;
use super::{pretrain_loaders, PretrainConfig, PretrainTrainer};
use crate::data::Loader;
use crate::train::frame_run::log_data;
use crate::train::image_grid::tile;
use crate::train::plot::write_png;
use crate::train::runner::{self, Evaluation, RunOutcome, StepReport, Task};
use crate::train::{BatchCursor, MetricsLog, TrainProgress};
use crate::Result;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub struct PretrainTask {
    pub trainer: PretrainTrainer,
    train: Loader,
    eval: Loader,
    cursor: BatchCursor,
    /// The reconstruction error of the last evaluation.
    pub last_loss: Option<f64>,
    /// The grid of the last evaluation.
    pub last_grid: Option<PathBuf>,
}

impl PretrainTask {
    pub fn new(trainer: PretrainTrainer, train: Loader, eval: Loader) -> Self {
        PretrainTask {
            trainer,
            train,
            eval,
            cursor: BatchCursor::default(),
            last_loss: None,
            last_grid: None,
        }
    }

    /// Writes the reconstruction grid of the last evaluation's first images.
    fn write_grid(&self, recs: &[super::trainer::Reconstruction], path: &Path) -> Result<()> {
        let t = &self.trainer;
        let rows = t.config.eval.grid_rows;
        let mut cells = Vec::new();
        for rec in recs {
            for i in 0..rec.plan.masked.rows().len() {
                if cells.len() == rows * 3 {
                    break;
                }
                cells.extend(grid_row(&t.grid, t.config.mae.norm_pix_loss, rec, i));
            }
        }
        let n = cells.len() / 3;
        write_png(path, &tile(&cells.concat(), t.grid.size, n, 3)?)
    }
}

impl Task for PretrainTask {
    fn unit(&self) -> &'static str {
        "img"
    }

    fn describe(&self) -> String {
        let c = &self.trainer.config;
        let s = c.encoder.stack_spec();
        format!(
            "MAE: ViT {}x{} ({} heads, patch {}) + decoder {}x{}, {} parameters, {:.0}% of {} patches hidden; {} train / {} eval images",
            s.depth,
            s.width,
            s.heads,
            c.encoder.patch,
            c.mae.decoder_depth,
            c.mae.decoder_width,
            self.trainer.params.numel(),
            100.0 * c.mae.mask_ratio,
            self.trainer.grid.tokens(),
            self.train.dataset().samples.len(),
            self.eval.dataset().samples.len(),
        )
    }

    fn progress(&self) -> &TrainProgress {
        &self.trainer.progress
    }

    fn progress_mut(&mut self) -> &mut TrainProgress {
        &mut self.trainer.progress
    }

    fn begin(&mut self, log: &mut MetricsLog) -> Result<Vec<String>> {
        log_data(log, &self.train, Some(&self.eval))?;
        Ok(Vec::new())
    }

    fn step(&mut self) -> Result<StepReport> {
        let batch = self.cursor.next(&self.train, &mut self.trainer.progress)?;
        let s = self.trainer.step(&batch.images)?;
        let Value::Object(record) = json!({
            "loss": s.loss,
            "lr": s.lr,
            "grad_norm": s.grad_norm,
        }) else {
            unreachable!("a JSON object literal")
        };
        Ok(StepReport {
            loss: s.loss,
            line: format!("loss {:.4} lr {:.2e}", s.loss, s.lr),
            record,
            items: batch.len() as f64,
        })
    }

    fn evaluate(&mut self, ev: &mut Evaluation) -> Result<()> {
        let rows = self.trainer.config.eval.grid_rows;
        let (loss, recs) = self.trainer.evaluate(&self.eval, rows)?;
        ev.log.log("val", ev.step, &json!({ "loss": loss }))?;
        // Lower is better; the runner keeps the highest score.
        let best = if ev.offer(-loss) { " best" } else { "" };
        let grid = ev
            .run
            .path()
            .join(format!("reconstruction-{:06}.png", ev.step));
        self.write_grid(&recs, &grid)?;
        ev.say(&format!(
            "step {}: held-out reconstruction loss {loss:.4}{best}; {}",
            ev.step,
            grid.display()
        ));
        self.last_loss = Some(loss);
        self.last_grid = Some(grid);
        Ok(())
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.trainer.save_checkpoint(path)
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        self.trainer.load_checkpoint(path)
    }
}

/// Pretrains `cfg` in a new run directory, or continues the run in
/// `resume` (whose saved config is used).
pub fn pretrain_run(
    cfg: &PretrainConfig,
    resume: Option<&Path>,
) -> Result<(PretrainTask, RunOutcome)> {
    let (cfg, run) = runner::resolve(cfg, resume)?;
    let (train, eval) = pretrain_loaders(&cfg)?;
    let mut task = PretrainTask::new(PretrainTrainer::new(&cfg)?, train, eval);
    let out = runner::run(&mut task, &cfg, run)?;
    Ok((task, out))
}
