//! The frame data of a run config: the data folder (checked as an ABAW
//! layout, or the synthetic set generated when asked for) and the training
//! and evaluation loaders, whose images are checked before training starts.

use super::memory_budget::{loader_threads, PREFETCH};
use super::{DataConfig, DataSource, TrainConfig};
use crate::data::image_check;
use crate::data::synth::{self, SynthConfig};
use crate::data::video_share::train_on_share;
use crate::data::{
    AugmentConfig, Dataset, LoadSummary, Loader, LoaderConfig, ReadOptions, SamplerKind,
};
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

fn synth_config(d: &DataConfig) -> SynthConfig {
    SynthConfig {
        videos: d.synth_videos,
        frames_per_video: d.synth_frames,
        image_size: d.image_size,
        seed: d.synth_seed,
        val_fraction: d.synth_val_fraction,
        ..SynthConfig::default()
    }
}

/// The data folder of a config's `[data]`. `abaw`: `data.root`, which must
/// hold an ABAW multi-task layout. `synthetic`: `data.root`, or the cache
/// folder named by the generator's settings when empty, generated when it
/// holds no complete set; a named folder is generated into only while it is
/// missing or empty, so a real data folder is never written to. `folder`
/// has no labels: only pretraining reads it (an error here).
pub fn prepare_data(d: &DataConfig, quiet: bool) -> Result<PathBuf> {
    match d.source {
        DataSource::Folder => Err(Error::Config(format!(
            "data.source = \"folder\" ({}): a folder of images without labels is for `mtaffect pretrain`; supervised training needs an ABAW layout (source = \"abaw\") or the synthetic set",
            d.root.display()
        ))),
        DataSource::Abaw => {
            if d.root.as_os_str().is_empty() {
                return Err(Error::Config(
                    "data.root: required for source = \"abaw\" (the folder holding cropped_aligned/ and the annotation files)".into(),
                ));
            }
            check_abaw_layout(&d.root, &d.train_annotations, &d.val_annotations)?;
            Ok(d.root.clone())
        }
        DataSource::Synthetic => {
            let s = synth_config(d);
            let named = !d.root.as_os_str().is_empty();
            let root = if named {
                d.root.clone()
            } else {
                cache_root().join(format!(
                    "synthetic-v{}-f{}-s{}-val{}-seed{}",
                    s.videos, s.frames_per_video, s.image_size, s.val_fraction, s.seed
                ))
            };
            let complete = root.join(&d.train_annotations).is_file()
                && root.join(&d.val_annotations).is_file();
            if !complete {
                if named {
                    synth::check_target(&root, false).map_err(|e| {
                        Error::Config(format!(
                            "data.source = \"synthetic\" with data.root: {e}; for a real data set set data.source = \"abaw\" (or pass --data)"
                        ))
                    })?;
                }
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

/// Checks that `root` holds the two annotation files and `cropped_aligned/`;
/// the error lists what was expected and what the folder holds.
fn check_abaw_layout(root: &Path, train: &str, val: &str) -> Result<()> {
    let expected = format!(
        "expected an ABAW multi-task layout: {train}, {val} and cropped_aligned/ (the per-task layout VA_Estimation_Challenge/, EXPR_Classification_Challenge/, AU_Detection_Challenge/ must be converted to it first)"
    );
    let entries = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) => {
            return Err(Error::Config(format!(
                "data folder {}: {e}; {expected}",
                root.display()
            )))
        }
    };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let slash = if e.path().is_dir() { "/" } else { "" };
            format!("{}{slash}", e.file_name().to_string_lossy())
        })
        .collect();
    let ok = [train, val].iter().all(|f| root.join(f).is_file())
        && root.join("cropped_aligned").is_dir();
    if ok {
        return Ok(());
    }
    found.sort();
    let shown = if found.is_empty() {
        "an empty folder".to_string()
    } else {
        let more = found.len().saturating_sub(8);
        found.truncate(8);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        found.join(", ") + &tail
    };
    Err(Error::Config(format!(
        "data folder {} is not a readable data set: {expected}; found {shown}",
        root.display()
    )))
}

/// Training (shuffled, augmented) or evaluation (in order, all samples)
/// batches of the frames annotated in `root/annotations`.
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
    let (mut ds, summary) = Dataset::from_mtl(
        &root.join(annotations),
        &root.join("cropped_aligned"),
        &opts,
    )?;
    if train {
        train_on_share(&mut ds.samples, d.train_video_fraction, annotations);
    }
    loader_for(
        ds,
        summary,
        annotations,
        d,
        (cfg.train.seed, cfg.run.quiet),
        train,
    )
}

/// The loader of `ds` under `[data]`'s settings, once every image has been
/// checked (bad ones skipped or refused as `data.on_bad_sample` says; `what`
/// names the set in messages). `train`: shuffled, augmented, last partial
/// batch dropped; otherwise every sample in order, unaugmented.
pub fn loader_for(
    mut ds: Dataset,
    mut summary: LoadSummary,
    what: &str,
    d: &DataConfig,
    (seed, quiet): (u64, bool),
    train: bool,
) -> Result<Loader> {
    let cache = image_check::cache_file(&cache_root().join("image-checks"), &ds.image_root);
    image_check::check_dataset(&mut ds, d.on_bad_sample, &mut summary, Some(&cache), quiet)?;
    check_skips(what, &summary, d.max_bad_fraction)?;
    let threads = loader_threads(d.workers);
    if train && threads < d.workers {
        eprintln!(
            "data.workers = {}: this machine has {threads} hardware threads, so the loader runs {threads} (batches do not depend on the number)",
            d.workers
        );
    }
    let loader = Loader::new(
        ds,
        LoaderConfig {
            batch_size: d.batch_size,
            image_size: d.image_size,
            workers: threads,
            prefetch: PREFETCH,
            seed,
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
    )?;
    Ok(loader.with_load_summary(summary))
}

/// Reports what loading `annotations` skipped, by category with the first
/// few messages, and stops when no sample is left or more than
/// `max_bad_fraction` of them were bad.
fn check_skips(annotations: &str, summary: &LoadSummary, max_bad_fraction: f64) -> Result<()> {
    let bad = summary.total_skipped();
    if summary.duplicates_merged > 0 {
        eprintln!(
            "{annotations}: {} duplicate lines (same video/frame and labels) merged",
            summary.duplicates_merged
        );
    }
    if bad == 0 {
        return Ok(());
    }
    let counts = format!(
        "{bad} of {} samples bad ({:.1}%): {}",
        bad + summary.samples,
        100.0 * summary.bad_fraction(),
        summary.skip_report(5)
    );
    if summary.samples == 0 || summary.bad_fraction() > max_bad_fraction {
        return Err(Error::Config(format!(
            "{annotations}: {counts}\nthat is more than data.max_bad_fraction = {max_bad_fraction}; repair or remove the bad files, or raise data.max_bad_fraction"
        )));
    }
    eprintln!("{annotations}: skipped {counts}");
    Ok(())
}
