//! The ABAW multi-task annotation file (`training_set_annotations.txt`,
//! `validation_set_annotations.txt`):
//!
//! ```text
//! image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26
//! video1/00001.jpg,0.25,-0.1,4,0,0,0,1,0,0,1,0,0,0,0,0
//! ```
//!
//! Invalid markers: valence/arousal -5, expression -1, all AUs -1. Lines with
//! no valid label are dropped and counted; bad lines follow [`OnBadSample`].
//! A video/frame given twice with the same labels is merged and counted;
//! with different labels it is a bad line (both are dropped when skipping).

use super::fields::{
    au_row, check_header, class_value, parse_err, read_text, va_value, FieldResult,
};
use super::labels::{
    image_name, split_image_name, LabelSet, Origin, Sample, LABEL_INVALID, VA_INVALID,
};
use super::report::{BadReason, LoadSummary, OnBadSample};
use crate::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to read annotation files.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub label_set: LabelSet,
    pub on_bad_sample: OnBadSample,
    /// When set, each line's image must exist under this `cropped_aligned` root.
    pub image_root: Option<PathBuf>,
}

fn header(label_set: LabelSet) -> String {
    format!(
        "image,valence,arousal,expression,{}",
        label_set.au_names().join(",")
    )
}

/// Reads one multi-task annotation file.
pub fn read_mtl_annotations(path: &Path, opts: &ReadOptions) -> Result<(Vec<Sample>, LoadSummary)> {
    let text = read_text(path)?;
    let file: Arc<Path> = Arc::from(path);
    let mut lines = text.lines().enumerate();
    let expected = header(opts.label_set);
    check_header(path, lines.next().map(|(_, h)| h), &expected)?;
    let mut samples: Vec<Sample> = Vec::new();
    let mut summary = LoadSummary::default();
    // Index of each video/frame's first line, and the firsts a later line contradicted.
    let mut first: HashMap<(String, u32), usize> = HashMap::new();
    let mut conflicted = BTreeSet::new();
    for (i, text) in lines {
        let line = i + 1;
        if text.trim().is_empty() {
            continue;
        }
        let s = match parse_line(&file, line, text, opts) {
            Ok(s) if s.has_any_label() => s,
            Ok(_) => {
                summary.unlabelled += 1;
                continue;
            }
            Err((reason, err)) => {
                summary.bad(opts.on_bad_sample, reason, err)?;
                continue;
            }
        };
        match first.get(&(s.video.clone(), s.frame)) {
            None => {
                first.insert((s.video.clone(), s.frame), samples.len());
                samples.push(s);
            }
            Some(&k) if same_labels(&samples[k], &s) => summary.duplicates_merged += 1,
            Some(&k) => {
                let err = Error::Parse {
                    file: path.to_path_buf(),
                    line,
                    field: "image".into(),
                    msg: format!(
                        "{} is also on line {} with different labels",
                        s.image, samples[k].origin.line
                    ),
                };
                summary.bad(opts.on_bad_sample, BadReason::ConflictingDuplicate, err)?;
                conflicted.insert(k);
            }
        }
    }
    // Which of two conflicting lines is right is unknown: neither is kept.
    for &k in conflicted.iter().rev() {
        let s = samples.remove(k);
        let err = Error::Parse {
            file: path.to_path_buf(),
            line: s.origin.line,
            field: "image".into(),
            msg: format!(
                "{} dropped with the later lines that contradict it",
                s.image
            ),
        };
        summary.bad(opts.on_bad_sample, BadReason::ConflictingDuplicate, err)?;
    }
    summary.samples = samples.len();
    Ok((samples, summary))
}

fn same_labels(a: &Sample, b: &Sample) -> bool {
    a.va == b.va && a.expr == b.expr && a.aus == b.aus
}

fn parse_line(
    file: &Arc<Path>,
    line: usize,
    text: &str,
    opts: &ReadOptions,
) -> FieldResult<Sample> {
    let ls = opts.label_set;
    let fields: Vec<&str> = text.trim_end().split(',').collect();
    let want = 4 + ls.num_aus();
    if fields.len() != want {
        return Err(parse_err(
            file,
            line,
            "line",
            BadReason::FieldCount,
            format!(
                "expected {want} comma-separated fields, found {}",
                fields.len()
            ),
        ));
    }
    let image = fields[0].trim();
    let (video, frame) = split_image_name(image).ok_or_else(|| {
        parse_err(
            file,
            line,
            "image",
            BadReason::BadImageName,
            format!("expected <video>/<frame>.jpg, found '{image}'"),
        )
    })?;
    let v = va_value(file, line, "valence", fields[1])?;
    let a = va_value(file, line, "arousal", fields[2])?;
    // Valence and arousal are annotated together; one without the other is a broken line.
    let va = match (v, a) {
        (Some(v), Some(a)) => Some([v, a]),
        (None, None) => None,
        (None, Some(_)) | (Some(_), None) => {
            let field = if v.is_none() { "valence" } else { "arousal" };
            return Err(parse_err(
                file,
                line,
                field,
                BadReason::OutOfRange,
                "valence and arousal must both be valid or both -5".into(),
            ));
        }
    };
    let expr = class_value(file, line, "expression", fields[3], ls.num_expressions())?;
    let aus = au_row(file, line, ls.au_names(), &fields[4..])?;
    if let Some(root) = &opts.image_root {
        let p = root.join(image);
        if !p.is_file() {
            return Err(parse_err(
                file,
                line,
                "image",
                BadReason::MissingImage,
                format!("image not found: {}", p.display()),
            ));
        }
    }
    Ok(Sample {
        image: image.to_string(),
        video: video.to_string(),
        frame,
        va,
        expr,
        aus,
        origin: Origin {
            file: file.clone(),
            line,
        },
    })
}

/// Renders samples in the multi-task file format; f32 values use Rust's
/// shortest round-trip formatting, so reading the file back gives the same bits.
pub fn format_mtl_annotations(label_set: LabelSet, samples: &[Sample]) -> String {
    use std::fmt::Write;
    let mut out = header(label_set);
    out.push('\n');
    for s in samples {
        let name = image_name(&s.video, s.frame);
        let _ = write!(out, "{name},");
        match s.va {
            Some([v, a]) => {
                let _ = write!(out, "{v},{a},");
            }
            None => {
                let _ = write!(out, "{VA_INVALID},{VA_INVALID},");
            }
        }
        match s.expr {
            Some(e) => {
                let _ = write!(out, "{e}");
            }
            None => {
                let _ = write!(out, "{LABEL_INVALID}");
            }
        }
        for k in 0..label_set.num_aus() {
            match &s.aus {
                Some(a) => {
                    let _ = write!(out, ",{}", a[k]);
                }
                None => {
                    let _ = write!(out, ",{LABEL_INVALID}");
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Writes a multi-task annotation file atomically.
pub fn write_mtl_annotations(path: &Path, label_set: LabelSet, samples: &[Sample]) -> Result<()> {
    crate::io::write_atomic_creating_dir(
        path,
        format_mtl_annotations(label_set, samples).as_bytes(),
    )
}
