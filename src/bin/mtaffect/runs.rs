//! Commands that train: `train`, `gan train`, `temporal train` and
//! `pretrain`, each as one run or as a seed set (`--seeds`), and `compare`
//! of two seed sets.

use crate::report::{finished, print_metrics, print_smoothed, print_summary};
use clap::ValueEnum;
use mtaffect::stats::welch;
use mtaffect::train::gan::{self, GanConfig};
use mtaffect::train::pretrain::{self, PretrainConfig};
use mtaffect::train::runner::{RunOutcome, RunnableConfig};
use mtaffect::train::seeds::{self, SeedSummary};
use mtaffect::train::temporal::{self, TemporalConfig};
use mtaffect::train::{self, TrainConfig};
use mtaffect::Result;
use std::path::Path;

/// Runs `cfg` with `one` (which trains a single run, fresh or resumed, and
/// prints its report): continuing `resume` (a run or a seed set), as a seed
/// set when `seeds` is given, or as one run.
pub fn launch<C: RunnableConfig>(
    cfg: &C,
    seeds: Option<&str>,
    resume: Option<&Path>,
    mut one: impl FnMut(&C, Option<&Path>) -> Result<RunOutcome>,
) -> Result<()> {
    match (resume, seeds) {
        (Some(dir), _) if seeds::is_seed_set(dir) => {
            let s = seeds::resume_seed_set(dir, cfg.run_config().quiet, one)?;
            print_summary(dir, &s);
        }
        (None, Some(text)) => {
            let (parent, s) = seeds::run_seed_set(cfg, &seeds::parse_seeds(text)?, one)?;
            print_summary(&parent, &s);
        }
        (resume, _) => {
            one(cfg, resume)?;
        }
    }
    Ok(())
}

/// One frame-model run and its report.
pub fn train_one(cfg: &TrainConfig, resume: Option<&Path>) -> Result<RunOutcome> {
    let env = mtaffect::dist::DistEnv::from_env()?;
    let (task, out) = train::train_rank(cfg, resume, env.as_ref())?;
    if env.is_some_and(|e| e.rank != 0) {
        return Ok(out); // rank 0 reports the run
    }
    finished(&out, "steps");
    if let Some(m) = &task.last {
        print_metrics(m);
    }
    if let Some(c) = &task.chance {
        println!(
            "chance baseline P_MTL {:.4} (train-mean VA, majority expression, no AU)",
            c.p_mtl
        );
    }
    if let Some((score, step)) = out.best {
        println!("best P_MTL {score:.4} at step {step} (best.safetensors)");
    }
    for p in &out.files {
        println!("plot: {}", p.display());
    }
    Ok(out)
}

/// One GAN run and its report.
pub fn gan_one(cfg: &GanConfig, resume: Option<&Path>) -> Result<RunOutcome> {
    let (task, out) = gan::gan_run(cfg, resume)?;
    finished(&out, "generator steps");
    if let Some(m) = &task.last {
        println!("discriminator's multi-task heads on the validation set:");
        print_metrics(m);
    }
    if let Some((score, step)) = out.best {
        println!(
            "best.safetensors: step {step} (the discriminator reads {:.3} of its faces as requested)",
            task.agreement(score)
        );
    }
    for p in &out.files {
        println!("wrote {}", p.display());
    }
    Ok(out)
}

/// One pretraining run and its report.
pub fn pretrain_one(cfg: &PretrainConfig, resume: Option<&Path>) -> Result<RunOutcome> {
    let (task, out) = pretrain::pretrain_run(cfg, resume)?;
    finished(&out, "steps");
    if let Some(loss) = task.last_loss {
        println!("held-out reconstruction loss {loss:.4} (masked patches)");
    }
    if let Some((score, step)) = out.best {
        println!(
            "best.safetensors: step {step}, loss {:.4}; fine-tune it with `mtaffect train --init-from` and [model.backbone] kind = \"vit\" with the same encoder keys",
            -score
        );
    }
    if let Some(g) = &task.last_grid {
        println!("reconstructions: {}", g.display());
    }
    for p in &out.files {
        println!("plot: {}", p.display());
    }
    Ok(out)
}

/// One temporal run and its report.
pub fn temporal_one(cfg: &TemporalConfig, resume: Option<&Path>) -> Result<RunOutcome> {
    let (task, out) = temporal::train_temporal(cfg, resume)?;
    finished(&out, "steps");
    if let Some((score, step)) = out.best {
        println!("best P_MTL {score:.4} at step {step} (best.safetensors); its scores:");
    }
    if let Some(e) = &task.eval {
        print_smoothed(e);
    }
    Ok(out)
}

/// Which evaluation of each run `compare` reads.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum At {
    /// The last evaluation of each run.
    Final,
    /// The evaluation each run kept as best.safetensors.
    Best,
}

pub fn compare_cmd(a: &Path, b: &Path, metric: &str, at: At, level: f64) -> Result<()> {
    let (sa, sb) = (SeedSummary::read(a)?, SeedSummary::read(b)?);
    let pick = |s: &SeedSummary, dir: &Path| -> Result<(String, Vec<f64>)> {
        let (name, m) = s.metric(metric)?;
        let spread = match at {
            At::Final => Some(&m.last),
            At::Best => m.at_best.as_ref(),
        };
        let spread = spread.ok_or_else(|| {
            mtaffect::Error::Config(format!(
                "{}: {name} has no value at the best checkpoint of every run",
                dir.display()
            ))
        })?;
        Ok((name.to_string(), spread.values.clone()))
    };
    let ((name, va), (_, vb)) = (pick(&sa, a)?, pick(&sb, b)?);
    let d = welch(&va, &vb, level)?;
    let at = match at {
        At::Final => "final",
        At::Best => "at best checkpoint",
    };
    println!("{name} ({at}), mean ± sd over seeds:");
    for (tag, dir, v) in [("A", a, &va), ("B", b, &vb)] {
        let s = mtaffect::stats::Spread::of(v)?;
        println!("  {tag} {}: {}", dir.display(), s.display());
    }
    println!(
        "B - A = {:+.4}, {:.0}% interval [{:+.4}, {:+.4}] (Welch, {:.1} degrees of freedom): {}",
        d.diff,
        level * 100.0,
        d.lo,
        d.hi,
        d.df,
        if d.distinguishable() {
            if d.diff > 0.0 {
                "B is higher"
            } else {
                "B is lower"
            }
        } else {
            "not distinguishable"
        }
    );
    Ok(())
}
