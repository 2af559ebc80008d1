//! The mtaffect command line.

use clap::{Args, Parser, Subcommand};
use mtaffect::backend::cuda;
use mtaffect::data::synth::{self, SynthConfig};
use mtaffect::data::{read_mtl_annotations, OnBadSample, ReadOptions};
use mtaffect::metrics::MtlMetrics;
use mtaffect::train::gan::{self, GanConfig, GanTrainer, GridKind};
use mtaffect::train::runner::RunOutcome;
use mtaffect::train::temporal::{self, TemporalConfig};
use mtaffect::train::{self, features, predict, ConfigFile, DataSource, TrainConfig, Trainer};
use mtaffect::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "mtaffect",
    version,
    about = "Multi-task facial affect training (VA, AUs, expressions)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the multi-task model. With no arguments: the built-in default
    /// (synthetic faces generated into the cache folder, small CPU model).
    Train(TrainArgs),
    /// Evaluate a checkpoint on a validation set and write the metrics.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Data folder (cropped_aligned/ + annotation files); default: the checkpoint's config.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where to write the metrics as JSON; default: <checkpoint>.eval.json.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write ABAW-format predictions for a folder or a list of face crops.
    Predict {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Folder of images (searched recursively); names are relative to it.
        #[arg(long, conflicts_with = "list")]
        images: Option<PathBuf>,
        /// File with one image path per line, relative to --root.
        #[arg(long)]
        list: Option<PathBuf>,
        /// Folder the --list paths are relative to; default: the list's folder.
        #[arg(long, requires = "list")]
        root: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// skip | fail: what an unreadable image does; default: the checkpoint's data.on_bad_sample.
        #[arg(long)]
        on_bad_sample: Option<OnBadSample>,
    },
    /// Generate the synthetic face set (images + ABAW annotation files).
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 40)]
        videos: usize,
        #[arg(long, default_value_t = 100)]
        frames: usize,
        #[arg(long, default_value_t = 112)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Generate into a folder that is not empty (overwrites its annotation files).
        #[arg(long)]
        force: bool,
    },
    /// Per-frame embeddings of a trained frame model: one safetensors file per
    /// annotated video (every frame image), plus copies of the annotation files.
    Features {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Data folder (cropped_aligned/ + annotation files); default: the checkpoint's config.
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Temporal models (GRU, LSTM, Transformer) over extracted features.
    #[command(subcommand)]
    Temporal(TemporalCommand),
    /// The multi-task GAN: train it, or judge its generated expressions.
    Gan {
        #[command(subcommand)]
        command: GanCommand,
    },
    /// Write a PNG grid of generated faces from a GAN checkpoint.
    Sample {
        #[arg(long)]
        checkpoint: PathBuf,
        /// expr: expressions in a row (4 noise rows); au: each AU swept 0 -> 1;
        /// va: the valence-arousal plane.
        #[arg(long, default_value = "expr")]
        grid: GridKind,
        #[arg(long)]
        out: PathBuf,
        /// Noise seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Driver, NVRTC and device facts, and how long the kernels take to compile.
    Info {
        /// Device ordinal to describe.
        #[arg(long, default_value_t = 0)]
        device: usize,
    },
}

#[derive(Subcommand)]
enum TemporalCommand {
    /// Train on the feature files of `data.features`; default config: configs/temporal-synthetic.toml's settings.
    Train {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override any config key, e.g. --set model.encoder=lstm (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Continue the run in this run directory exactly where its last checkpoint left it.
        #[arg(long, conflicts_with_all = ["config", "sets"])]
        resume: Option<PathBuf>,
    },
    /// Score a temporal checkpoint on the validation split, raw and smoothed.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Annotation file inside the features folder; default: the config's validation file.
        #[arg(long)]
        annotations: Option<String>,
        /// Where to write the scores as JSON; default: <checkpoint>.eval.json.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GanCommand {
    /// Train generator and discriminator (default: configs/gan-synthetic.toml settings).
    Train {
        /// TOML GAN config; default: the built-in CPU settings.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override any config key, e.g. --set train.steps=500 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Continue the run in this run directory exactly where its last checkpoint left it.
        #[arg(long, conflicts_with_all = ["config", "sets"])]
        resume: Option<PathBuf>,
        /// No per-step lines.
        #[arg(long)]
        quiet: bool,
    },
    /// Generate faces for each expression and report how often a separately
    /// trained multi-task network reads the requested expression.
    Judge {
        /// GAN checkpoint (`gan train`).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Multi-task checkpoint (`train`) that does the reading.
        #[arg(long)]
        judge: PathBuf,
        /// Faces per expression.
        #[arg(long, default_value_t = 100)]
        per_class: usize,
        /// Where to write the agreement as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// TOML run config; default: the built-in configs/synthetic-cpu.toml settings.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data folder holding an ABAW multi-task layout (sets data.root and
    /// data.source = "abaw"; a folder written by `mtaffect synth` is one).
    #[arg(long)]
    data: Option<PathBuf>,
    /// cpu | cuda | cuda:N | auto (sets train.device; the built-in default job uses auto).
    #[arg(long)]
    device: Option<String>,
    /// Override any config key, e.g. --set train.steps=500 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Start the fresh run's model from this checkpoint's matching tensors (sets model.init_from).
    #[arg(long, value_name = "FILE")]
    init_from: Option<PathBuf>,
    /// Continue the run in this run directory exactly where its last checkpoint left it.
    #[arg(long, conflicts_with_all = ["config", "sets", "data", "device", "init_from"])]
    resume: Option<PathBuf>,
    /// No progress bar; one line per log step.
    #[arg(long)]
    quiet: bool,
}

fn print_metrics(m: &MtlMetrics) {
    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    println!("{:<22} {:>8}", "metric", "value");
    println!("{:<22} {:>8}", "CCC valence", f(m.ccc_valence));
    println!("{:<22} {:>8}", "CCC arousal", f(m.ccc_arousal));
    println!("{:<22} {:>8.4}", "F1 expression (macro)", m.expr_f1);
    println!("{:<22} {:>8}", "expression accuracy", f(m.expr_accuracy));
    println!("{:<22} {:>8.4}", "F1 AU (mean)", m.au_f1);
    println!("{:<22} {:>8.4}", "P_MTL", m.p_mtl);
    println!("{:<22} {:>8}", "samples", m.samples);
}

/// The line every finished run prints first.
fn finished(out: &RunOutcome, what: &str) {
    println!(
        "finished {} {what} in {:.0} s; run directory {}",
        out.steps,
        out.seconds,
        out.run_dir.display()
    );
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    let (task, out) = match &a.resume {
        Some(dir) => {
            let mut cfg = TrainConfig::default();
            cfg.run.quiet = a.quiet;
            train::train_run(&cfg, Some(dir))?
        }
        None => {
            let mut sets = Vec::new();
            let base = match &a.config {
                Some(p) => TrainConfig::load(p)?,
                None => {
                    // The built-in default job uses the GPU where there is one.
                    sets.push("train.device=\"auto\"".to_string());
                    TrainConfig::default()
                }
            };
            sets.extend(a.sets.iter().cloned());
            if let Some(d) = &a.data {
                sets.push(format!("data.root={:?}", d.display().to_string()));
                sets.push("data.source=\"abaw\"".into());
            }
            if let Some(d) = &a.device {
                sets.push(format!("train.device={d:?}"));
            }
            if let Some(f) = &a.init_from {
                sets.push(format!("model.init_from={:?}", f.display().to_string()));
            }
            if a.quiet {
                sets.push("run.quiet=true".into());
            }
            let cfg = if sets.is_empty() {
                base
            } else {
                base.with_overrides(&sets)?
            };
            train::train_run(&cfg, None)?
        }
    };
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
    Ok(())
}

fn gan_train_cmd(
    config: Option<&Path>,
    sets: &[String],
    resume: Option<&Path>,
    quiet: bool,
) -> Result<()> {
    let base = match config {
        Some(p) => GanConfig::load(p)?,
        None => GanConfig::default(),
    };
    let mut sets = sets.to_vec();
    if quiet {
        sets.push("run.quiet=true".into());
    }
    let cfg = base.with_overrides(&sets)?;
    let (task, out) = gan::gan_run(&cfg, resume)?;
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
    Ok(())
}

fn gan_judge_cmd(
    checkpoint: &Path,
    judge: &Path,
    per_class: usize,
    out: Option<&Path>,
) -> Result<()> {
    let mut g = GanTrainer::from_checkpoint(checkpoint)?;
    let mut j = Trainer::from_checkpoint(judge)?;
    let a = gan::judge_expressions(&mut g, &mut j, per_class)?;
    let names = j.config.data.label_set.expression_names();
    println!("requested -> read by the judge (rows: requested, columns: judged)");
    println!(
        "{:<10} {}",
        "",
        names
            .iter()
            .map(|n| format!(" {n:>6.6}"))
            .collect::<String>()
    );
    for (name, row) in names.iter().zip(&a.confusion) {
        println!(
            "{name:<10} {}",
            row.iter().map(|c| format!(" {c:>6}")).collect::<String>()
        );
    }
    println!(
        "agreement {}/{} = {:.3} (chance {:.3}); confidence {:.3}; diversity {:.4} (mean squared pixel difference between faces of one expression)",
        a.matched,
        a.total,
        a.rate,
        1.0 / names.len() as f64,
        a.confidence,
        a.diversity
    );
    if let Some(out) = out {
        let json = serde_json::to_string_pretty(&a).expect("agreement serialises");
        mtaffect::io::write_atomic(out, json.as_bytes())?;
        println!("written to {}", out.display());
    }
    Ok(())
}

fn sample_cmd(checkpoint: &Path, grid: GridKind, out: &Path, seed: u64) -> Result<()> {
    let mut g = GanTrainer::from_checkpoint(checkpoint)?;
    let (w, h) = gan::write_grid(&mut g, grid, seed, out)?;
    println!("{w}x{h} grid written to {}", out.display());
    Ok(())
}

fn eval_cmd(checkpoint: &Path, data: Option<&Path>, out: Option<&Path>) -> Result<()> {
    let mut t = Trainer::from_checkpoint(checkpoint)?;
    let mut cfg = t.config.clone();
    if let Some(d) = data {
        cfg.data.root = d.to_path_buf();
        cfg.data.source = DataSource::Abaw;
    }
    let root = train::prepare_data(&cfg, false)?;
    let val = train::make_loader(&cfg, &root, &cfg.data.val_annotations, false)?;
    let m = t.evaluate(&val)?;
    print_metrics(&m);
    let out = out.map_or_else(|| checkpoint.with_extension("eval.json"), Path::to_path_buf);
    let json = serde_json::to_string_pretty(&m).expect("metrics serialise");
    mtaffect::io::write_atomic(&out, json.as_bytes())?;
    println!("metrics written to {}", out.display());
    Ok(())
}

fn predict_cmd(
    checkpoint: &Path,
    images: Option<&Path>,
    list: Option<&Path>,
    root: Option<&Path>,
    out: &Path,
    on_bad_sample: Option<OnBadSample>,
) -> Result<()> {
    let (root, names) = match (images, list) {
        (Some(dir), None) => (dir.to_path_buf(), predict::list_images(dir)?),
        (None, Some(l)) => {
            let root = root.map_or_else(
                || l.parent().unwrap_or(Path::new(".")).to_path_buf(),
                Path::to_path_buf,
            );
            (root, predict::read_list(l)?)
        }
        _ => {
            return Err(Error::Config(
                "predict: give --images DIR or --list FILE".into(),
            ))
        }
    };
    if names.is_empty() {
        return Err(Error::Config(format!(
            "predict: no images found under {}",
            root.display()
        )));
    }
    let mut t = Trainer::from_checkpoint(checkpoint)?;
    let policy = on_bad_sample.unwrap_or(t.config.data.on_bad_sample);
    let s = predict::predict_images(&mut t, &root, &names, out, policy)?;
    println!("{} predictions written to {}", s.written, out.display());
    if !s.skipped.is_empty() {
        eprintln!("skipped {} unreadable images:", s.skipped.len());
        for m in &s.skipped {
            eprintln!("  {m}");
        }
    }
    Ok(())
}

fn features_cmd(checkpoint: &Path, data: Option<&Path>, out: &Path, batch: usize) -> Result<()> {
    let mut t = Trainer::from_checkpoint(checkpoint)?;
    let mut cfg = t.config.clone();
    if let Some(d) = data {
        cfg.data.root = d.to_path_buf();
        cfg.data.source = DataSource::Abaw;
    }
    let root = train::prepare_data(&cfg, false)?;
    let opts = ReadOptions {
        label_set: cfg.data.label_set,
        ..ReadOptions::default()
    };
    let mut videos = Vec::new();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    for file in [&cfg.data.train_annotations, &cfg.data.val_annotations] {
        let (samples, _) = read_mtl_annotations(&root.join(file), &opts)?;
        for s in samples {
            if videos.last() != Some(&s.video) && !videos.contains(&s.video) {
                videos.push(s.video);
            }
        }
        // The labels travel with the features: a temporal config names one folder.
        let bytes = std::fs::read(root.join(file)).map_err(|e| Error::io(root.join(file), e))?;
        mtaffect::io::write_atomic(&out.join(file), &bytes)?;
    }
    let started = Instant::now();
    let s = features::extract_features(
        &mut t,
        &root.join("cropped_aligned"),
        &videos,
        out,
        &checkpoint.display().to_string(),
        batch,
    )?;
    println!(
        "{} videos, {} frames, {} features per frame in {:.1} s -> {}",
        s.videos,
        s.frames,
        s.dim,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn print_smoothed(e: &temporal::SmoothedEval) {
    print_metrics(&e.raw);
    let [w_va, w_expr, w_au] = e.windows_va_expr_au;
    println!("smoothed (windows VA {w_va}, expr {w_expr}, AU {w_au}, chosen on this set):");
    print_metrics(&e.smoothed);
}

fn temporal_cmd(c: TemporalCommand) -> Result<()> {
    match c {
        TemporalCommand::Train {
            config,
            sets,
            resume,
        } => {
            let base = match &config {
                Some(p) => TemporalConfig::load(p)?,
                None => TemporalConfig::default(),
            };
            let cfg = if sets.is_empty() {
                base
            } else {
                base.with_overrides(&sets)?
            };
            let (task, out) = temporal::train_temporal(&cfg, resume.as_deref())?;
            finished(&out, "steps");
            if let Some((score, step)) = out.best {
                println!("best P_MTL {score:.4} at step {step} (best.safetensors); its scores:");
            }
            if let Some(e) = &task.eval {
                print_smoothed(e);
            }
        }
        TemporalCommand::Eval {
            checkpoint,
            annotations,
            out,
        } => {
            let e = temporal::eval_temporal(&checkpoint, annotations.as_deref())?;
            print_smoothed(&e);
            let out = out.unwrap_or_else(|| checkpoint.with_extension("eval.json"));
            let json = serde_json::to_string_pretty(&e).expect("metrics serialise");
            mtaffect::io::write_atomic(&out, json.as_bytes())?;
            println!("scores written to {}", out.display());
        }
    }
    Ok(())
}

fn synth_cmd(cfg: SynthConfig, out: &Path, force: bool) -> Result<()> {
    synth::check_target(out, force)?;
    let t = Instant::now();
    let s = synth::generate(&cfg, out)?;
    println!(
        "{} frames ({} train / {} val videos; {} train / {} val labelled samples) in {:.1} s -> {}",
        s.frames,
        s.train_videos,
        s.val_videos,
        s.train_samples,
        s.val_samples,
        t.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn info(ordinal: usize) -> Result<()> {
    println!("mtaffect {}", env!("CARGO_PKG_VERSION"));
    let device = match cuda::DeviceInfo::query(ordinal) {
        Ok(d) => {
            println!(
                "driver:        CUDA {}.{}",
                d.driver_version / 1000,
                (d.driver_version % 1000) / 10
            );
            println!("device {}:      {}", d.ordinal, d.name);
            println!(
                "compute cap.:  {}.{}",
                d.compute_capability.0, d.compute_capability.1
            );
            println!(
                "memory:        {:.1} GiB",
                d.total_memory as f64 / (1u64 << 30) as f64
            );
            Some(d)
        }
        Err(e) => {
            println!("device:        none ({e})");
            None
        }
    };
    println!("kernel cache:  {}", cuda::cache_dir().display());
    println!("kernel modules: {}", cuda::MODULES.len());
    match cuda::nvrtc_version() {
        Ok((major, minor)) => {
            println!("NVRTC:         {major}.{minor}");
            // Without a GPU, time the compile for the H100/H200 target.
            let arch = device.as_ref().map_or("sm_90".to_string(), |d| d.arch());
            let t = Instant::now();
            cuda::compile_all(&arch, None)?;
            let cold = t.elapsed();
            let dir = cuda::cache_dir();
            cuda::compile_all(&arch, Some(&dir))?;
            let t = Instant::now();
            let again = cuda::compile_all(&arch, Some(&dir))?;
            let cached = t.elapsed();
            let hits = again.iter().filter(|m| m.cached).count();
            println!(
                "compile ({arch}): cold {:.0} ms, cached {:.1} ms ({hits}/{} from cache)",
                cold.as_secs_f64() * 1e3,
                cached.as_secs_f64() * 1e3,
                again.len()
            );
        }
        Err(e) => println!("NVRTC:         none ({e})"),
    }
    if device.is_some() {
        runtime_check(ordinal)?;
    }
    Ok(())
}

/// Opens the device as the ops do (context, stream, modules), runs one
/// kernel on a few values and checks them: the runtime path end to end.
fn runtime_check(ordinal: usize) -> Result<()> {
    use mtaffect::{Device, Tape, Tensor};
    let dev = cuda::CudaDevice::get(ordinal)?;
    let (compiled, cached, took) = dev.startup();
    println!(
        "runtime:       {} modules loaded in {:.0} ms ({compiled} compiled, {cached} from cache)",
        compiled + cached,
        took.as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let x = Tensor::from_vec(vec![-1.5f32, 2.0, -3.0, 4.5], [4])?
        .to_device(&Device::Cuda(dev.clone()))?;
    let tape = Tape::no_grad();
    let y = mtaffect::ops::relu(&tape, &tape.constant(x))?
        .into_value()
        .to_cpu()?;
    let got = y.to_vec::<f32>()?;
    if got != [0.0, 2.0, 0.0, 4.5] {
        return Err(mtaffect::Error::Cuda(format!(
            "relu on the device returned {got:?}, expected [0, 2, 0, 4.5]"
        )));
    }
    println!(
        "kernel launch: ok (relu on 4 values, {:.0} us with copies)",
        t.elapsed().as_secs_f64() * 1e6
    );
    let s = dev.pool_stats();
    println!(
        "memory pool:   {} B reserved, {} B in use, {} driver allocations, {} reuses",
        s.reserved_bytes, s.in_use_bytes, s.driver_allocs, s.reuses
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train_cmd(a),
        Command::Eval {
            checkpoint,
            data,
            out,
        } => eval_cmd(&checkpoint, data.as_deref(), out.as_deref()),
        Command::Predict {
            checkpoint,
            images,
            list,
            root,
            out,
            on_bad_sample,
        } => predict_cmd(
            &checkpoint,
            images.as_deref(),
            list.as_deref(),
            root.as_deref(),
            &out,
            on_bad_sample,
        ),
        Command::Synth {
            out,
            videos,
            frames,
            size,
            seed,
            force,
        } => synth_cmd(
            SynthConfig {
                videos,
                frames_per_video: frames,
                image_size: size,
                seed,
                ..SynthConfig::default()
            },
            &out,
            force,
        ),
        Command::Features {
            checkpoint,
            data,
            out,
            batch,
        } => features_cmd(&checkpoint, data.as_deref(), &out, batch),
        Command::Temporal(c) => temporal_cmd(c),
        Command::Gan { command } => match command {
            GanCommand::Train {
                config,
                sets,
                resume,
                quiet,
            } => gan_train_cmd(config.as_deref(), &sets, resume.as_deref(), quiet),
            GanCommand::Judge {
                checkpoint,
                judge,
                per_class,
                out,
            } => gan_judge_cmd(&checkpoint, &judge, per_class, out.as_deref()),
        },
        Command::Sample {
            checkpoint,
            grid,
            out,
            seed,
        } => sample_cmd(&checkpoint, grid, &out, seed),
        Command::Info { device } => info(device),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
