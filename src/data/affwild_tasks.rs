//! Aff-Wild2 per-task annotation folders, merged into one record per frame:
//!
//! ```text
//! <root>/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt      valence,arousal
//! <root>/EXPR_Classification_Challenge/...  (or EXPR_Recognition_Challenge)  Neutral,...,Other
//! <root>/AU_Detection_Challenge/...                                          AU1,...,AU26
//! ```
//!
//! Data line i (1-based after the header) labels frame `<video>/{i:05}.jpg`.
//! Videos with two people (`..._left`, `..._right`) are distinct videos.

use super::fields::{
    au_row, check_header, class_value, parse_err, read_text, va_value, FieldResult,
};
use super::labels::{image_name, LabelSet, Origin, Sample};
use super::report::{BadReason, LoadSummary};
use super::ReadOptions;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
}

impl Split {
    fn dir(self) -> &'static str {
        match self {
            Split::Train => "Train_Set",
            Split::Validation => "Validation_Set",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Task {
    Va,
    Expr,
    Au,
}

impl Task {
    fn dirs(self) -> &'static [&'static str] {
        match self {
            Task::Va => &["VA_Estimation_Challenge"],
            Task::Expr => &[
                "EXPR_Classification_Challenge",
                "EXPR_Recognition_Challenge",
            ],
            Task::Au => &["AU_Detection_Challenge"],
        }
    }

    fn header(self, ls: LabelSet) -> String {
        match self {
            Task::Va => "valence,arousal".into(),
            Task::Expr => ls.expression_names().join(","),
            Task::Au => ls.au_names().join(","),
        }
    }
}

/// Reads the three task folders of `split` under `root` (the folder holding
/// `VA_Estimation_Challenge/` etc.) and merges them per frame. A missing task
/// folder means that task has no labels; all three missing is an error.
pub fn read_affwild_tasks(
    root: &Path,
    split: Split,
    opts: &ReadOptions,
) -> Result<(Vec<Sample>, LoadSummary)> {
    let mut frames: BTreeMap<(String, u32), Sample> = BTreeMap::new();
    let mut summary = LoadSummary::default();
    let mut found_any = false;
    for task in [Task::Va, Task::Expr, Task::Au] {
        let Some(dir) = task
            .dirs()
            .iter()
            .map(|d| root.join(d).join(split.dir()))
            .find(|d| d.is_dir())
        else {
            continue;
        };
        found_any = true;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        for f in files {
            read_task_file(&f, task, opts, &mut frames, &mut summary)?;
        }
    }
    if !found_any {
        return Err(Error::Config(format!(
            "{}: no VA_Estimation_Challenge, EXPR_Classification_Challenge or AU_Detection_Challenge folder with {}",
            root.display(),
            split.dir()
        )));
    }
    let mut samples = Vec::with_capacity(frames.len());
    for (_, s) in frames {
        // A frame may be invalid in one task and valid in another; only frames
        // with no label in any task are dropped.
        if !s.has_any_label() {
            summary.unlabelled += 1;
            continue;
        }
        if let Some(img_root) = &opts.image_root {
            let p = img_root.join(&s.image);
            if !p.is_file() {
                let err = parse_err(
                    &s.origin.file,
                    s.origin.line,
                    "image",
                    BadReason::MissingImage,
                    format!("image not found: {}", p.display()),
                );
                summary.bad(opts.on_bad_sample, err.0, err.1)?;
                continue;
            }
        }
        samples.push(s);
    }
    summary.samples = samples.len();
    Ok((samples, summary))
}

fn read_task_file(
    path: &Path,
    task: Task,
    opts: &ReadOptions,
    frames: &mut BTreeMap<(String, u32), Sample>,
    summary: &mut LoadSummary,
) -> Result<()> {
    let ls = opts.label_set;
    let video = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| Error::Config(format!("{}: file name is not valid UTF-8", path.display())))?
        .to_string();
    let text = read_text(path)?;
    let file: Arc<Path> = Arc::from(path);
    let mut lines = text.lines();
    let expected = task.header(ls);
    check_header(path, lines.next(), &expected)?;
    for (i, text) in lines.enumerate() {
        let (frame, line) = (i as u32 + 1, i + 2);
        let parsed = parse_task_line(&file, line, text, task, ls);
        let key = (video.clone(), frame);
        match parsed {
            Err((reason, err)) => summary.bad(opts.on_bad_sample, reason, err)?,
            Ok(labels) => {
                let s = frames.entry(key).or_insert_with(|| {
                    let origin = Origin {
                        file: file.clone(),
                        line,
                    };
                    Sample::unlabelled(image_name(&video, frame), &video, frame, origin)
                });
                match labels {
                    TaskLabel::Va(v) => s.va = v,
                    TaskLabel::Expr(e) => s.expr = e,
                    TaskLabel::Au(a) => s.aus = a,
                }
            }
        }
    }
    Ok(())
}

enum TaskLabel {
    Va(Option<[f32; 2]>),
    Expr(Option<u8>),
    Au(Option<Vec<u8>>),
}

fn parse_task_line(
    file: &Path,
    line: usize,
    text: &str,
    task: Task,
    ls: LabelSet,
) -> FieldResult<TaskLabel> {
    let fields: Vec<&str> = text.trim_end().split(',').collect();
    let want = match task {
        Task::Va => 2,
        Task::Expr => 1,
        Task::Au => ls.num_aus(),
    };
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
    Ok(match task {
        Task::Va => {
            let v = va_value(file, line, "valence", fields[0])?;
            let a = va_value(file, line, "arousal", fields[1])?;
            match (v, a) {
                (Some(v), Some(a)) => TaskLabel::Va(Some([v, a])),
                (None, None) => TaskLabel::Va(None),
                _ => {
                    return Err(parse_err(
                        file,
                        line,
                        if v.is_none() { "valence" } else { "arousal" },
                        BadReason::OutOfRange,
                        "valence and arousal must both be valid or both -5".into(),
                    ))
                }
            }
        }
        Task::Expr => TaskLabel::Expr(class_value(
            file,
            line,
            "expression",
            fields[0],
            ls.num_expressions(),
        )?),
        Task::Au => TaskLabel::Au(au_row(file, line, ls.au_names(), &fields)?),
    })
}
