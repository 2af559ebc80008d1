//! The temporal model with its optimizer: one step on a batch of chunks,
//! whole-video inference, and checkpoints that carry the feature
//! normalisation, so evaluation sees features exactly as training did.

use super::TemporalConfig;
use crate::data::chunks::{self, SeqBatch};
use crate::data::sequence::{FeatureNorm, SequenceSet};
use crate::model::temporal::{Carry, LabelFeed, TemporalNet};
use crate::model::MtlOutput;
use crate::nn::{Buffers, Ctx};
use crate::ops::LstmState;
use crate::optim::Optimizer;
use crate::tensor_file;
use crate::train::checkpoint::{self, CheckpointRef, TrainProgress};
use crate::train::trainer::{make_optimizer, optimizer_step, StepPhases};
use crate::train::HeadOutputs;
use crate::train::{ConfigFile, MtlLoss, MtlTargets, StepStats};
use crate::{Device, Error, Params, Result, Rng, Tape, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

const NORM_MEAN: &str = "features.mean";
const NORM_STD: &str = "features.std";
/// Buffer-name prefix of the carried LSTM states (`carry.<i>.h`, `.c`).
const CARRY: &str = "carry.";

pub struct TemporalTrainer {
    pub config: TemporalConfig,
    /// Where the weights, optimizer state and batches live (`train.device`).
    pub device: Device,
    pub net: TemporalNet,
    pub params: Params,
    pub norm: FeatureNorm,
    loss: MtlLoss,
    opt: Box<dyn Optimizer>,
    /// Dropout masks and chunk phases.
    pub rng: Rng,
    pub progress: TrainProgress,
    /// The LSTM states the next training step starts from (stateful
    /// encoders carry them across a video's chunks); checkpointed, so a run
    /// resumed mid-epoch continues the same streams.
    pub carry: Vec<LstmState>,
}

impl TemporalTrainer {
    /// A fresh model for features normalised with `norm`.
    pub fn new(config: &TemporalConfig, norm: FeatureNorm) -> Result<Self> {
        let mut rng = Rng::new(config.train.seed);
        let mut params = Params::new();
        let net = TemporalNet::new(
            &config.model,
            norm.mean.len(),
            &mut params,
            &mut rng.fork(1),
        )?;
        let loss = MtlLoss::new(&config.loss, &mut params)?;
        let opt = make_optimizer(&config.optim);
        // Initialised on the host from the seed, then copied (as `Trainer::new`).
        let device = Device::parse(&config.train.device)?;
        params.to_device(&device)?;
        Ok(TemporalTrainer {
            config: config.clone(),
            device,
            net,
            params,
            norm,
            loss,
            opt,
            rng: rng.fork(2),
            progress: TrainProgress::start(),
            carry: Vec::new(),
        })
    }

    /// One optimizer step on `b`, starting LSTM streams from `carry` (rows
    /// of lanes that begin a new video already zeroed); returns the stats and
    /// the states to carry into the next step. State is detached between steps.
    pub fn step(
        &mut self,
        b: &SeqBatch,
        carry: Vec<LstmState>,
    ) -> Result<(StepStats, Vec<LstmState>)> {
        let step = self.progress.step;
        let tape = Tape::new();
        let mut carry = Carry {
            input: carry,
            output: Vec::new(),
        };
        let labels = LabelFeed {
            va: &b.va,
            expr: &b.expr,
            au: &b.au,
            p: self
                .config
                .model
                .label_feedback_p(step, self.config.train.steps),
        };
        let out = self.forward(&tape, b, &mut carry, Some(&labels))?;
        let (va, au) = (b.va.to_device(&self.device)?, b.au.to_device(&self.device)?);
        let targets = MtlTargets {
            va: &va,
            au: &au,
            expr: &b.expr,
        };
        let terms = self.loss.forward(&tape, &self.params, &out, &targets)?;
        let cfg = &self.config;
        let stats = optimizer_step(
            tape,
            terms,
            &mut self.params,
            self.opt.as_mut(),
            (cfg.train.grad_clip, &cfg.schedule),
            step,
            &mut StepPhases::default(),
            None,
        )?;
        self.progress.step += 1;
        Ok((stats, carry.output))
    }

    /// Training mode when `labels` is given (they feed label feedback),
    /// eval mode otherwise.
    fn forward(
        &mut self,
        tape: &Tape,
        b: &SeqBatch,
        carry: &mut Carry,
        labels: Option<&LabelFeed>,
    ) -> Result<MtlOutput> {
        let mut buffers = Buffers::new();
        let mut cx = Ctx {
            tape,
            params: &self.params,
            buffers: &mut buffers,
            training: labels.is_some(),
            rng: &mut self.rng,
            frozen: false,
        };
        let x = tape.constant(b.x.to_device(&self.device)?);
        self.net.forward(&mut cx, &x, &b.mask, carry, labels)
    }

    /// Eval-mode outputs for every frame of every video of `set` (normalised
    /// features), streaming each video's chunks in order with state carried.
    pub fn predict(&mut self, set: &SequenceSet) -> Result<Vec<HeadOutputs>> {
        let (len, c, a) = (
            self.config.data.chunk,
            self.config.model.n_expr,
            self.config.model.n_aus,
        );
        let mut outs: Vec<HeadOutputs> = set
            .videos
            .iter()
            .map(|v| HeadOutputs {
                va: vec![0.0; v.len() * 2],
                expr: vec![0.0; v.len() * c],
                au: vec![0.0; v.len() * a],
            })
            .collect();
        let mut carry = Vec::new();
        for step in chunks::plan(set, self.config.data.eval_lanes, len, None)? {
            let b = chunks::batch(set, &step, len)?;
            let mut cr = Carry {
                input: reset_rows(carry, &b.reset)?,
                output: Vec::new(),
            };
            let out = self.forward(&Tape::no_grad(), &b, &mut cr, None)?;
            carry = cr.output;
            let (va, ex, au) = (
                out.va.value().to_cpu()?,
                out.expr.value().to_cpu()?,
                out.au.value().to_cpu()?,
            );
            let (va, ex, au) = (va.data::<f32>()?, ex.data::<f32>()?, au.data::<f32>()?);
            for (r, pos) in b.frames.iter().enumerate() {
                let Some((v, i)) = *pos else { continue };
                let o = &mut outs[v];
                o.va[2 * i..2 * i + 2].copy_from_slice(&va[2 * r..2 * r + 2]);
                o.expr[c * i..c * (i + 1)].copy_from_slice(&ex[c * r..c * (r + 1)]);
                o.au[a * i..a * (i + 1)].copy_from_slice(&au[a * r..a * (r + 1)]);
            }
        }
        Ok(outs)
    }

    /// Feature statistics and the carried states, by buffer name.
    fn buffers(&self) -> Result<BTreeMap<String, Tensor>> {
        let d = self.norm.mean.len();
        let mut out = BTreeMap::from([
            (
                NORM_MEAN.to_string(),
                Tensor::from_vec(self.norm.mean.clone(), [d])?,
            ),
            (
                NORM_STD.to_string(),
                Tensor::from_vec(self.norm.std.clone(), [d])?,
            ),
        ]);
        for (i, s) in self.carry.iter().enumerate() {
            out.insert(format!("{CARRY}{i}.h"), s.h.clone());
            out.insert(format!("{CARRY}{i}.c"), s.c.clone());
        }
        Ok(out)
    }

    /// Weights, optimizer state, feature statistics, carried states,
    /// progress and config, atomically (written from host copies).
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        checkpoint::save(
            path,
            &CheckpointRef {
                params: &self.params,
                optimizer: &self.opt.state_dict(),
                buffers: &self.buffers()?,
                progress: self.progress.with_rng(&self.rng),
                config_toml: &self.config.to_toml(),
            },
        )
    }

    /// The model of a checkpoint, rebuilt from its stored config and feature
    /// statistics, on GPU 0 where there is one, else on the CPU.
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        // Feature statistics mark a temporal checkpoint; check them before
        // the config, whose parse error would not say what is wrong.
        let (tensors, _) = tensor_file::read(path, "checkpoint")?;
        let dim = tensors
            .get(&format!("buffers.{NORM_MEAN}"))
            .map(|t| t.numel())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{}: not a temporal checkpoint (no feature statistics; a frame model's checkpoint goes to `mtaffect eval`)",
                    path.display()
                ))
            })?;
        let text = checkpoint::read_config(path)?;
        let mut cfg =
            TemporalConfig::from_toml(&text, &format!("{} (stored config)", path.display()))?;
        cfg.train.device = "auto".into();
        // The stored sizes are input like any config's: bounded before the
        // model is built.
        crate::train::memory_budget::check_temporal(&cfg, dim, &Device::parse(&cfg.train.device)?)?;
        let mut t = TemporalTrainer::new(
            &cfg,
            FeatureNorm {
                mean: vec![0.0; dim],
                std: vec![1.0; dim],
            },
        )?;
        t.load_checkpoint(path)?;
        Ok(t)
    }

    /// Restores everything `save_checkpoint` wrote; on error nothing changes.
    /// The feature statistics must have this model's input width; the
    /// carried states are taken as the file holds them.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let (tensors, _) = tensor_file::read(path, "checkpoint")?;
        let mut buffers = self.buffers()?;
        buffers.retain(|k, _| !k.starts_with(CARRY));
        for (k, t) in &tensors {
            if let Some(name) = k.strip_prefix("buffers.").filter(|n| n.starts_with(CARRY)) {
                buffers.insert(name.to_string(), t.clone());
            }
        }
        let mut params = self.params.clone();
        let ck = checkpoint::load(path, &mut params, &mut buffers)?;
        let mut opt = make_optimizer(&self.config.optim);
        opt.load_state_dict(&ck.optimizer)?;
        let mut carry = Vec::new();
        while let Some(h) = buffers.remove(&format!("{CARRY}{}.h", carry.len())) {
            let c = buffers
                .remove(&format!("{CARRY}{}.c", carry.len()))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{}: carried state {} has h but no c",
                        path.display(),
                        carry.len()
                    ))
                })?;
            carry.push(LstmState {
                h: h.to_device(&self.device)?,
                c: c.to_device(&self.device)?,
            });
        }
        self.params = params;
        self.opt = opt;
        self.norm = FeatureNorm {
            mean: buffers[NORM_MEAN].to_vec()?,
            std: buffers[NORM_STD].to_vec()?,
        };
        self.carry = carry;
        self.rng = Rng::from_state(ck.progress.rng);
        self.progress = ck.progress;
        Ok(())
    }
}

/// The carried LSTM states with the rows of lanes that start a new video
/// zeroed (through the host: a few KB per chunk step), on the states'
/// device; nothing to carry when every lane starts fresh.
pub fn reset_rows(states: Vec<LstmState>, reset: &[bool]) -> Result<Vec<LstmState>> {
    if reset.iter().all(|&r| r) {
        return Ok(Vec::new());
    }
    let zero = |t: Tensor| -> Result<Tensor> {
        let h = t.numel() / reset.len().max(1);
        let mut v = t.to_f64_vec();
        for (row, &r) in v.chunks_mut(h.max(1)).zip(reset) {
            if r {
                row.fill(0.0);
            }
        }
        Tensor::from_f64s(&v, t.shape().clone(), t.dtype())?.to_device(&t.device())
    };
    states
        .into_iter()
        .map(|s| {
            Ok(LstmState {
                h: zero(s.h)?,
                c: zero(s.c)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn reset_rows_zero_only_the_lanes_that_start_a_video() {
        let t = |v: &[f64]| Tensor::from_f64s(v, [3, 2], DType::F32).unwrap();
        let s = LstmState {
            h: t(&[1., 2., 3., 4., 5., 6.]),
            c: t(&[7., 8., 9., 10., 11., 12.]),
        };
        let r = reset_rows(vec![s.clone()], &[false, true, false]).unwrap();
        assert_eq!(r[0].h.to_f64_vec(), [1., 2., 0., 0., 5., 6.]);
        assert_eq!(r[0].c.to_f64_vec(), [7., 8., 0., 0., 11., 12.]);
        assert_eq!(r[0].h.dtype(), DType::F32);
        assert!(reset_rows(vec![s], &[true; 3]).unwrap().is_empty());
    }
}
