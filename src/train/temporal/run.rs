//! A temporal run as the CLI drives it: load and normalise the feature
//! sequences, train on chunk streams with periodic validation (checkpoints
//! `last` and `best` by raw P_MTL), then score the best model with and
//! without moving-average smoothing.

use super::eval::{score, score_with_smoothing, SmoothedEval};
use super::trainer::{reset_rows, TemporalTrainer};
use super::TemporalConfig;
use crate::data::abaw_annotations::{read_mtl_annotations, ReadOptions};
use crate::data::chunks;
use crate::data::sequence::SequenceSet;
use crate::train::session::{val_line, TrainRecord};
use crate::train::{plot, BestTracker, ConfigFile, RunDir};
use crate::{Result, Rng};
use std::path::PathBuf;
use std::time::Instant;

const PLAN_DOMAIN: u64 = 0xC4_0A7C;

/// One split's annotated videos joined with their feature files.
pub fn read_split(cfg: &TemporalConfig, annotations: &str) -> Result<SequenceSet> {
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
    let (samples, _) = read_mtl_annotations(&d.features.join(annotations), &opts)?;
    SequenceSet::load(&d.features, &samples, d.label_set.num_aus())
}

pub struct TemporalSummary {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub seconds: f64,
    pub best: Option<(f64, u64)>,
    /// The best checkpoint on the validation set, raw and smoothed.
    pub eval: SmoothedEval,
}

pub fn train_temporal(cfg: &TemporalConfig) -> Result<TemporalSummary> {
    // Refuse an unusable device before anything is written.
    crate::Device::parse(&cfg.train.device)?;
    let mut train = read_split(cfg, &cfg.data.train_annotations)?;
    let mut val = read_split(cfg, &cfg.data.val_annotations)?;
    let norm = train.feature_stats();
    train.normalise(&norm)?;
    val.normalise(&norm)?;
    let name = (!cfg.run.name.is_empty()).then_some(cfg.run.name.as_str());
    let run = RunDir::create(&cfg.run.runs_dir, name, &cfg.to_toml())?;
    let mut t = TemporalTrainer::new(cfg, norm)?;
    let mut log = run.metrics_log()?;
    let mut best = BestTracker::from_best(None);
    let (len, n_expr) = (cfg.data.chunk, cfg.model.n_expr);
    if !cfg.run.quiet {
        eprintln!(
            "run {}: {:?} encoder ({} parameters), {} train / {} val videos ({} / {} frames, {} features), {} steps",
            run.path().display(),
            cfg.model.encoder,
            t.params.numel(),
            train.videos.len(),
            val.videos.len(),
            train.frames(),
            val.frames(),
            train.dim,
            cfg.train.steps
        );
    }
    let started = Instant::now();
    let mut window = (Instant::now(), 0usize);
    'epochs: loop {
        let mut rng = Rng::new(cfg.train.seed ^ PLAN_DOMAIN).fork(t.progress.epoch);
        let mut carry = Vec::new();
        for step in chunks::plan(&train, cfg.data.lanes, len, Some(&mut rng))? {
            let b = chunks::batch(&train, &step, len)?;
            let (s, next) = t.step(&b, reset_rows(carry, &b.reset)?)?;
            carry = next;
            window.1 += b.mask.iter().filter(|&&m| m).count();
            if (s.step + 1).is_multiple_of(cfg.train.log_every) {
                let fps = window.1 as f64 / window.0.elapsed().as_secs_f64();
                window = (Instant::now(), 0);
                log.log(
                    "train",
                    s.step + 1,
                    &TrainRecord::new(&s, fps, t.progress.epoch),
                )?;
                if !cfg.run.quiet {
                    println!(
                        "step {} loss {:.4} lr {:.2e} {:.0} frames/s",
                        s.step + 1,
                        s.loss,
                        s.lr,
                        fps
                    );
                }
            }
            let done = t.progress.step;
            if done.is_multiple_of(cfg.train.eval_every) || done >= cfg.train.steps {
                let m = score(&val, &t.predict(&val)?, n_expr, [1; 3])?;
                log.log("val", done, &m)?;
                let is_best = best.update(done, m.p_mtl);
                t.progress.best = best.best();
                t.save_checkpoint(&run.last_checkpoint())?;
                if is_best {
                    t.save_checkpoint(&run.best_checkpoint())?;
                }
                println!("{}", val_line(done, &m, is_best));
                window = (Instant::now(), 0);
            }
            if done >= cfg.train.steps {
                break 'epochs;
            }
        }
        t.progress.epoch += 1;
        t.progress.position_in_epoch = 0;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut bt = TemporalTrainer::from_checkpoint(&run.best_checkpoint())?;
    let eval = score_with_smoothing(&val, &bt.predict(&val)?, n_expr, &cfg.smoothing.windows)?;
    let json = serde_json::to_string_pretty(&eval).expect("metrics serialise");
    crate::io::write_atomic(&run.path().join("eval.json"), json.as_bytes())?;
    plot::plot_run(&run)?;
    Ok(TemporalSummary {
        run_dir: run.path().to_path_buf(),
        steps: t.progress.step,
        seconds,
        best: best.best(),
        eval,
    })
}

/// Scores a temporal checkpoint on its config's validation split (or the
/// split in `annotations`), raw and with the smoothing windows searched.
pub fn eval_temporal(
    checkpoint: &std::path::Path,
    annotations: Option<&str>,
) -> Result<SmoothedEval> {
    let mut t = TemporalTrainer::from_checkpoint(checkpoint)?;
    let cfg = t.config.clone();
    let mut val = read_split(&cfg, annotations.unwrap_or(&cfg.data.val_annotations))?;
    val.normalise(&t.norm)?;
    let outs = t.predict(&val)?;
    score_with_smoothing(&val, &outs, cfg.model.n_expr, &cfg.smoothing.windows)
}
