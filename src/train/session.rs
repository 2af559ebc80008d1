//! A whole training run as the CLI drives it: prepare the data (generating
//! the synthetic set when missing), create or reopen the run directory, train
//! with logging and a progress bar, evaluate and checkpoint every period,
//! keep `best` by P_MTL, and plot at the end.

use super::{plot, ConfigFile, DataSource, RunDir, StepStats, TrainConfig, Trainer};
use crate::data::synth::{self, SynthConfig};
use crate::data::{AugmentConfig, Dataset, Loader, LoaderConfig, ReadOptions, SamplerKind};
use crate::metrics::MtlMetrics;
use crate::{Device, Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `$MTAFFECT_DATA`, else `$XDG_CACHE_HOME/mtaffect`, else `~/.cache/mtaffect`.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("MTAFFECT_DATA") {
        return PathBuf::from(d);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("mtaffect")
}

fn synth_config(cfg: &TrainConfig) -> SynthConfig {
    SynthConfig {
        videos: cfg.data.synth_videos,
        frames_per_video: cfg.data.synth_frames,
        image_size: cfg.data.image_size,
        seed: cfg.train.seed,
        ..SynthConfig::default()
    }
}

/// The data folder of a config: `data.root`, or for synthetic data a cache
/// folder named by the generator's settings, generated if incomplete.
pub fn prepare_data(cfg: &TrainConfig, quiet: bool) -> Result<PathBuf> {
    let d = &cfg.data;
    let complete = |root: &Path| {
        root.join(&d.train_annotations).is_file() && root.join(&d.val_annotations).is_file()
    };
    match d.source {
        DataSource::Abaw => {
            if d.root.as_os_str().is_empty() {
                return Err(Error::Config(
                    "data.root: required for source = \"abaw\" (the folder holding cropped_aligned/ and the annotation files)".into(),
                ));
            }
            Ok(d.root.clone())
        }
        DataSource::Synthetic => {
            let s = synth_config(cfg);
            let root = if d.root.as_os_str().is_empty() {
                cache_root().join(format!(
                    "synthetic-v{}-f{}-s{}-seed{}",
                    s.videos, s.frames_per_video, s.image_size, s.seed
                ))
            } else {
                d.root.clone()
            };
            if !complete(&root) {
                if !quiet {
                    eprintln!(
                        "generating the synthetic face set in {} ...",
                        root.display()
                    );
                }
                let t = Instant::now();
                let sum = synth::generate(&s, &root)?;
                if !quiet {
                    eprintln!(
                        "  {} frames ({} train / {} val samples) in {:.1} s",
                        sum.frames,
                        sum.train_samples,
                        sum.val_samples,
                        t.elapsed().as_secs_f64()
                    );
                }
            }
            Ok(root)
        }
    }
}

/// Training (shuffled, augmented) or evaluation (in order, all samples) batches.
pub fn make_loader(
    cfg: &TrainConfig,
    root: &Path,
    annotations: &str,
    train: bool,
) -> Result<Loader> {
    let d = &cfg.data;
    let opts = ReadOptions {
        label_set: d.label_set,
        on_bad_sample: d.on_bad_sample,
        image_root: None,
    };
    let (ds, summary) = Dataset::from_mtl(
        &root.join(annotations),
        &root.join("cropped_aligned"),
        &opts,
    )?;
    if summary.total_skipped() > 0 {
        eprintln!(
            "{annotations}: skipped {} bad samples: {summary:?}",
            summary.total_skipped()
        );
    }
    Loader::new(
        ds,
        LoaderConfig {
            batch_size: d.batch_size,
            image_size: d.image_size,
            workers: d.workers,
            prefetch: 2,
            seed: cfg.train.seed,
            sampler: if train {
                d.sampler
            } else {
                SamplerKind::Sequential
            },
            drop_last: train,
            augment: if train {
                d.augment.clone()
            } else {
                AugmentConfig::off()
            },
            on_bad_sample: d.on_bad_sample,
        },
    )
}

/// One `train` line of metrics.jsonl (frame and temporal runs alike).
#[derive(Serialize)]
pub(crate) struct TrainRecord {
    loss: f64,
    loss_va: f64,
    loss_au: f64,
    loss_expr: f64,
    lr: f64,
    grad_norm: f64,
    images_per_s: f64,
    epoch: u64,
}

impl TrainRecord {
    /// `images_per_s` counts frames for temporal runs.
    pub(crate) fn new(s: &StepStats, images_per_s: f64, epoch: u64) -> Self {
        TrainRecord {
            loss: s.loss,
            loss_va: s.va,
            loss_au: s.au,
            loss_expr: s.expr,
            lr: s.lr,
            grad_norm: s.grad_norm,
            images_per_s,
            epoch,
        }
    }
}

/// The console line of one validation pass.
pub(crate) fn val_line(step: u64, m: &MtlMetrics, is_best: bool) -> String {
    let best = if is_best { " best" } else { "" };
    format!("step {step}: val {}{best}", m.summary())
}

/// What a finished run reports.
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub seconds: f64,
    pub last: Option<MtlMetrics>,
    /// Train-mean VA, majority expression, no AU, on the validation labels.
    pub chance: MtlMetrics,
    pub best: Option<(f64, u64)>,
    pub plots: Vec<PathBuf>,
}

/// Trains `cfg` in a new run directory, or continues the run in `resume`
/// (whose saved config is used; `cfg` is then ignored).
pub fn train_run(cfg: &TrainConfig, resume: Option<&Path>) -> Result<RunSummary> {
    let (run, cfg) = match resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let cfg = TrainConfig::load(&run.config_path())?;
            Device::parse(&cfg.train.device)?;
            (run, cfg)
        }
        None => {
            // Refuse an unusable device before anything is written.
            Device::parse(&cfg.train.device)?;
            let name = (!cfg.run.name.is_empty()).then_some(cfg.run.name.as_str());
            (
                RunDir::create(&cfg.run.runs_dir, name, &cfg.to_toml())?,
                cfg.clone(),
            )
        }
    };
    let quiet = cfg.run.quiet;
    let root = prepare_data(&cfg, quiet)?;
    let train = make_loader(&cfg, &root, &cfg.data.train_annotations, true)?;
    let val = make_loader(&cfg, &root, &cfg.data.val_annotations, false)?;

    let ls = cfg.data.label_set;
    let chance = super::chance_baseline(
        &train.dataset().samples,
        &val.dataset().samples,
        ls.num_expressions(),
        ls.num_aus(),
    )?;
    let mut trainer = Trainer::new(&cfg)?;
    if resume.is_some() {
        trainer.load_checkpoint(&run.last_checkpoint())?;
    }
    // Both callbacks append to the log and reset the throughput window.
    let log = RefCell::new(run.metrics_log()?);
    if resume.is_none() {
        if let Some(path) = &cfg.model.init_from {
            let report = trainer.init_from(path, cfg.model.init_strict)?;
            eprintln!("{report}");
            log.borrow_mut().log("init", 0, &report)?;
        }
        log.borrow_mut().log("baseline", 0, &chance)?;
    }
    let mut best = super::BestTracker::from_best(trainer.progress.best);
    let total = cfg.train.steps;
    if !quiet {
        eprintln!(
            "run {}: {} ({} parameters), {} train / {} val frames, {} steps from step {}",
            run.path().display(),
            cfg.model.backbone,
            trainer.params.numel(),
            train.dataset().samples.len(),
            val.dataset().samples.len(),
            total,
            trainer.progress.step
        );
        eprintln!(
            "chance baseline on the validation set (train-mean VA, majority expression, no AU): P_MTL {:.3}",
            chance.p_mtl
        );
    }
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("static template"),
        );
        b.set_position(trainer.progress.step);
        b
    };

    let started = Instant::now();
    let window = Cell::new((Instant::now(), 0u64));
    let mut last_metrics = None;
    let last_path = run.last_checkpoint();
    let best_path = run.best_checkpoint();
    let batch = cfg.data.batch_size as f64;
    let log_every = cfg.train.log_every;
    let result = trainer.run(
        &train,
        total,
        &mut |t: &Trainer, s: &StepStats| {
            let (since, steps) = window.get();
            window.set((since, steps + 1));
            bar.set_position(s.step + 1);
            if (s.step + 1).is_multiple_of(log_every) {
                let ips = (steps + 1) as f64 * batch / since.elapsed().as_secs_f64();
                window.set((Instant::now(), 0));
                bar.set_message(format!("loss {:.3} ({:.0} img/s)", s.loss, ips));
                let rec = TrainRecord::new(s, ips, t.progress.epoch);
                log.borrow_mut().log("train", s.step + 1, &rec)?;
                if bar.is_hidden() {
                    println!(
                        "step {} loss {:.4} lr {:.2e} {:.0} img/s",
                        s.step + 1,
                        s.loss,
                        s.lr,
                        ips
                    );
                }
            }
            Ok(())
        },
        &mut |t: &mut Trainer| {
            let m = t.evaluate(&val)?;
            let step = t.progress.step;
            log.borrow_mut().log("val", step, &m)?;
            let is_best = best.update(step, m.p_mtl);
            t.progress.best = best.best();
            t.save_checkpoint(&last_path)?;
            if is_best {
                t.save_checkpoint(&best_path)?;
            }
            let line = val_line(step, &m, is_best);
            // A hidden bar (quiet mode, or output not a terminal) swallows println.
            if bar.is_hidden() {
                println!("{line}");
            } else {
                bar.println(line);
            }
            last_metrics = Some(m);
            // Evaluation time is not training throughput.
            window.set((Instant::now(), 0));
            Ok(())
        },
    );
    bar.finish_and_clear();
    if let Err(e) = result {
        let kept = if last_path.is_file() {
            format!(
                "last good checkpoint: {} (left intact; resume with --resume {})",
                last_path.display(),
                run.path().display()
            )
        } else {
            "no checkpoint was saved before this step".into()
        };
        return Err(match e {
            Error::NonFinite(m) => Error::NonFinite(format!("{m}; training stopped, {kept}")),
            other => other,
        });
    }
    let plots = plot::plot_run(&run)?;
    Ok(RunSummary {
        run_dir: run.path().to_path_buf(),
        steps: trainer.progress.step,
        seconds: started.elapsed().as_secs_f64(),
        last: last_metrics,
        chance,
        best: best.best(),
        plots,
    })
}
