//! A whole GAN run as `mtaffect gan train` drives it: the plain run's data
//! preparation and loaders, alternating updates, a log line and a
//! `metrics.jsonl` record every `log_every` generator steps, and every
//! `eval_every` steps the discriminator's heads scored on the validation
//! set, an expression grid, `last.safetensors` and a copy per step, and
//! model selection: the discriminator's own reading of the weight average's
//! faces (a `select` record), the best of which is kept as `best.safetensors`.
//! At the end: all three grids and the loss/validation charts.

use super::{
    discriminator_agreement, write_grid, ConditionBank, GanConfig, GanTrainer, GridKind,
    PlayerStats,
};
use crate::metrics::MtlMetrics;
use crate::train::{make_loader, plot, prepare_data, ConfigFile, RunDir};
use crate::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

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
    images_per_s: f64,
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

pub struct GanRunSummary {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub seconds: f64,
    /// The discriminator's heads on the validation set at the last evaluation.
    pub last: Option<MtlMetrics>,
    /// (discriminator's expression agreement, step) of `best.safetensors`.
    pub best: Option<(f64, u64)>,
    /// Sample grids and charts written at the end.
    pub files: Vec<PathBuf>,
}

/// Grid noise seed: fixed, so grids of successive evaluations are comparable.
const GRID_SEED: u64 = 7;

/// Trains `cfg` in a new run directory.
pub fn gan_run(cfg: &GanConfig) -> Result<GanRunSummary> {
    // Refuse an unusable device before anything is written.
    crate::Device::parse(&cfg.train.device)?;
    let name = (!cfg.run.name.is_empty()).then_some(cfg.run.name.as_str());
    let run = RunDir::create(&cfg.run.runs_dir, name, &cfg.to_toml())?;
    let quiet = cfg.run.quiet;
    let plain = cfg.plain();
    let root = prepare_data(&plain, quiet)?;
    let train = make_loader(&plain, &root, &cfg.data.train_annotations, true)?;
    let val = make_loader(&plain, &root, &cfg.data.val_annotations, false)?;
    let g = &cfg.generator;
    let bank = ConditionBank::from_samples(&train.dataset().samples, g.n_aus, g.n_expr)?;
    let per_epoch = train.steps_per_epoch();
    if per_epoch == 0 {
        return Err(Error::Config(format!(
            "training set has {} samples, fewer than one batch of {}",
            train.dataset().samples.len(),
            cfg.data.batch_size
        )));
    }
    let mut gan = GanTrainer::new(cfg)?;
    gan.prototypes = bank.prototypes();
    let mut log = run.metrics_log()?;
    if !quiet {
        println!(
            "gan run {}: generator {} / discriminator {} ({} / {} parameters), {} train frames ({} fully labelled), {} generator steps",
            run.path().display(),
            g.image_size,
            cfg.discriminator.backbone,
            gan.g_params.numel(),
            gan.d_params.numel(),
            train.dataset().samples.len(),
            bank.len(),
            cfg.train.steps
        );
    }
    let started = Instant::now();
    let last_path = run.last_checkpoint();
    let best_path = run.best_checkpoint();
    let mut last = None;
    let mut best: Option<((usize, f64), u64)> = None;
    let result = (|| -> Result<()> {
        let mut window = (Instant::now(), 0u64);
        let mut d_count = 0;
        while gan.progress.step < cfg.train.steps {
            for batch in train.epoch(gan.progress.epoch, 0) {
                let batch = batch?;
                let d: PlayerStats = gan.d_step(&batch, &bank)?;
                d_count += 1;
                if d_count < cfg.gan.d_steps_per_g_step {
                    continue;
                }
                d_count = 0;
                let gs = gan.g_step(&batch.images, &bank)?;
                let step = gan.progress.step;
                window.1 += 1;
                if step.is_multiple_of(cfg.train.log_every) {
                    // Images through the discriminator per second: per D step
                    // real + generated + the real-statistics pass, plus the G step's two.
                    let per_g = (3 * cfg.gan.d_steps_per_g_step + 2) as f64;
                    let ips = window.1 as f64 * per_g * cfg.data.batch_size as f64
                        / window.0.elapsed().as_secs_f64();
                    window = (Instant::now(), 0);
                    log.log(
                        "train",
                        step,
                        &GanRecord {
                            loss_d: d.loss,
                            loss_d_adv: d.adv,
                            loss_d_mtl: d.mtl,
                            loss_g: gs.loss,
                            loss_g_adv: gs.adv,
                            loss_g_mtl: gs.mtl,
                            g_expr: gs.expr,
                            g_mode_seeking: gs.mode_seeking,
                            instance_noise: gan.instance_noise_std(),
                            d_real: d.d_real,
                            d_fake: d.d_fake,
                            grad_norm_d: d.grad_norm,
                            grad_norm_g: gs.grad_norm,
                            images_per_s: ips,
                        },
                    )?;
                    if !quiet {
                        println!(
                            "step {step}: D {:.3} (adv {:.3}, mtl {:.3}; D(real) {:.2} D(fake) {:.2})  G {:.3} (adv {:.3}, mtl {:.3}, expr {:.3})  {ips:.0} img/s",
                            d.loss, d.adv, d.mtl, d.d_real, d.d_fake, gs.loss, gs.adv, gs.mtl, gs.expr
                        );
                    }
                }
                if step.is_multiple_of(cfg.train.eval_every) || step == cfg.train.steps {
                    let m = gan.evaluate_discriminator(&val)?;
                    log.log("val", step, &m)?;
                    write_grid(
                        &mut gan,
                        GridKind::Expr,
                        GRID_SEED,
                        &run.path().join(format!("samples-{step:06}.png")),
                    )?;
                    let per_class = cfg.gan.select_per_class;
                    if per_class > 0 {
                        let a = discriminator_agreement(&mut gan, per_class)?;
                        // More faces read as requested, then more confidently:
                        // a head that reads them all right still ranks them.
                        let key = (a.matched, a.confidence);
                        let is_best = best.is_none_or(|(k, _)| key > k);
                        if is_best {
                            best = Some((key, step));
                            gan.progress.best = Some((a.rate, step));
                        }
                        log.log(
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
                        if is_best {
                            gan.save_checkpoint(&best_path)?;
                        }
                        if !quiet {
                            println!(
                                "step {step}: discriminator reads {:.3} of the weight average's faces as requested (diversity {:.4}){}",
                                a.rate,
                                a.diversity,
                                if is_best { ", new best.safetensors" } else { "" }
                            );
                        }
                    }
                    gan.save_checkpoint(&last_path)?;
                    // Every evaluation's players stay, so generators of a
                    // long run can be judged step by step afterwards.
                    let kept = run.path().join(format!("step-{step:06}.safetensors"));
                    std::fs::copy(&last_path, &kept).map_err(|e| Error::io(&kept, e))?;
                    if !quiet {
                        println!(
                            "step {step}: discriminator heads on validation: P_MTL {:.3} (CCC V {:.3} A {:.3}, F1 expr {:.3}, F1 AU {:.3})",
                            m.p_mtl,
                            m.ccc_valence.unwrap_or(0.0),
                            m.ccc_arousal.unwrap_or(0.0),
                            m.expr_f1,
                            m.au_f1
                        );
                    }
                    last = Some(m);
                    window = (Instant::now(), 0);
                }
                if gan.progress.step >= cfg.train.steps {
                    return Ok(());
                }
            }
            gan.progress.epoch += 1;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let kept = if last_path.is_file() {
            format!(
                "last good checkpoint: {} (left intact)",
                last_path.display()
            )
        } else {
            "no checkpoint was saved before this step".into()
        };
        return Err(match e {
            Error::NonFinite(m) => Error::NonFinite(format!("{m}; training stopped, {kept}")),
            other => other,
        });
    }
    let mut files = Vec::new();
    for (kind, name) in [
        (GridKind::Expr, "grid-expr.png"),
        (GridKind::Au, "grid-au.png"),
        (GridKind::Va, "grid-va.png"),
    ] {
        let p = run.path().join(name);
        write_grid(&mut gan, kind, GRID_SEED, &p)?;
        files.push(p);
    }
    files.extend(plot::plot_run(&run)?);
    Ok(GanRunSummary {
        run_dir: run.path().to_path_buf(),
        steps: gan.progress.step,
        seconds: started.elapsed().as_secs_f64(),
        last,
        best: gan.progress.best,
        files,
    })
}
