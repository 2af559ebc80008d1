//! The temporal trainer as a runner task, and a run as `mtaffect temporal
//! train` drives it: load and normalise the feature sequences, train on
//! chunk streams with periodic validation (`best` by raw P_MTL), then score
//! the best model with and without moving-average smoothing.

use super::eval::{score, score_with_smoothing, SmoothedEval};
use super::trainer::{reset_rows, TemporalTrainer};
use super::TemporalConfig;
use crate::data::abaw_annotations::{read_mtl_annotations, ReadOptions};
use crate::data::chunks::{self, Plan};
use crate::data::sequence::SequenceSet;
use crate::data::video_share::train_on_share;
use crate::train::frame_run::{report_validation, step_report};
use crate::train::head_outputs::{self, HeadOutputs};
use crate::train::memory_budget;
use crate::train::runner::{self, Evaluation, RunOutcome, StepReport, Task};
use crate::train::{RunDir, TrainProgress};
use crate::{Device, Error, Result, Rng};
use std::path::{Path, PathBuf};

const PLAN_DOMAIN: u64 = 0xC4_0A7C;

/// One split's annotated videos joined with their feature files; the
/// training split (`train`) keeps `data.train_video_fraction` of its videos.
pub fn read_split(cfg: &TemporalConfig, annotations: &str, train: bool) -> Result<SequenceSet> {
    let d = &cfg.data;
    if !d.features.is_dir() {
        return Err(crate::Error::Config(format!(
            "data.features = {}: no such folder; write it with `mtaffect features --checkpoint <frame model> --out {0}`",
            d.features.display()
        )));
    }
    let opts = ReadOptions {
        label_set: d.label_set,
        ..ReadOptions::default()
    };
    let (mut samples, _) = read_mtl_annotations(&d.features.join(annotations), &opts)?;
    if train {
        train_on_share(&mut samples, d.train_video_fraction, annotations);
    }
    SequenceSet::load(&d.features, &samples, d.label_set.num_aus())
}

pub struct TemporalTask {
    pub trainer: TemporalTrainer,
    train: SequenceSet,
    val: SequenceSet,
    /// The chunk plan of the epoch being trained, and that epoch.
    plan: Option<(u64, Plan)>,
    /// The best checkpoint's scores, raw and smoothed (at the end of a run).
    pub eval: Option<SmoothedEval>,
}

impl TemporalTask {
    /// A fresh model on the config's feature sequences, normalised with the
    /// training set's statistics.
    pub fn new(cfg: &TemporalConfig) -> Result<Self> {
        let mut train = read_split(cfg, &cfg.data.train_annotations, true)?;
        let mut val = read_split(cfg, &cfg.data.val_annotations, false)?;
        memory_budget::check_temporal(cfg, train.dim, &Device::parse(&cfg.train.device)?)?;
        let norm = train.feature_stats();
        train.normalise(&norm)?;
        val.normalise(&norm)?;
        Ok(TemporalTask {
            trainer: TemporalTrainer::new(cfg, norm)?,
            train,
            val,
            plan: None,
            eval: None,
        })
    }

    /// The shuffled chunk plan of `epoch`: a function of the seed and the
    /// epoch alone, so a resumed run plans the same.
    fn plan(&self, epoch: u64) -> Result<Plan> {
        let cfg = &self.trainer.config;
        let mut rng = Rng::new(cfg.train.seed ^ PLAN_DOMAIN).fork(epoch);
        let plan = chunks::plan(&self.train, cfg.data.lanes, cfg.data.chunk, Some(&mut rng))?;
        if plan.is_empty() {
            return Err(Error::Config(
                "temporal training set: no chunk to train on".into(),
            ));
        }
        Ok(plan)
    }
}

impl Task for TemporalTask {
    fn unit(&self) -> &'static str {
        "frames"
    }

    fn describe(&self) -> String {
        format!(
            "{:?} encoder ({} parameters), {} train / {} val videos ({} / {} frames, {} features)",
            self.trainer.config.model.encoder,
            self.trainer.params.numel(),
            self.train.videos.len(),
            self.val.videos.len(),
            self.train.frames(),
            self.val.frames(),
            self.train.dim,
        )
    }

    fn progress(&self) -> &TrainProgress {
        &self.trainer.progress
    }

    fn progress_mut(&mut self) -> &mut TrainProgress {
        &mut self.trainer.progress
    }

    /// The next chunk step of the epoch's plan; a new epoch starts with a
    /// new plan and no carried state.
    fn step(&mut self) -> Result<StepReport> {
        let p = self.trainer.progress;
        let stale = self.plan.as_ref().is_none_or(|(e, _)| *e != p.epoch);
        if stale {
            self.plan = Some((p.epoch, self.plan(p.epoch)?));
        }
        let len = self.plan.as_ref().map_or(0, |(_, plan)| plan.len());
        if p.position_in_epoch >= len as u64 {
            let epoch = p.epoch + 1;
            self.plan = Some((epoch, self.plan(epoch)?));
            let p = &mut self.trainer.progress;
            (p.epoch, p.position_in_epoch) = (epoch, 0);
            self.trainer.carry.clear();
        }
        let (_, plan) = self.plan.as_ref().expect("planned above");
        let pos = self.trainer.progress.position_in_epoch as usize;
        let b = chunks::batch(&self.train, &plan[pos], self.trainer.config.data.chunk)?;
        let carry = reset_rows(std::mem::take(&mut self.trainer.carry), &b.reset)?;
        let (s, next) = self.trainer.step(&b, carry)?;
        self.trainer.carry = next;
        self.trainer.progress.position_in_epoch += 1;
        let frames = b.mask.iter().filter(|&&m| m).count();
        Ok(step_report(&s, frames as f64))
    }

    fn evaluate(&mut self, ev: &mut Evaluation) -> Result<()> {
        let n_expr = self.trainer.config.model.n_expr;
        let m = score(&self.val, &self.trainer.predict(&self.val)?, n_expr, [1; 3])?;
        report_validation(ev, &m)
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.trainer.save_checkpoint(path)
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        self.trainer.load_checkpoint(path)
    }

    /// The best checkpoint scored raw and with the smoothing windows
    /// searched, written to `eval.json`.
    fn finish(&mut self, run: &RunDir) -> Result<Vec<PathBuf>> {
        let cfg = &self.trainer.config;
        let mut best = TemporalTrainer::from_checkpoint(&run.best_checkpoint())?;
        let eval = score_with_smoothing(
            &self.val,
            &best.predict(&self.val)?,
            cfg.model.n_expr,
            &cfg.smoothing.windows,
        )?;
        let json = serde_json::to_string_pretty(&eval).expect("metrics serialise");
        let path = run.path().join("eval.json");
        crate::io::write_atomic(&path, json.as_bytes())?;
        self.eval = Some(eval);
        Ok(vec![path])
    }
}

/// Trains `cfg` in a new run directory, or continues the run in `resume`
/// (whose saved config is used; `cfg` is then ignored). Returns the task
/// (with the best checkpoint's final scores) and the outcome.
pub fn train_temporal(
    cfg: &TemporalConfig,
    resume: Option<&Path>,
) -> Result<(TemporalTask, RunOutcome)> {
    let (cfg, run) = runner::resolve(cfg, resume)?;
    let mut task = TemporalTask::new(&cfg)?;
    let out = runner::run(&mut task, &cfg, run)?;
    Ok((task, out))
}

/// Scores temporal checkpoints on a split of their feature folders (the
/// config's validation file unless `annotations` names another): one
/// model, or several as an ensemble (see [`head_outputs::average`]), raw
/// and smoothed. The members may read different feature folders (features
/// of different frame models) as long as they hold the same frames.
pub fn eval_temporal(checkpoints: &[PathBuf], annotations: Option<&str>) -> Result<SmoothedEval> {
    let mut members: Vec<(SequenceSet, Vec<HeadOutputs>)> = Vec::new();
    let mut first_cfg = None;
    for path in checkpoints {
        let mut t = TemporalTrainer::from_checkpoint(path)?;
        let cfg = t.config.clone();
        let mut val = read_split(
            &cfg,
            annotations.unwrap_or(&cfg.data.val_annotations),
            false,
        )?;
        val.normalise(&t.norm)?;
        if let Some((set, _)) = members.first() {
            same_frames(&checkpoints[0], set, path, &val)?;
        }
        let outs = t.predict(&val)?;
        first_cfg.get_or_insert(cfg);
        members.push((val, outs));
    }
    let cfg = first_cfg.ok_or_else(|| Error::Config("give at least one --checkpoint".into()))?;
    let n_expr = cfg.model.n_expr;
    let videos = members[0].1.len();
    let outs = (0..videos)
        .map(|v| {
            let per: Vec<HeadOutputs> = members.iter().map(|m| m.1[v].clone()).collect();
            head_outputs::average(&per, n_expr)
        })
        .collect::<Result<Vec<_>>>()?;
    score_with_smoothing(&members[0].0, &outs, n_expr, &cfg.smoothing.windows)
}

/// Ensemble members must score the same frames with the same labels.
fn same_frames(a: &Path, sa: &SequenceSet, b: &Path, sb: &SequenceSet) -> Result<()> {
    let key = |s: &SequenceSet| -> Vec<(String, Vec<u32>, Vec<bool>)> {
        s.videos
            .iter()
            .map(|v| (v.video.clone(), v.frames.clone(), v.labelled.clone()))
            .collect()
    };
    if key(sa) != key(sb) {
        return Err(Error::Config(format!(
            "{} and {} cannot be ensembled: their feature folders hold different videos or frames",
            a.display(),
            b.display()
        )));
    }
    Ok(())
}
