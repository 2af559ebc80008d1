//! The masked autoencoder with its optimizer: one step on a batch of images,
//! the reconstruction error on held-out images under fixed masks, and
//! checkpoints (weights, optimizer, RNG, progress, config) through the
//! shared checkpoint format, so a run resumes exactly and a fine-tuning run
//! can start from it (`--init-from`).

use super::patches::{normalise_patches, patch_stats, PatchGrid};
use super::PretrainConfig;
use crate::data::Loader;
use crate::model::{Mae, MaeConfig, MaskPlan};
use crate::nn::{Buffers, Ctx};
use crate::ops::{self, loss::MseDenominator};
use crate::optim::Optimizer;
use crate::train::checkpoint::{self, CheckpointRef, TrainProgress};
use crate::train::trainer::{make_optimizer, optimizer_step, param_rates, StepPhases};
use crate::train::{ConfigFile, LossTerms, StepStats};
use crate::{Device, Params, Result, Rng, Tape, Tensor, Var};
use std::collections::BTreeMap;
use std::path::Path;

/// Seed of the evaluation masks: every evaluation hides the same patches
/// of the same images, so its figures are comparable across steps.
const EVAL_MASK_SEED: u64 = 0x3A5E;

pub struct PretrainTrainer {
    pub config: PretrainConfig,
    pub device: Device,
    pub mae: Mae,
    pub params: Params,
    opt: Box<dyn Optimizer>,
    /// Masks and drop path.
    rng: Rng,
    pub progress: TrainProgress,
    pub grid: PatchGrid,
}

/// One batch's reconstruction (host copies): its images [N, S, S, 3], the
/// masks, and the predicted patches [N, L, P] of every patch.
pub struct Reconstruction {
    pub images: Vec<f32>,
    pub plan: MaskPlan,
    pub patches: Vec<f32>,
}

impl PretrainTrainer {
    /// A fresh model initialised from `train.seed`.
    pub fn new(config: &PretrainConfig) -> Result<Self> {
        let mut rng = Rng::new(config.train.seed);
        let mut params = Params::new();
        let mae = Mae::new(&mut params, &config.encoder, &config.mae, &mut rng.fork(1))?;
        let device = Device::parse(&config.train.device)?;
        params.to_device(&device)?;
        let opt = optimizer(config, &params);
        Ok(PretrainTrainer {
            config: config.clone(),
            device,
            mae,
            params,
            opt,
            rng: rng.fork(2),
            progress: TrainProgress::start(),
            grid: PatchGrid::new(config.data.image_size, config.encoder.patch)?,
        })
    }

    /// The patches the loss compares with: the images' patch vectors
    /// (normalised per patch with `mae.norm_pix_loss`), host [N, L, P].
    pub fn targets(&self, images: &[f32]) -> Vec<f32> {
        let mut t = self.grid.patchify(images);
        if self.config.mae.norm_pix_loss {
            normalise_patches(&mut t, self.grid.dim());
        }
        t
    }

    /// Forward and loss of images [N, S, S, 3] (host) under `plan`: the
    /// mean squared error over the hidden patches' values, and the
    /// predictions of every patch. Recorded on `tape` (backward gives every
    /// parameter's gradient); `training` as in [`Ctx`].
    pub fn loss(
        &mut self,
        tape: &Tape,
        images: &Tensor,
        plan: &MaskPlan,
        training: bool,
    ) -> Result<(Var, Var)> {
        let x = tape.constant(images.to_device(&self.device)?);
        let mut buffers = Buffers::new();
        let mut cx = Ctx {
            tape,
            params: &self.params,
            buffers: &mut buffers,
            training,
            rng: &mut self.rng,
            frozen: false,
        };
        let pred = self.mae.forward(&mut cx, &x, plan)?;
        let hidden = ops::gather_tokens(tape, &pred, &plan.masked)?;
        let target = self.masked_targets(images, plan)?;
        let loss = ops::loss::mse_loss(tape, &hidden, &target, None, MseDenominator::Valid)?;
        Ok((loss, pred))
    }

    /// The targets of the hidden patches, in `plan.masked`'s order, on the
    /// model's device: [N, L - K, P].
    fn masked_targets(&self, images: &Tensor, plan: &MaskPlan) -> Result<Tensor> {
        let all = self.targets(&images.to_vec::<f32>()?);
        let (l, p) = (self.grid.tokens(), self.grid.dim());
        let rows: Vec<&[u32]> = plan.masked.rows().collect();
        let m = rows[0].len();
        let mut out = Vec::with_capacity(rows.len() * m * p);
        for (i, row) in rows.iter().enumerate() {
            for &t in *row {
                let at = (i * l + t as usize) * p;
                out.extend_from_slice(&all[at..at + p]);
            }
        }
        Tensor::from_vec(out, [rows.len(), m, p])?.to_device(&self.device)
    }

    /// One optimizer step on images [N, S, S, 3] (host) with fresh masks.
    /// A non-finite loss or gradient is an error and changes no weight.
    pub fn step(&mut self, images: &Tensor) -> Result<StepStats> {
        let plan = draw_plan(
            &self.grid,
            &self.config.mae,
            images.dims()[0],
            &mut self.rng,
        )?;
        self.step_with_plan(images, &plan)
    }

    /// [`step`](Self::step) under given masks instead of drawn ones (the
    /// PyTorch golden test replays the permutations PyTorch used).
    pub fn step_with_plan(&mut self, images: &Tensor, plan: &MaskPlan) -> Result<StepStats> {
        let step = self.progress.step;
        let tape = Tape::new();
        let (loss, _) = self.loss(&tape, images, plan, true)?;
        let cfg = &self.config;
        let stats = optimizer_step(
            tape,
            LossTerms::single(loss)?,
            &mut self.params,
            self.opt.as_mut(),
            (cfg.train.grad_clip, &cfg.schedule),
            step,
            &mut StepPhases::default(),
            None,
        )?;
        self.progress.step += 1;
        Ok(stats)
    }

    /// Eval-mode reconstruction error over every batch of `loader` (the mean
    /// over images of each image's mean squared error on its hidden
    /// patches), under masks drawn from a fixed seed; and the
    /// reconstructions of the batches holding the first `keep` images, for
    /// the grid.
    pub fn evaluate(&mut self, loader: &Loader, keep: usize) -> Result<(f64, Vec<Reconstruction>)> {
        let mut masks = Rng::new(EVAL_MASK_SEED);
        let (mut sum, mut n) = (0.0, 0usize);
        let mut kept = Vec::new();
        let mut kept_images = 0;
        for b in loader.epoch(0, 0) {
            let b = b?;
            let rows = b.len();
            let plan = draw_plan(&self.grid, &self.config.mae, rows, &mut masks)?;
            let (loss, pred) = self.loss(&Tape::no_grad(), &b.images, &plan, false)?;
            if kept_images < keep {
                kept_images += rows;
                kept.push(Reconstruction {
                    images: b.images.to_vec::<f32>()?,
                    plan,
                    patches: pred.value().to_cpu()?.to_vec::<f32>()?,
                });
            }
            sum += loss.value().item()? * rows as f64;
            n += rows;
        }
        Ok((sum / n.max(1) as f64, kept))
    }

    /// Writes `path` atomically: weights, optimizer state, progress, RNG and
    /// the resolved config.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        checkpoint::save(
            path,
            &CheckpointRef {
                params: &self.params,
                optimizer: &self.opt.state_dict(),
                buffers: &BTreeMap::new(),
                progress: self.progress.with_rng(&self.rng),
                config_toml: &self.config.to_toml(),
            },
        )
    }

    /// Restores everything `save_checkpoint` wrote; on error nothing changes.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let mut params = self.params.clone();
        let ck = checkpoint::load(path, &mut params, &mut BTreeMap::new())?;
        let mut opt = optimizer(&self.config, &self.params);
        opt.load_state_dict(&ck.optimizer)?;
        self.params = params;
        self.opt = opt;
        self.rng = Rng::from_state(ck.progress.rng);
        self.progress = ck.progress;
        Ok(())
    }
}

/// AdamW (or SGD) as configured, biases and norms decayed or not as
/// `train.decay_biases_and_norms` says.
fn optimizer(config: &PretrainConfig, params: &Params) -> Box<dyn Optimizer> {
    let mut opt = make_optimizer(&config.optim);
    let ones = vec![1.0; params.len()];
    opt.set_lr_mults(param_rates(params, &config.train, ones));
    opt
}

/// Masks for `n` images of `grid` drawn from `rng`.
fn draw_plan(grid: &PatchGrid, mae: &MaeConfig, n: usize, rng: &mut Rng) -> Result<MaskPlan> {
    let l = grid.tokens();
    MaskPlan::draw(n, l, mae.visible(l), rng)
}

/// Original, masked and reconstructed image [S, S, 3] of row `i` of a
/// batch: hidden patches grey in the second; in the third the visible
/// patches are the original's and the hidden ones the prediction's (taken
/// back to pixels with the original patch's mean and std when the targets
/// were normalised).
pub fn grid_row(grid: &PatchGrid, norm_pix: bool, rec: &Reconstruction, i: usize) -> [Vec<f32>; 3] {
    let (l, p) = (grid.tokens(), grid.dim());
    let image = &rec.images[i * l * p..(i + 1) * l * p];
    let orig = grid.patchify(image);
    let pred = &rec.patches[i * l * p..(i + 1) * l * p];
    let hidden = rec.plan.masked.rows().nth(i).expect("a row per image");
    let (mut masked, mut recon) = (orig.clone(), orig.clone());
    for &t in hidden {
        let r = t as usize * p..(t as usize + 1) * p;
        masked[r.clone()].fill(0.0);
        let (m, s) = if norm_pix {
            patch_stats(&orig[r.clone()])
        } else {
            (0.0, 1.0)
        };
        for (d, &v) in recon[r.clone()].iter_mut().zip(&pred[r]) {
            *d = v * s + m;
        }
    }
    [
        image.to_vec(),
        grid.unpatchify(&masked),
        grid.unpatchify(&recon),
    ]
}
