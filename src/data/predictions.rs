//! The challenge submission file for the multi-task track.
//!
//! Format (one header, one line per frame):
//!
//! ```text
//! image,valence,arousal,expression,aus
//! video1/00001.jpg,0.125,-0.25,4,0,0,0,1,0,0,1,0,0,0,0,0
//! ```
//!
//! The `aus` column expands to one 0/1 value per AU of the label set, comma
//! separated, in the label set's order (AU1, AU2, AU4, ... AU26 for ABAW 2022),
//! so a line has 4 + n_aus fields. An AU is 1 when its sigmoid probability is
//! >= 0.5, i.e. when its logit is >= 0. The expression is the argmax class.

use super::labels::LabelSet;
use crate::io::write_atomic_creating_dir;
use crate::{Error, Result};
use std::fmt::Write;
use std::path::Path;

/// One frame's prediction, already decided (argmax, threshold).
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub image: String,
    pub va: [f32; 2],
    pub expr: u8,
    pub aus: Vec<u8>,
}

impl Prediction {
    /// From raw head outputs: VA clamped to [-1, 1], expression = argmax of
    /// `expr_logits` (first wins ties), AU = 1 where logit >= 0 (sigmoid >= 0.5).
    pub fn from_logits(
        image: impl Into<String>,
        va: [f32; 2],
        expr_logits: &[f32],
        au_logits: &[f32],
    ) -> Prediction {
        let expr = expr_logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            })
            .0 as u8;
        Prediction {
            image: image.into(),
            va: va.map(|v| v.clamp(-1.0, 1.0)),
            expr,
            aus: au_logits.iter().map(|&l| u8::from(l >= 0.0)).collect(),
        }
    }
}

/// Writes `preds` as a submission file at `path` (temp file + rename).
pub fn write_predictions(path: &Path, label_set: LabelSet, preds: &[Prediction]) -> Result<()> {
    let mut out = String::from("image,valence,arousal,expression,aus\n");
    for p in preds {
        if p.aus.len() != label_set.num_aus() || p.expr as usize >= label_set.num_expressions() {
            return Err(Error::Config(format!(
                "prediction for {}: expected {} AUs and expression < {}, found {} AUs and expression {}",
                p.image,
                label_set.num_aus(),
                label_set.num_expressions(),
                p.aus.len(),
                p.expr
            )));
        }
        if !p.va.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "valence/arousal prediction for {}",
                p.image
            )));
        }
        let _ = write!(out, "{},{},{},{}", p.image, p.va[0], p.va[1], p.expr);
        for a in &p.aus {
            let _ = write!(out, ",{a}");
        }
        out.push('\n');
    }
    write_atomic_creating_dir(path, out.as_bytes())
}
