//! The frame-model baseline of a temporal run, scored the way temporal
//! models are: the frame model's own outputs stored in the feature files
//! (`mtaffect features`), raw and with moving-average smoothing whose window
//! is chosen per task on the same split.
//!
//! cargo run --release --example frame_smoothing -- runs/frame-synth/features [validation_set_annotations.txt]

use mtaffect::data::sequence::SequenceSet;
use mtaffect::data::{read_mtl_annotations, LabelSet, ReadOptions};
use mtaffect::train::temporal::{score_with_smoothing, SmoothingConfig};
use mtaffect::train::HeadOutputs;
use mtaffect::{Error, Result};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or_else(|| {
        Error::Config("usage: frame_smoothing FEATURES_DIR [ANNOTATIONS]".into())
    })?);
    let file = args
        .next()
        .unwrap_or_else(|| "validation_set_annotations.txt".into());
    let ls = LabelSet::Abaw2022;
    let opts = ReadOptions {
        label_set: ls,
        ..ReadOptions::default()
    };
    let (samples, _) = read_mtl_annotations(&dir.join(&file), &opts)?;
    let set = SequenceSet::load(&dir, &samples, ls.num_aus())?;
    let outputs = set
        .videos
        .iter()
        .map(|v| {
            let h = v.frame_heads.as_ref().ok_or_else(|| {
                Error::Config(format!(
                    "{}: feature file of {} has no frame outputs",
                    dir.display(),
                    v.video
                ))
            })?;
            Ok(HeadOutputs {
                va: h.va.clone(),
                expr: h.expr.clone(),
                au: h.au.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let e = score_with_smoothing(
        &set,
        &outputs,
        ls.num_expressions(),
        &SmoothingConfig::default().windows,
    )?;
    println!("frame model, raw:      {}", e.raw.summary());
    let [a, b, c] = e.windows_va_expr_au;
    println!(
        "frame model, smoothed: {} with windows VA {a}, expr {b}, AU {c}",
        e.smoothed.summary()
    );
    Ok(())
}
