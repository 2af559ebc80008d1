use super::{cuda, load_buffers, save_buffers, slot, LrMults, Optimizer, StepGuard};
use crate::backend::cpu::Float;
use crate::backend::cuda::CudaDevice;
use crate::tensor_math::chunks::Entry;
use crate::{with_dtype, Gradients, Params, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SgdConfig {
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// SGD with momentum and Nesterov, as in PyTorch: buf = μ·buf + (1-d)·g
/// (buf = g on the first step), update with buf, or g + μ·buf for Nesterov.
pub struct Sgd {
    pub config: SgdConfig,
    pub momentum_buffers: Vec<Option<Tensor>>,
    /// Buffers created by the update queued last, dropped again if it is
    /// skipped (so the next step starts them, `first`, as it should).
    fresh: Vec<usize>,
    lr_mults: LrMults,
}

impl Sgd {
    pub fn new(config: SgdConfig) -> Self {
        Sgd {
            config,
            momentum_buffers: Vec::new(),
            fresh: Vec::new(),
            lr_mults: LrMults::default(),
        }
    }

    /// Queues the fused update; `status` as for `cuda::step`.
    fn queue_cuda(
        &mut self,
        dev: &Arc<CudaDevice>,
        params: &mut Params,
        grads: &Gradients,
        lr: f64,
        status: u64,
    ) -> Result<()> {
        self.fresh.clear();
        let c = &self.config;
        let mut entries = Vec::new();
        for (id, g) in grads.iter() {
            let p = cuda::param_ptr(OP, params, id, g)?;
            let (b, first) = if c.momentum != 0.0 {
                cuda::state_ptr(OP, dev, slot(&mut self.momentum_buffers, id.index()), g)?
            } else {
                (0, false)
            };
            if first {
                self.fresh.push(id.index());
            }
            entries.push((
                id,
                Entry {
                    p,
                    g: g.cuda(OP)?.ptr(),
                    s1: b,
                    s2: 0,
                    len: params.get(id).numel(),
                    first,
                },
            ));
        }
        for ((mult, decay), entries) in self.lr_mults.split(entries) {
            let prm = cuda::SgdParams {
                lr: (lr * mult) as f32,
                momentum: c.momentum as f32,
                dampening: c.dampening as f32,
                weight_decay: (c.weight_decay * decay) as f32,
                nesterov: c.nesterov as i32,
                pad: 0,
            };
            cuda::step(dev, "sgd_step", &prm, &entries, status)?;
        }
        Ok(())
    }
}

const OP: &str = "sgd";

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut Params, grads: &Gradients, lr: f64) -> Result<()> {
        let c = self.config.clone();
        if let Some(dev) = cuda::grads_device(OP, grads)? {
            self.queue_cuda(&dev, params, grads, lr, 0)?;
            self.settle(true);
            return Ok(());
        }
        for (id, g) in grads.iter() {
            let lr = lr * self.lr_mults.of(id);
            let wd = c.weight_decay * self.lr_mults.decay_of(id);
            let p = params.get_mut(id);
            let buf = slot(&mut self.momentum_buffers, id.index());
            with_dtype!(p.dtype(), T => {
                let f = T::from_f64;
                let gd = g.data::<T>()?;
                let pd = p.data_mut::<T>()?;
                let mut d: Vec<T> = gd.iter().zip(pd.iter()).map(|(&g, &w)| g + f(wd) * w).collect();
                if c.momentum != 0.0 {
                    let b = match buf.take() {
                        None => Tensor::from_vec(d.clone(), g.shape().clone())?,
                        Some(mut b) => {
                            for (bv, &dv) in b.data_mut::<T>()?.iter_mut().zip(&d) {
                                *bv = f(c.momentum) * *bv + f(1.0 - c.dampening) * dv;
                            }
                            b
                        }
                    };
                    let bd = b.data::<T>()?;
                    for (dv, &bv) in d.iter_mut().zip(bd) {
                        *dv = if c.nesterov { *dv + f(c.momentum) * bv } else { bv };
                    }
                    *buf = Some(b);
                }
                for (w, dv) in pd.iter_mut().zip(d) {
                    *w -= f(lr) * dv;
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
        if !applied {
            for &i in &self.fresh {
                self.momentum_buffers[i] = None;
            }
        }
        self.fresh.clear();
    }

    fn state_dict(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        save_buffers(&mut out, "momentum", &self.momentum_buffers);
        out
    }

    fn load_state_dict(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        self.momentum_buffers = load_buffers(state, "momentum")?;
        Ok(())
    }

    fn set_lr_mults(&mut self, mults: LrMults) {
        self.lr_mults = mults;
    }
}
