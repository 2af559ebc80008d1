use super::{cuda, load_buffers, save_buffers, slot, LrMults, Optimizer, StepGuard};
use crate::backend::cpu::Float;
use crate::backend::cuda::CudaDevice;
use crate::tensor_math::chunks::Entry;
use crate::{with_dtype, DType, Error, Gradients, Params, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// true: AdamW (decay applied to the weights, decoupled from the moments);
    /// false: Adam with an L2 term added to the gradient.
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

/// Adam / AdamW with bias correction, as in PyTorch.
pub struct Adam {
    pub config: AdamConfig,
    /// Number of steps taken (the bias-correction exponent).
    pub step: u64,
    pub m: Vec<Option<Tensor>>,
    pub v: Vec<Option<Tensor>>,
    /// Moments created by the update queued last, dropped again if it is skipped.
    fresh: Vec<usize>,
    lr_mults: LrMults,
}

impl Adam {
    pub fn new(config: AdamConfig) -> Self {
        Adam {
            config,
            step: 0,
            m: Vec::new(),
            v: Vec::new(),
            fresh: Vec::new(),
            lr_mults: LrMults::default(),
        }
    }

    /// The bias corrections (1 - beta1^t, 1 - beta2^t) of step `t`.
    fn bias_corrections(&self, t: u64) -> (f64, f64) {
        let c = &self.config;
        (1.0 - c.beta1.powi(t as i32), 1.0 - c.beta2.powi(t as i32))
    }

    /// Queues the fused update of step `self.step + 1` (the host knows its
    /// bias corrections in advance; the count itself moves in `settle`).
    fn queue_cuda(
        &mut self,
        dev: &Arc<CudaDevice>,
        params: &mut Params,
        grads: &Gradients,
        lr: f64,
        status: u64,
    ) -> Result<()> {
        self.fresh.clear();
        let mut entries = Vec::new();
        for (id, g) in grads.iter() {
            let p = cuda::param_ptr(OP, params, id, g)?;
            let (m, created) = cuda::state_ptr(OP, dev, slot(&mut self.m, id.index()), g)?;
            let (v, _) = cuda::state_ptr(OP, dev, slot(&mut self.v, id.index()), g)?;
            if created {
                self.fresh.push(id.index());
            }
            entries.push((
                id,
                Entry {
                    p,
                    g: g.cuda(OP)?.ptr(),
                    s1: m,
                    s2: v,
                    len: params.get(id).numel(),
                    first: false,
                },
            ));
        }
        let c = &self.config;
        let (bc1, bc2) = self.bias_corrections(self.step + 1);
        for ((mult, decay), entries) in self.lr_mults.split(entries) {
            let prm = cuda::AdamParams {
                lr: (lr * mult) as f32,
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                eps: c.eps as f32,
                weight_decay: (c.weight_decay * decay) as f32,
                bc1: bc1 as f32,
                bc2: bc2 as f32,
                decoupled: c.decoupled as i32,
            };
            cuda::step(dev, "adam_step", &prm, &entries, status)?;
        }
        Ok(())
    }
}

const OP: &str = "adam";

impl Optimizer for Adam {
    fn step(&mut self, params: &mut Params, grads: &Gradients, lr: f64) -> Result<()> {
        if let Some(dev) = cuda::grads_device(OP, grads)? {
            self.queue_cuda(&dev, params, grads, lr, 0)?;
            self.settle(true);
            return Ok(());
        }
        self.step += 1;
        let c = self.config.clone();
        let (bc1, bc2) = self.bias_corrections(self.step);
        for (id, g) in grads.iter() {
            let lr = lr * self.lr_mults.of(id);
            let wd = c.weight_decay * self.lr_mults.decay_of(id);
            let p = params.get_mut(id);
            let m = slot(&mut self.m, id.index())
                .get_or_insert_with(|| Tensor::zeros(g.shape().clone(), g.dtype()));
            let v = slot(&mut self.v, id.index())
                .get_or_insert_with(|| Tensor::zeros(g.shape().clone(), g.dtype()));
            with_dtype!(p.dtype(), T => {
                let f = T::from_f64;
                let gd = g.data::<T>()?;
                let (md, vd, pd) = (m.data_mut::<T>()?, v.data_mut::<T>()?, p.data_mut::<T>()?);
                for i in 0..gd.len() {
                    let mut gi = gd[i];
                    if c.decoupled {
                        pd[i] -= f(lr * wd) * pd[i];
                    } else {
                        gi += f(wd) * pd[i];
                    }
                    md[i] = f(c.beta1) * md[i] + f(1.0 - c.beta1) * gi;
                    vd[i] = f(c.beta2) * vd[i] + f(1.0 - c.beta2) * gi * gi;
                    let mhat = md[i] / f(bc1);
                    let vhat = vd[i] / f(bc2);
                    pd[i] -= f(lr) * mhat / (vhat.sqrt() + f(c.eps));
                }
            });
        }
        Ok(())
    }

    fn step_guarded(
        &mut self,
        params: &mut Params,
        grads: &Gradients,
        lr: f64,
        guard: &StepGuard,
    ) -> Result<()> {
        self.queue_cuda(guard.device(), params, grads, lr, guard.ptr())
    }

    fn settle(&mut self, applied: bool) {
        if applied {
            self.step += 1;
        } else {
            for &i in &self.fresh {
                (self.m[i], self.v[i]) = (None, None);
            }
        }
        self.fresh.clear();
    }

    fn state_dict(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        save_buffers(&mut out, "m", &self.m);
        save_buffers(&mut out, "v", &self.v);
        // f64 holds every step count a run can reach exactly.
        out.insert("step".into(), Tensor::scalar(self.step as f64, DType::F64));
        out
    }

    fn load_state_dict(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let step = state
            .get("step")
            .ok_or_else(|| Error::Config("Adam state has no 'step'".into()))?
            .item()?;
        self.step = step as u64;
        self.m = load_buffers(state, "m")?;
        self.v = load_buffers(state, "v")?;
        Ok(())
    }

    fn set_lr_mults(&mut self, mults: LrMults) {
        self.lr_mults = mults;
    }
}
