//! Commands that run trained models on data: `eval` and `predict` (one
//! checkpoint or an ensemble), `features`, and `temporal eval`.

use crate::report::{print_metrics, print_smoothed};
use mtaffect::data::{read_mtl_annotations, OnBadSample, ReadOptions};
use mtaffect::metrics::MtlMetrics;
use mtaffect::train::seeds::expand_checkpoints;
use mtaffect::train::temporal;
use mtaffect::train::{self, features, predict, DataSource, Ensemble, Trainer};
use mtaffect::{Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The JSON an evaluation writes: what was scored, and its scores.
#[derive(Serialize)]
struct Scored<'a, M: Serialize> {
    checkpoints: Vec<String>,
    #[serde(flatten)]
    scores: &'a M,
}

/// Where the scores of `checkpoints` go without `--out`: beside the one
/// checkpoint, or in the one seed set or run folder named.
fn default_out(named: &[PathBuf], expanded: &[PathBuf]) -> Result<PathBuf> {
    match (named, expanded) {
        (_, [one]) => Ok(one.with_extension("eval.json")),
        ([dir], _) if dir.is_dir() => Ok(dir.join("ensemble.eval.json")),
        _ => Err(Error::Config(
            "an ensemble of several --checkpoint arguments needs --out FILE".into(),
        )),
    }
}

fn write_scores<M: Serialize>(out: &Path, members: &[PathBuf], scores: &M) -> Result<()> {
    let scored = Scored {
        checkpoints: members.iter().map(|p| p.display().to_string()).collect(),
        scores,
    };
    let json = serde_json::to_string_pretty(&scored).expect("scores serialise");
    mtaffect::io::write_atomic(out, json.as_bytes())
}

fn say_members(members: &[PathBuf]) {
    if members.len() > 1 {
        println!("ensemble of {} checkpoints:", members.len());
        for m in members {
            println!("  {}", m.display());
        }
    }
}

pub fn eval_cmd(checkpoints: &[PathBuf], data: Option<&Path>, out: Option<&Path>) -> Result<()> {
    let members = expand_checkpoints(checkpoints)?;
    let out = out.map_or_else(
        || default_out(checkpoints, &members),
        |p| Ok(p.to_path_buf()),
    )?;
    let mut model = Ensemble::load(&members)?;
    let mut cfg = model.config().clone();
    if let Some(d) = data {
        cfg.data.root = d.to_path_buf();
        cfg.data.source = DataSource::Abaw;
    }
    let root = train::prepare_data(&cfg.data, false)?;
    let val = train::make_loader(&cfg, &root, &cfg.data.val_annotations, false)?;
    let m: MtlMetrics = model.evaluate(&val)?;
    say_members(&members);
    print_metrics(&m);
    write_scores(&out, &members, &m)?;
    println!("metrics written to {}", out.display());
    Ok(())
}

pub fn predict_cmd(
    checkpoints: &[PathBuf],
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
    let members = expand_checkpoints(checkpoints)?;
    let mut model = Ensemble::load(&members)?;
    let policy = on_bad_sample.unwrap_or(model.config().data.on_bad_sample);
    let s = predict::predict_images(&mut model, &root, &names, out, policy)?;
    say_members(&members);
    println!("{} predictions written to {}", s.written, out.display());
    if !s.skipped.is_empty() {
        eprintln!("skipped {} unreadable images:", s.skipped.len());
        for m in &s.skipped {
            eprintln!("  {m}");
        }
    }
    Ok(())
}

pub fn temporal_eval_cmd(
    checkpoints: &[PathBuf],
    annotations: Option<&str>,
    out: Option<&Path>,
) -> Result<()> {
    let members = expand_checkpoints(checkpoints)?;
    let out = out.map_or_else(
        || default_out(checkpoints, &members),
        |p| Ok(p.to_path_buf()),
    )?;
    let e = temporal::eval_temporal(&members, annotations)?;
    say_members(&members);
    print_smoothed(&e);
    write_scores(&out, &members, &e)?;
    println!("scores written to {}", out.display());
    Ok(())
}

pub fn features_cmd(
    checkpoint: &Path,
    data: Option<&Path>,
    out: &Path,
    batch: usize,
) -> Result<()> {
    let mut t = Trainer::from_checkpoint(checkpoint)?;
    let mut cfg = t.config.clone();
    if let Some(d) = data {
        cfg.data.root = d.to_path_buf();
        cfg.data.source = DataSource::Abaw;
    }
    let root = train::prepare_data(&cfg.data, false)?;
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
