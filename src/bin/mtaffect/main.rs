//! The mtaffect command line: argument parsing and dispatch; the commands
//! live in the modules below, named for what they do.

mod export_onnx;
mod gan;
mod import;
mod info;
mod report;
mod runs;
mod scoring;
mod spawn;

use clap::{Args, Parser, Subcommand};
use mtaffect::data::synth::{self, SynthConfig};
use mtaffect::data::OnBadSample;
use mtaffect::export::onnx::{Batch, OnnxOptions, DEFAULT_OPSET};
use mtaffect::train::gan::{GanConfig, GridKind};
use mtaffect::train::pretrain::PretrainConfig;
use mtaffect::train::runner::{RunOutcome, RunnableConfig};
use mtaffect::train::temporal::TemporalConfig;
use mtaffect::train::{ConfigFile, TrainConfig};
use mtaffect::Result;
use runs::{launch, At};
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
    /// Evaluate a checkpoint, or an ensemble of several, on a validation set
    /// and write the metrics.
    Eval {
        /// A checkpoint file, a run directory (its best.safetensors) or a
        /// seed set (each run's best); repeat for an ensemble.
        #[arg(long, required = true)]
        checkpoint: Vec<PathBuf>,
        /// Data folder (cropped_aligned/ + annotation files); default: the checkpoint's config.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where to write the metrics as JSON; default: <checkpoint>.eval.json
        /// (for a seed set: ensemble.eval.json in it).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write ABAW-format predictions for a folder or a list of face crops.
    Predict {
        /// As for eval: repeat (or name a seed set) for an ensemble.
        #[arg(long, required = true)]
        checkpoint: Vec<PathBuf>,
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
        /// Fraction of the videos held out for validation.
        #[arg(long, default_value_t = 0.2)]
        val_fraction: f64,
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
    /// Pretrain a ViT as a masked autoencoder on face images without labels
    /// (default: configs/mae-synthetic-cpu.toml settings); fine-tune it with
    /// `train --init-from <run>/best.safetensors` and a `kind = "vit"` backbone.
    Pretrain {
        #[command(flatten)]
        run: RunArgs,
        /// Images to pretrain on: any folder, searched recursively for JPEG
        /// and PNG files (sets data.root and data.source = "folder").
        #[arg(long, conflicts_with = "resume")]
        images: Option<PathBuf>,
        /// No progress bar; one line per log step.
        #[arg(long)]
        quiet: bool,
    },
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
    /// Whether two seed sets (`--seeds` runs) differ in a metric by more
    /// than their seed-to-seed spread explains (Welch's t interval).
    Compare {
        /// Seed set A (a folder with summary.json).
        a: PathBuf,
        /// Seed set B.
        b: PathBuf,
        /// A metric of the summaries: val.p_mtl, or a field one split has.
        #[arg(long, default_value = "p_mtl")]
        metric: String,
        #[arg(long, value_enum, default_value = "final")]
        at: At,
        /// Coverage of the interval.
        #[arg(long, default_value_t = 0.95)]
        level: f64,
    },
    /// Convert a PyTorch state dict (safetensors; scripts/pth_to_safetensors.py
    /// converts a .pth) into a checkpoint that `train --init-from` starts from.
    Import {
        /// The PyTorch architecture: iresnet18, iresnet34, iresnet50, iresnet100
        /// (insightface), resnet18, resnet50 (torchvision), seresnet50 (timm),
        /// vit_tiny_patch16, vit_small_patch16, vit_base_patch16 (MAE / timm
        /// encoders), densenet121, densenet169, densenet201 (torchvision).
        #[arg(long)]
        arch: String,
        /// The state dict, as safetensors.
        #[arg(long)]
        from: PathBuf,
        /// The checkpoint to write.
        #[arg(long)]
        out: PathBuf,
        /// IResNet, ResNet: width multiplier of a reduced model (default: the architecture's, 1).
        #[arg(long)]
        width_mult: Option<f64>,
        /// IResNet: embedding width (default: the architecture's, 512).
        #[arg(long)]
        embedding: Option<usize>,
        /// IResNet: input side the model was built for (default: the architecture's, 112).
        #[arg(long)]
        image_size: Option<usize>,
        /// DenseNet: channels each dense layer adds (default: 32).
        #[arg(long)]
        growth_rate: Option<usize>,
        /// DenseNet: the stem's channels (torchvision's num_init_features, default: 64).
        #[arg(long)]
        init_features: Option<usize>,
        /// DenseNet: the 1x1 convolutions' width in growth rates (default: 4).
        #[arg(long)]
        bn_size: Option<usize>,
        /// DenseNet: layers per block, e.g. 2,2,2,2 (default: the depth's).
        #[arg(long, value_delimiter = ',')]
        block_config: Option<Vec<usize>>,
    },
    /// Write a frame checkpoint as an ONNX model in inference mode, for ONNX
    /// Runtime, TensorRT and other runtimes (input `images` NCHW in [-1, 1];
    /// outputs valence_arousal, au_logits, expr_logits).
    Export {
        /// A checkpoint file or a run directory (its best.safetensors).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The ONNX file to write (the one export format so far).
        #[arg(long, value_name = "FILE")]
        onnx: PathBuf,
        /// Batch size the model takes, or "dynamic" (any, given at run time).
        #[arg(long, default_value = "dynamic")]
        batch: Batch,
        /// ONNX operator set (17 to 21).
        #[arg(long, default_value_t = DEFAULT_OPSET)]
        opset: i64,
        /// Also write a seeded input batch and this model's outputs for it
        /// (safetensors, under the ONNX names) to compare another runtime with.
        #[arg(long, value_name = "FILE")]
        dump: Option<PathBuf>,
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
    Train(RunArgs),
    /// Score a temporal checkpoint, or an ensemble, on the validation split, raw and smoothed.
    Eval {
        /// A checkpoint, run directory or seed set; repeat for an ensemble.
        #[arg(long, required = true)]
        checkpoint: Vec<PathBuf>,
        /// Annotation file inside the features folder; default: the config's validation file.
        #[arg(long)]
        annotations: Option<String>,
        /// Where to write the scores as JSON; default: <checkpoint>.eval.json
        /// (for a seed set: ensemble.eval.json in it).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GanCommand {
    /// Train generator and discriminator (default: configs/gan-synthetic.toml settings).
    Train {
        #[command(flatten)]
        run: RunArgs,
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

/// How `gan train` and `temporal train` are given their run.
#[derive(Args)]
struct RunArgs {
    /// TOML run config; default: the built-in settings.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override any config key, e.g. --set train.steps=500 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Continue the run (or seed set) in this directory exactly where its last checkpoint left it.
    #[arg(long, conflicts_with_all = ["config", "sets"])]
    resume: Option<PathBuf>,
    /// Train once per seed: a count (3: seeds 0, 1, 2) or a list (0,4,7);
    /// the runs go into one folder with a summary.json of their metrics.
    #[arg(long, conflicts_with = "resume")]
    seeds: Option<String>,
}

impl RunArgs {
    /// Trains `C` as these arguments say, each run through `one`.
    fn launch<C: ConfigFile + Default + RunnableConfig>(
        &self,
        extra_sets: &[String],
        one: impl FnMut(&C, Option<&Path>) -> Result<RunOutcome>,
    ) -> Result<()> {
        let sets: Vec<String> = self.sets.iter().chain(extra_sets).cloned().collect();
        let cfg = config_with::<C>(self.config.as_deref(), &sets)?;
        launch(&cfg, self.seeds.as_deref(), self.resume.as_deref(), one)
    }
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
    /// Continue the run (or seed set) in this directory exactly where its last checkpoint left it.
    #[arg(long, conflicts_with_all = ["config", "sets", "data", "device", "init_from"])]
    resume: Option<PathBuf>,
    /// Train once per seed: a count (3: seeds 0, 1, 2) or a list (0,4,7);
    /// the runs go into one folder with a summary.json of their metrics.
    #[arg(long, conflicts_with = "resume")]
    seeds: Option<String>,
    /// No progress bar; one line per log step.
    #[arg(long)]
    quiet: bool,
    /// Data-parallel training on this machine: N processes (one per GPU,
    /// or N CPU processes), started with torchrun's variables. A process
    /// started by torchrun itself needs no flag.
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "seeds")]
    nproc_per_node: usize,
}

/// The frame model's run config from the command line: the stored one for
/// `--resume`, else the built-in default or `--config`, with the flags
/// applied as overrides.
fn train_config(a: &TrainArgs) -> Result<TrainConfig> {
    if a.resume.is_some() {
        let mut cfg = TrainConfig::default();
        cfg.run.quiet = a.quiet;
        return Ok(cfg);
    }
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
    if sets.is_empty() {
        Ok(base)
    } else {
        base.with_overrides(&sets)
    }
}

/// A config file (or the built-in default) with `--set` overrides.
fn config_with<C: ConfigFile + Default>(path: Option<&Path>, sets: &[String]) -> Result<C> {
    let base = match path {
        Some(p) => C::load(p)?,
        None => C::default(),
    };
    if sets.is_empty() {
        Ok(base)
    } else {
        base.with_overrides(sets)
    }
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) if a.nproc_per_node > 1 => spawn::spawn_ranks(a.nproc_per_node),
        Command::Train(a) => train_config(&a).and_then(|cfg| {
            launch(
                &cfg,
                a.seeds.as_deref(),
                a.resume.as_deref(),
                runs::train_one,
            )
        }),
        Command::Eval {
            checkpoint,
            data,
            out,
        } => scoring::eval_cmd(&checkpoint, data.as_deref(), out.as_deref()),
        Command::Predict {
            checkpoint,
            images,
            list,
            root,
            out,
            on_bad_sample,
        } => scoring::predict_cmd(
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
            val_fraction,
            force,
        } => synth_cmd(
            SynthConfig {
                videos,
                frames_per_video: frames,
                image_size: size,
                seed,
                val_fraction,
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
        } => scoring::features_cmd(&checkpoint, data.as_deref(), &out, batch),
        Command::Temporal(TemporalCommand::Train(run)) => {
            run.launch::<TemporalConfig>(&[], runs::temporal_one)
        }
        Command::Temporal(TemporalCommand::Eval {
            checkpoint,
            annotations,
            out,
        }) => scoring::temporal_eval_cmd(&checkpoint, annotations.as_deref(), out.as_deref()),
        Command::Pretrain { run, images, quiet } => {
            let mut sets = Vec::new();
            if let Some(d) = images {
                sets.push(format!("data.root={:?}", d.display().to_string()));
                sets.push("data.source=\"folder\"".into());
            }
            if quiet {
                sets.push("run.quiet=true".into());
            }
            run.launch::<PretrainConfig>(&sets, runs::pretrain_one)
        }
        Command::Gan { command } => match command {
            GanCommand::Train { run, quiet } => {
                let quiet = if quiet {
                    vec!["run.quiet=true".into()]
                } else {
                    vec![]
                };
                run.launch::<GanConfig>(&quiet, runs::gan_one)
            }
            GanCommand::Judge {
                checkpoint,
                judge,
                per_class,
                out,
            } => gan::gan_judge_cmd(&checkpoint, &judge, per_class, out.as_deref()),
        },
        Command::Sample {
            checkpoint,
            grid,
            out,
            seed,
        } => gan::sample_cmd(&checkpoint, grid, &out, seed),
        Command::Compare {
            a,
            b,
            metric,
            at,
            level,
        } => runs::compare_cmd(&a, &b, &metric, at, level),
        Command::Import {
            arch,
            from,
            out,
            width_mult,
            embedding,
            image_size,
            growth_rate,
            init_features,
            bn_size,
            block_config,
        } => import::import_cmd(
            &arch,
            &from,
            &out,
            import::Sizes {
                width_mult,
                embedding,
                image_size,
                growth_rate,
                init_features,
                bn_size,
                block_config,
            },
        ),
        Command::Export {
            checkpoint,
            onnx,
            batch,
            opset,
            dump,
        } => export_onnx::export_onnx_cmd(
            &checkpoint,
            &onnx,
            OnnxOptions { batch, opset },
            dump.as_deref(),
        ),
        Command::Info { device } => info::info(device),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
