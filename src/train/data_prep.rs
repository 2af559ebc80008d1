//! The frame data of a run config: the data folder (generating the
//! synthetic set when it is missing) and the training and evaluation loaders.

use super::{DataSource, TrainConfig};
use crate::data::synth::{self, SynthConfig};
use crate::data::{AugmentConfig, Dataset, Loader, LoaderConfig, ReadOptions, SamplerKind};
use crate::{Error, Result};
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
