//! The one run loop every trainer shares. A trainer plugs in as a [`Task`]
//! that knows how to take a step, evaluate, and save or load its own state;
//! the runner owns everything around the step: the run directory and its
//! resolved config, the log / evaluation / checkpoint cadence, the progress
//! bar (with a visible phase while evaluating), throughput, the best score,
//! atomic `last` / `best` checkpoints, resume, the NaN stop, and the plots at
//! the end.

use super::{
    plot, BestTracker, ConfigFile, LoopConfig, MetricsLog, RunConfig, RunDir, TrainProgress,
};
use crate::dist::ProcessGroup;
use crate::{Device, Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What one training step reports to the runner.
pub struct StepReport {
    /// The headline loss (progress bar).
    pub loss: f64,
    /// The rest of the console line after `step N` (quiet mode).
    pub line: String,
    /// The `train` record's fields; the runner adds `images_per_s` and `epoch`.
    pub record: Map<String, Value>,
    /// Images (or frames) the step processed, for the throughput figure.
    pub items: f64,
}

/// A trainer as the runner drives it.
pub trait Task {
    /// What the throughput counts ("img", "frames").
    fn unit(&self) -> &'static str;
    /// One line describing the model and data (printed after the run path).
    fn describe(&self) -> String;
    /// Step, epoch, position and best score; checkpointed with the state.
    fn progress(&self) -> &TrainProgress;
    fn progress_mut(&mut self) -> &mut TrainProgress;
    /// Work done once at the start of a fresh run (not on resume), such as
    /// logging a baseline; returns lines for the console (printed in quiet
    /// mode too).
    fn begin(&mut self, _log: &mut MetricsLog) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// One optimizer step (for a GAN: one generator step and its
    /// discriminator steps). Advances `progress().step` by one.
    fn step(&mut self) -> Result<StepReport>;
    /// Scores the model on the validation data, logs what it measured and
    /// offers its selection score to `ev` (which decides `best`).
    fn evaluate(&mut self, ev: &mut Evaluation) -> Result<()>;
    /// Writes the whole state atomically.
    fn save(&self, path: &Path) -> Result<()>;
    /// Restores what `save` wrote.
    fn load(&mut self, path: &Path) -> Result<()>;
    /// Called after the checkpoints of an evaluation are written.
    fn after_checkpoint(&mut self, _run: &RunDir) -> Result<()> {
        Ok(())
    }
    /// End-of-run outputs besides the plots (sample grids, final scores).
    fn finish(&mut self, _run: &RunDir) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
    /// This process's group in a data-parallel run (`None`: one process).
    fn group(&mut self) -> Option<&mut ProcessGroup> {
        None
    }
}

/// What a task's evaluation writes to: the run's log and console, and the
/// best-score tracker.
pub struct Evaluation<'a> {
    pub log: &'a mut MetricsLog,
    pub run: &'a RunDir,
    pub step: u64,
    console: &'a Console,
    best: &'a mut BestTracker,
    is_best: bool,
}

impl Evaluation<'_> {
    /// Offers this evaluation's selection score (higher is better); true
    /// when it is the best so far, so `best.safetensors` will be written.
    pub fn offer(&mut self, score: f64) -> bool {
        self.is_best = self.best.update(self.step, score);
        self.is_best
    }

    /// Prints a line above the progress bar.
    pub fn say(&self, line: &str) {
        self.console.say(line);
    }
}

/// The progress bar, or plain lines when it is hidden (quiet mode, or
/// output that is not a terminal); nothing at all on ranks other than 0.
struct Console {
    bar: ProgressBar,
    silent: bool,
}

impl Console {
    fn new(quiet: bool, total: u64, position: u64) -> Console {
        if quiet {
            return Console {
                bar: ProgressBar::hidden(),
                silent: false,
            };
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("static template"),
        );
        bar.set_position(position);
        Console { bar, silent: false }
    }

    fn silent() -> Console {
        Console {
            bar: ProgressBar::hidden(),
            silent: true,
        }
    }

    fn say(&self, line: &str) {
        if self.silent {
            return;
        }
        // A hidden bar swallows println.
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

/// A config the runner can drive: its `[train]` loop and `[run]` sections.
pub trait RunnableConfig: ConfigFile + Clone {
    fn loop_config(&self) -> &LoopConfig;
    fn loop_config_mut(&mut self) -> &mut LoopConfig;
    fn run_config(&self) -> &RunConfig;
    fn run_config_mut(&mut self) -> &mut RunConfig;
}

/// Every run config has its `[train]` loop and `[run]` sections as `train`
/// and `run`.
macro_rules! runnable {
    ($($config:ty),*) => {$(
        impl RunnableConfig for $config {
            fn loop_config(&self) -> &LoopConfig {
                &self.train
            }
            fn loop_config_mut(&mut self) -> &mut LoopConfig {
                &mut self.train
            }
            fn run_config(&self) -> &RunConfig {
                &self.run
            }
            fn run_config_mut(&mut self) -> &mut RunConfig {
                &mut self.run
            }
        }
    )*};
}
runnable!(
    super::TrainConfig,
    super::gan::GanConfig,
    super::temporal::TemporalConfig,
    super::pretrain::PretrainConfig
);

/// The config a run uses and the directory it continues: `cfg` for a fresh
/// run, or with `resume` that run directory and the config stored in it.
/// Resuming keeps `cfg`'s `run.quiet`: the console is this process's
/// choice. An unusable device is refused here, before anything is written.
pub fn resolve<C: RunnableConfig>(cfg: &C, resume: Option<&Path>) -> Result<(C, Option<RunDir>)> {
    let (cfg, run) = match resume {
        None => (cfg.clone(), None),
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let mut stored = C::load(&run.config_path())?;
            stored.run_config_mut().quiet = cfg.run_config().quiet;
            (stored, Some(run))
        }
    };
    Device::parse(&cfg.loop_config().device)?;
    Ok((cfg, run))
}

/// What a finished run reports.
pub struct RunOutcome {
    pub run_dir: PathBuf,
    /// Steps taken in total (including those before a resume).
    pub steps: u64,
    /// Wall time of this process's part of the run.
    pub seconds: f64,
    /// (score, step) of `best.safetensors`.
    pub best: Option<(f64, u64)>,
    /// Plots and the task's end-of-run files.
    pub files: Vec<PathBuf>,
}

/// Runs `task` to `train.steps` of `cfg`: in a new run directory, or
/// continuing `resume` from its `last` checkpoint. In a data-parallel run
/// every rank steps and evaluates, and only rank 0 writes: it creates the
/// run directory (and tells the others its path), logs, checkpoints and
/// plots; the others load from it when resuming and print nothing. An
/// error on any rank is reported to every rank, which stop with it.
pub fn run<C: RunnableConfig>(
    task: &mut dyn Task,
    cfg: &C,
    resume: Option<RunDir>,
) -> Result<RunOutcome> {
    let result = run_rank(task, cfg, resume);
    if let (Err(e), Some(group)) = (&result, task.group()) {
        group.fail(&e.to_string());
    }
    result
}

fn run_rank<C: RunnableConfig>(
    task: &mut dyn Task,
    cfg: &C,
    resume: Option<RunDir>,
) -> Result<RunOutcome> {
    let (opts, quiet) = (cfg.loop_config(), cfg.run_config().quiet);
    let writer = task.group().is_none_or(|g| g.rank() == 0);
    let (run, _lock, fresh) = match resume {
        None if writer => {
            let r = cfg.run_config();
            let name = (!r.name.is_empty()).then_some(r.name.as_str());
            let run = RunDir::create(&r.runs_dir, name, &cfg.to_toml())?;
            let lock = run.lock()?;
            (Some(run), Some(lock), true)
        }
        Some(dir) if writer => {
            let lock = dir.lock()?;
            for p in dir.remove_stale_temporaries()? {
                eprintln!("removed {}, left by an interrupted write", p.display());
            }
            task.load(&dir.last_checkpoint())?;
            if let Some(w) = dir.truncate_metrics(task.progress().step)? {
                eprintln!("warning: {w}");
            }
            let (was, now) = (world_size_of(&dir)?, world(task));
            if was != now {
                eprintln!(
                    "warning: {} was trained by {was} process(es) and resumes with {now}: \
                     the global batch is the same, but each rank's share of it and the \
                     batch-norm statistics differ from an uninterrupted run",
                    dir.path().display()
                );
            }
            (Some(dir), Some(lock), false)
        }
        None => (None, None, true),
        Some(dir) => {
            task.load(&dir.last_checkpoint())?;
            (Some(dir), None, false)
        }
    };
    // Rank 0's run directory, on every rank.
    let run = match (task.group(), run) {
        (Some(g), run) => {
            let mine = run.map(|r| r.path().to_string_lossy().into_owned());
            let path = g.broadcast(mine.unwrap_or_default().into_bytes())?;
            RunDir::open(PathBuf::from(String::from_utf8_lossy(&path).into_owned()))?
        }
        (None, run) => run.expect("a single process is rank 0"),
    };
    interrupt::watch();
    let mut log = match writer {
        true => run.metrics_log()?,
        false => MetricsLog::discard(),
    };
    let console = match writer {
        true => Console::new(quiet, opts.steps, task.progress().step),
        false => Console::silent(),
    };
    if !quiet {
        console.say(&format!(
            "run {}: {}, {} steps from step {}",
            run.path().display(),
            task.describe(),
            opts.steps,
            task.progress().step
        ));
    }
    if fresh {
        if world(task) > 1 {
            log.log("dist", 0, &serde_json::json!({ "world_size": world(task) }))?;
        }
        for line in task.begin(&mut log)? {
            console.say(&line);
        }
    }
    let started = Instant::now();
    let mut best = BestTracker::from_best(task.progress().best);
    let result = steps(task, opts, &run, &mut log, &console, &mut best, writer);
    console.bar.finish_and_clear();
    if let Err(e) = result {
        return Err(stopped(e, &run));
    }
    let files = match writer {
        true => {
            let mut files = task.finish(&run)?;
            files.extend(plot::plot_run(&run)?);
            files
        }
        false => Vec::new(),
    };
    Ok(RunOutcome {
        run_dir: run.path().to_path_buf(),
        steps: task.progress().step,
        seconds: started.elapsed().as_secs_f64(),
        best: best.best(),
        files,
    })
}

/// Processes training `task` together.
fn world(task: &mut dyn Task) -> usize {
    task.group().map_or(1, |g| g.world_size())
}

/// The world size a run was trained with: its `dist` record (written by
/// rank 0 of a data-parallel run), else 1.
fn world_size_of(run: &RunDir) -> Result<usize> {
    let path = run.metrics_path();
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Ok(text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["split"] == "dist")
        .find_map(|v| v["world_size"].as_u64())
        .map_or(1, |w| w as usize))
}

/// The loop itself: step, log every `log_every`, evaluate and checkpoint
/// every `eval_every` and at the last step (checkpoints by the `writer`).
fn steps(
    task: &mut dyn Task,
    opts: &LoopConfig,
    run: &RunDir,
    log: &mut MetricsLog,
    console: &Console,
    best: &mut BestTracker,
    writer: bool,
) -> Result<()> {
    let unit = task.unit();
    // Items since the last log line, and since when: evaluation time is not
    // training throughput, so the window restarts after each evaluation.
    let mut window = (Instant::now(), 0.0);
    while task.progress().step < opts.steps {
        let report = task.step()?;
        let done = task.progress().step;
        console.bar.set_position(done);
        window.1 += report.items;
        if done.is_multiple_of(opts.log_every) {
            let rate = window.1 / window.0.elapsed().as_secs_f64();
            window = (Instant::now(), 0.0);
            console
                .bar
                .set_message(format!("loss {:.3} ({rate:.0} {unit}/s)", report.loss));
            let mut record = report.record;
            record.insert("images_per_s".into(), rate.into());
            record.insert("epoch".into(), task.progress().epoch.into());
            log.log("train", done, &record)?;
            if console.bar.is_hidden() {
                console.say(&format!("step {done} {} {rate:.0} {unit}/s", report.line));
            }
        }
        let evaluate = done.is_multiple_of(opts.eval_every) || done == opts.steps;
        if evaluate {
            console.bar.set_message("evaluating");
            let mut ev = Evaluation {
                log,
                run,
                step: done,
                console,
                best,
                is_best: false,
            };
            task.evaluate(&mut ev)?;
            let is_best = ev.is_best;
            task.progress_mut().best = best.best();
            // `best` before `last`: a run killed between the two resumes
            // from the older `last`, evaluates again and rewrites `best`,
            // whereas a `last` that names a best never written would keep
            // it missing for good.
            if writer {
                if is_best {
                    task.save(&run.best_checkpoint())?;
                }
                task.save(&run.last_checkpoint())?;
                task.after_checkpoint(run)?;
            }
            console.bar.set_message("");
            window = (Instant::now(), 0.0);
        }
        if interrupt::requested() {
            if !evaluate && writer {
                task.save(&run.last_checkpoint())?;
            }
            return Err(Error::Interrupted(format!(
                "stopped by a signal after step {done}; {} holds that step (resume with --resume {})",
                run.last_checkpoint().display(),
                run.path().display()
            )));
        }
    }
    Ok(())
}

/// Ctrl-C and SIGTERM: the first asks the loop to stop after the step it is
/// in (and checkpoint there), a second ends the process at once.
mod interrupt {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Once;

    static SIGNALS: AtomicU32 = AtomicU32::new(0);

    /// Installs the handler (once per process; later calls do nothing).
    pub fn watch() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let handler = || {
                if SIGNALS.fetch_add(1, Ordering::SeqCst) > 0 {
                    eprintln!("second signal: exiting now");
                    std::process::exit(130);
                }
                eprintln!("stopping after this step (a second Ctrl-C exits at once)");
            };
            // Without a handler signals keep their default (the process
            // ends), which is no worse than before; say so and go on.
            if let Err(e) = ctrlc::set_handler(handler) {
                eprintln!("warning: no Ctrl-C handler ({e}); a signal ends the run at once");
            }
        });
    }

    pub fn requested() -> bool {
        SIGNALS.load(Ordering::SeqCst) > 0
    }
}

/// A stopped run's error, saying which checkpoint is left to resume from.
fn stopped(e: Error, run: &RunDir) -> Error {
    let last = run.last_checkpoint();
    let kept = if last.is_file() {
        format!(
            "last good checkpoint: {} (left intact; resume with --resume {})",
            last.display(),
            run.path().display()
        )
    } else {
        "no checkpoint was saved before this step".into()
    };
    match e {
        Error::NonFinite(m) => Error::NonFinite(format!(
            "{m}; training stopped, {kept}; to go on, lower the learning rate (schedule.base_lr) or clip gradients harder (train.grad_clip)"
        )),
        other => other,
    }
}
