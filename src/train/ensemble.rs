//! Ensembles: several trained frame models scored as one, their outputs
//! averaged by [`head_outputs::average`](super::head_outputs::average).

use super::head_outputs::{average, HeadOutputs};
use super::{TrainConfig, Trainer};
use crate::data::Loader;
use crate::metrics::MtlMetrics;
use crate::{Error, Result, Tensor};
use std::path::{Path, PathBuf};

/// Frame models scored together.
pub struct Ensemble {
    members: Vec<Trainer>,
}

impl Ensemble {
    /// Loads every checkpoint; they must agree on the input size and the
    /// label set (the data they read and the outputs they average).
    pub fn load(paths: &[PathBuf]) -> Result<Ensemble> {
        let mut members = Vec::with_capacity(paths.len());
        for p in paths {
            let t = Trainer::from_checkpoint(p)?;
            if let Some(first) = members.first() {
                check_compatible(&paths[0], first, p, &t)?;
            }
            members.push(t);
        }
        if members.is_empty() {
            return Err(Error::Config("give at least one --checkpoint".into()));
        }
        Ok(Ensemble { members })
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The first member's config: data layout, input size, labels.
    pub fn config(&self) -> &TrainConfig {
        &self.members[0].config
    }

    /// Eval-mode outputs for images [N, H, W, 3].
    pub fn infer(&mut self, images: &Tensor) -> Result<HeadOutputs> {
        let outs = self
            .members
            .iter_mut()
            .map(|m| {
                let (va, expr, au) = m.infer(images)?;
                Ok(HeadOutputs { va, expr, au })
            })
            .collect::<Result<Vec<_>>>()?;
        average(&outs, self.config().data.label_set.num_expressions())
    }

    /// The ABAW metrics over one pass of `loader`.
    pub fn evaluate(&mut self, loader: &Loader) -> Result<MtlMetrics> {
        super::trainer::evaluate_with(loader, |images| self.infer(images))
    }
}

fn check_compatible(a: &Path, ta: &Trainer, b: &Path, tb: &Trainer) -> Result<()> {
    let (da, db) = (&ta.config.data, &tb.config.data);
    let what = if da.image_size != db.image_size {
        format!("data.image_size {} vs {}", da.image_size, db.image_size)
    } else if da.label_set != db.label_set {
        format!("data.label_set {:?} vs {:?}", da.label_set, db.label_set)
    } else {
        return Ok(());
    };
    Err(Error::Config(format!(
        "{} and {} cannot be ensembled: {what}",
        a.display(),
        b.display()
    )))
}
