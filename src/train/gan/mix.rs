//! Augmenting plain multi-task training with generated faces: for a share of
//! each batch's fully labelled rows, the generator draws a new face for the
//! same labels, and the pair joins the batch (the labels it was asked for are
//! its labels). Off unless `[gan_mix] ratio > 0`.

use super::condition::{labelled_rows, Conditions, LabelRow};
use super::GanTrainer;
use crate::data::{Batch, BatchTransform};
use crate::train::GanMixConfig;
use crate::{DType, Error, Result, Rng, Tensor};

pub struct GanMixer {
    gan: GanTrainer,
    ratio: f64,
}

impl GanMixer {
    /// The generator of `cfg.checkpoint`, or `None` when mixing is off. Its
    /// images must have the run's size and label layout.
    pub fn load(
        cfg: &GanMixConfig,
        image_size: usize,
        n_aus: usize,
        n_expr: usize,
    ) -> Result<Option<Self>> {
        if cfg.ratio == 0.0 {
            return Ok(None);
        }
        let gan = GanTrainer::from_checkpoint(&cfg.checkpoint)?;
        let g = &gan.config.generator;
        if (g.image_size, g.n_aus, g.n_expr) != (image_size, n_aus, n_expr) {
            return Err(Error::Config(format!(
                "gan_mix.checkpoint {}: generates {} px with {} AUs / {} expressions, the run needs {image_size} px with {n_aus} / {n_expr}",
                cfg.checkpoint.display(),
                g.image_size,
                g.n_aus,
                g.n_expr
            )));
        }
        Ok(Some(GanMixer {
            gan,
            ratio: cfg.ratio,
        }))
    }
}

impl BatchTransform for GanMixer {
    /// `batch` plus generated faces for a random share of its fully labelled
    /// rows; noise and the choice come from `rng` (the trainer's, so a
    /// resumed run draws the same). A generated row keeps the dataset index
    /// of the row whose labels it copies.
    fn apply(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Batch> {
        let mut rows = labelled_rows(batch)?;
        rng.shuffle(&mut rows);
        let k = ((self.ratio * batch.len() as f64).round() as usize).min(rows.len());
        if k == 0 {
            return Ok(batch.clone());
        }
        rows.truncate(k);
        let g = &self.gan.config.generator;
        let labels: Vec<LabelRow> = rows.iter().map(|(_, r)| r.clone()).collect();
        let cond = Conditions::from_rows(&labels, g.n_aus, g.n_expr)?;
        let z = Tensor::randn([k, g.z_dim], 1.0, DType::F32, rng);
        // The generator may sit on the GPU; the batch it joins is on the host.
        let images = self.gan.generate(&z, &cond.input, false)?.to_cpu()?;
        let expr_f: Vec<f32> = cond.expr.iter().map(|&e| e as f32).collect();
        let mut out = batch.clone();
        out.images = Tensor::concat(&[&batch.images, &images], 0)?;
        out.va = Tensor::concat(&[&batch.va, &cond.va], 0)?;
        out.aus = Tensor::concat(&[&batch.aus, &cond.aus], 0)?;
        out.expr = Tensor::concat(&[&batch.expr, &Tensor::from_vec(expr_f, [k])?], 0)?;
        out.expr_class.extend_from_slice(&cond.expr);
        out.indices
            .extend(rows.iter().map(|&(i, _)| batch.indices[i]));
        Ok(out)
    }
}
