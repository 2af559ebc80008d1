//! Starting a fresh run from another checkpoint (`model.init_from`,
//! `--init-from`): every parameter and batch-norm buffer of the new model
//! whose name is in the file with the same shape is loaded; the rest keep
//! their seeded initialisation. Optimizer state, loss weighting and
//! progress are never taken (the run starts at step 0). The report says
//! what was loaded, what is new, what in the file went unused and which
//! names matched with another shape; strict mode refuses anything the
//! model needs and the file does not supply.

use super::checkpoint::{self, BUFFER_PREFIX, OPTIM_PREFIX};
use crate::nn::Buffers;
use crate::{tensor_file, Device, Error, ParamId, Params, Result, Tensor};
use serde::Serialize;
use std::fmt;
use std::path::Path;

/// A name present in both with different shapes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShapeMismatch {
    pub name: String,
    pub file: Vec<usize>,
    pub model: Vec<usize>,
}

/// What [`load_matching`] did, by tensor name (buffers as `buffers.<name>`,
/// the names checkpoints use).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InitReport {
    pub file: String,
    pub loaded: Vec<String>,
    /// The model's tensors the file lacks: they keep their initialisation.
    pub initialised: Vec<String>,
    /// The file's model tensors the model has no use for.
    pub ignored: Vec<String>,
    /// Kept at their initialisation too.
    pub mismatched: Vec<ShapeMismatch>,
}

/// Loads into `params` and `buffers` (each value moved to `device`) every
/// tensor of the checkpoint at `path` that matches by name and shape.
/// `strict`: an error naming the first tensor the file does not supply
/// (missing, or of another shape), with nothing changed.
pub fn load_matching(
    path: &Path,
    strict: bool,
    params: &mut Params,
    buffers: &mut Buffers,
    device: &Device,
) -> Result<InitReport> {
    // Reading the config first refuses files that are not checkpoints.
    checkpoint::read_config(path)?;
    let (mut file, _) = tensor_file::read(path, "checkpoint")?;
    file.retain(|k, _| !k.starts_with(OPTIM_PREFIX));
    let mut report = InitReport {
        file: path.display().to_string(),
        ..InitReport::default()
    };
    let mut plan: Vec<(bool, ParamId, Tensor)> = Vec::new();
    for (is_buffer, reg) in [(false, &*params), (true, &*buffers)] {
        for id in reg.ids() {
            let name = match is_buffer {
                false => reg.name(id).to_string(),
                true => format!("{BUFFER_PREFIX}{}", reg.name(id)),
            };
            let want = reg.get(id).dims().to_vec();
            match file.remove(&name) {
                None => report.initialised.push(name),
                Some(t) if t.dims() != want => report.mismatched.push(ShapeMismatch {
                    name,
                    file: t.dims().to_vec(),
                    model: want,
                }),
                Some(t) => {
                    report.loaded.push(name);
                    plan.push((is_buffer, id, t));
                }
            }
        }
    }
    report.ignored = file.into_keys().collect();
    if strict {
        if let Some(name) = report.initialised.first() {
            return Err(strict_error(
                path,
                format!("the model's tensor '{name}' is not in the file"),
                &report,
            ));
        }
        if let Some(m) = report.mismatched.first() {
            let msg = format!(
                "tensor '{}' has shape {:?} in the file but {:?} in the model",
                m.name, m.file, m.model
            );
            return Err(strict_error(path, msg, &report));
        }
    }
    for (is_buffer, id, t) in plan {
        let reg = if is_buffer {
            &mut *buffers
        } else {
            &mut *params
        };
        reg.set(id, t.to_device(device)?)?;
    }
    Ok(report)
}

fn strict_error(path: &Path, what: String, r: &InitReport) -> Error {
    Error::Config(format!(
        "model.init_from = {} with model.init_strict: {what} ({} missing, {} of another shape in all)",
        path.display(),
        r.initialised.len(),
        r.mismatched.len()
    ))
}

/// Names listed in full up to this many; counts only beyond.
const LIST_UP_TO: usize = 8;

fn list(names: &[String]) -> String {
    if names.is_empty() || names.len() > LIST_UP_TO {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    }
}

/// One line: counts, with the names where there are few.
impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes: Vec<String> = self
            .mismatched
            .iter()
            .map(|m| format!("{}: file {:?}, model {:?}", m.name, m.file, m.model))
            .collect();
        write!(
            f,
            "init from {}: {} tensors loaded, {} newly initialised{}, {} in the file ignored{}, {} shape mismatches{}",
            self.file,
            self.loaded.len(),
            self.initialised.len(),
            list(&self.initialised),
            self.ignored.len(),
            list(&self.ignored),
            self.mismatched.len(),
            list(&shapes)
        )
    }
}
