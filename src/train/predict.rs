//! Predictions for a folder or list of face crops, in the ABAW submission format.

use super::Ensemble;
use crate::data::image::load_normalised;
use crate::data::{write_predictions, OnBadSample, Prediction};
use crate::{Error, Result, Tensor};
use std::path::{Path, PathBuf};

/// Image files (jpg, jpeg, png) under `root`, as `/`-separated paths relative
/// to it, sorted so the output order is stable.
pub fn list_images(root: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) -> Result<()> {
        for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let p = e.map_err(|e| Error::io(dir, e))?.path();
            if p.is_dir() {
                walk(&p, root, out)?;
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
            {
                let rel = p.strip_prefix(root).expect("walked below root");
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// Image names from a list file: one path per line relative to `root`;
/// blank lines and a header line `image` are ignored.
pub fn read_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .map(|l| l.split(',').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && *l != "image")
        .map(str::to_string)
        .collect())
}

/// What [`predict_images`] wrote and what it skipped.
pub struct PredictSummary {
    pub written: usize,
    /// Images that could not be read, each with why (only under `Skip`).
    pub skipped: Vec<String>,
}

/// Runs the model (or the ensemble) on `root/<name>` for every name and writes `out`
/// atomically: the file is complete or absent. An unreadable image is an
/// error naming it under `OnBadSample::Fail`; under `Skip` every good image
/// gets its row and the bad ones are returned.
pub fn predict_images(
    model: &mut Ensemble,
    root: &Path,
    names: &[String],
    out: &Path,
    policy: OnBadSample,
) -> Result<PredictSummary> {
    let data = &model.config().data;
    let (size, batch, label_set) = (data.image_size, data.batch_size.max(1), data.label_set);
    let mut preds = Vec::with_capacity(names.len());
    let mut skipped = Vec::new();
    for chunk in names.chunks(batch) {
        let mut pixels = Vec::with_capacity(chunk.len() * size * size * 3);
        let mut good = Vec::with_capacity(chunk.len());
        for name in chunk {
            let p: PathBuf = root.join(name);
            match load_normalised(&p, size as u32) {
                Ok(img) => {
                    pixels.extend_from_slice(&img);
                    good.push(name);
                }
                Err(e) if policy == OnBadSample::Skip => skipped.push(e.0),
                Err(e) => {
                    return Err(Error::io(
                        &p,
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e.0),
                    ))
                }
            }
        }
        if good.is_empty() {
            continue;
        }
        let images = Tensor::from_vec(pixels, [good.len(), size, size, 3])?;
        let out = model.infer(&images)?;
        let (va, expr, au) = (&out.va, &out.expr, &out.au);
        let (c, a) = (expr.len() / good.len(), au.len() / good.len());
        for (i, name) in good.into_iter().enumerate() {
            preds.push(Prediction::from_logits(
                name.clone(),
                [va[2 * i], va[2 * i + 1]],
                &expr[i * c..(i + 1) * c],
                &au[i * a..(i + 1) * a],
            ));
        }
    }
    if preds.is_empty() {
        return Err(Error::Config(format!(
            "predict: none of the {} images could be read; first: {}",
            names.len(),
            skipped.first().map_or("", String::as_str)
        )));
    }
    write_predictions(out, label_set, &preds)?;
    Ok(PredictSummary {
        written: preds.len(),
        skipped,
    })
}
