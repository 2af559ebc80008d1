//! What a frame trainer does differently as one rank of a data-parallel
//! run. Each rank trains on its slice of the global batch; the multi-task
//! loss averages each task over the labelled samples of the batch, so a
//! rank's term is scaled by `W · n_rank / N_global` (its valid labels over
//! the global count, times the world size W): the mean over ranks of the
//! scaled terms is then the single-process masked mean, and so is the mean
//! of their gradients, which the all-reduce computes (bucket by bucket;
//! NCCL on a GPU, the control channel on the CPU). Every rank then takes
//! the same optimizer step from the same averaged gradients, so parameters
//! stay bit-identical. The valence/arousal CCC is a batch statistic, not a
//! mean of per-sample terms, and batch norm uses per-rank statistics: those
//! two are where a rank's step still differs from the single-process one.

use super::HeadOutputs;
use crate::autograd::Gradients;
use crate::data::{Batch, Loader};
use crate::dist::nccl::NcclGrads;
use crate::dist::{
    gather_metrics, BucketPlan, ProcessGroup, RankPredictions, DEFAULT_BUCKET_BYTES,
};
use crate::metrics::MtlMetrics;
use crate::nn::Buffers;
use crate::ops::loss::INVALID_VA;
use crate::{Device, Error, Params, Result, Tensor};

/// One rank's collectives and its gradient bucket plan.
pub struct DataParallel {
    pub group: ProcessGroup,
    plan: BucketPlan,
    /// The GPU gradient all-reduce; `None` on the CPU.
    nccl: Option<NcclGrads>,
}

impl DataParallel {
    /// `nccl_id` is the rendezvous payload (rank 0's NCCL unique id; empty
    /// for a CPU run). A GPU rank always reduces its gradients with NCCL.
    pub fn new(
        group: ProcessGroup,
        params: &Params,
        device: &Device,
        nccl_id: &[u8],
    ) -> Result<DataParallel> {
        let plan = BucketPlan::new(params, DEFAULT_BUCKET_BYTES)?;
        let nccl = match device {
            Device::Cuda(dev) => Some(NcclGrads::new(
                dev,
                nccl_id,
                group.rank(),
                group.world_size(),
            )?),
            Device::Cpu => None,
        };
        Ok(DataParallel { group, plan, nccl })
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// The (va, au, expr) scales of this rank's loss terms for `batch`.
    pub fn loss_scales(&mut self, batch: &Batch) -> Result<[f64; 3]> {
        let local = valid_counts(batch)?;
        let mut global = local;
        self.group.all_reduce_sum(&mut global)?;
        let w = self.group.world_size() as f64;
        Ok(std::array::from_fn(|k| {
            let n = f64::from(global[k]);
            if n > 0.0 {
                w * f64::from(local[k]) / n
            } else {
                0.0
            }
        }))
    }

    /// Replaces every gradient with its mean over the ranks.
    pub fn average_gradients(&mut self, grads: &mut Gradients) -> Result<()> {
        match &mut self.nccl {
            Some(n) => n.average(grads, &self.plan),
            None => self.group.average_host_gradients(grads, &self.plan),
        }
    }

    /// The mean over ranks of `values` (a step's loss figures, for the
    /// log), in f64 and rank order: a group of one logs its own values.
    pub fn mean(&mut self, values: &mut [f64]) -> Result<()> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut sums = vec![0.0; values.len()];
        for part in self.group.all_gather(&bytes)? {
            for (s, c) in sums.iter_mut().zip(part.chunks_exact(8)) {
                *s += f64::from_le_bytes(c.try_into().expect("8-byte chunks"));
            }
        }
        let w = self.group.world_size() as f64;
        for (x, s) in values.iter_mut().zip(sums) {
            *x = s / w;
        }
        Ok(())
    }

    /// Gives every rank rank 0's batch-norm running statistics (per-rank
    /// statistics drift apart; evaluation and checkpoints use rank 0's, as
    /// PyTorch DDP's buffer broadcast does).
    pub fn broadcast_buffers(&mut self, buffers: &mut Buffers) -> Result<()> {
        let ids: Vec<_> = buffers.ids().collect();
        let mut flat = Vec::new();
        for &id in &ids {
            flat.extend(buffers.get(id).to_cpu()?.to_vec::<f32>()?);
        }
        let bytes = self.group.broadcast(bytemuck::cast_slice(&flat).to_vec())?;
        let all: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        if all.len() != flat.len() {
            return Err(Error::Dist(format!(
                "rank 0 has {} batch-norm buffer values, this rank {}",
                all.len(),
                flat.len()
            )));
        }
        let mut at = 0;
        for id in ids {
            let old = buffers.get(id);
            let n = old.numel();
            let t = Tensor::from_vec(all[at..at + n].to_vec(), old.shape().clone())?
                .to_device(&old.device())?;
            buffers.set(id, t)?;
            at += n;
        }
        Ok(())
    }
}

impl DataParallel {
    /// Compares every rank's parameters by checksum (FNV-1a over the bits):
    /// the averaged gradients and the identical optimizer step must leave
    /// them bit-identical. The line says so; different sums are an error
    /// naming each rank's.
    pub fn check_identical(&mut self, params: &Params) -> Result<String> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for id in params.ids() {
            for x in params.get(id).to_cpu()?.to_vec::<f32>()? {
                for b in x.to_bits().to_le_bytes() {
                    h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        let all = self.group.all_gather(&h.to_le_bytes())?;
        let sums: Vec<String> = all
            .iter()
            .map(|b| {
                let sum = b.get(..8).and_then(|s| s.try_into().ok());
                format!("{:016x}", sum.map_or(0, u64::from_le_bytes))
            })
            .collect();
        if sums.iter().any(|s| *s != sums[0]) {
            return Err(Error::Dist(format!(
                "parameters differ across ranks after training (checksums by rank: {})",
                sums.join(", ")
            )));
        }
        Ok(format!(
            "parameters identical on all {} ranks (checksum {})",
            sums.len(),
            sums[0]
        ))
    }
}

/// Labelled values of (va, au, expr) in `batch`: what each task's masked
/// mean divides by.
fn valid_counts(batch: &Batch) -> Result<[f32; 3]> {
    let va = batch.va.to_vec::<f32>()?;
    let au = batch.aus.to_vec::<f32>()?;
    Ok([
        va.iter().filter(|&&v| v != INVALID_VA as f32).count() as f32,
        au.iter().filter(|&&v| v >= 0.0).count() as f32,
        batch.expr_class.iter().filter(|&&e| e >= 0).count() as f32,
    ])
}

impl DataParallel {
    /// The ABAW metrics over one pass of this rank's shard of `loader`
    /// (sharded with [`Loader::sharded`]), computed from every rank's
    /// predictions gathered in dataset order, identical on every rank.
    pub fn evaluate(
        &mut self,
        loader: &Loader,
        mut infer: impl FnMut(&Tensor) -> Result<HeadOutputs>,
    ) -> Result<MtlMetrics> {
        let mut mine = RankPredictions::default();
        for batch in loader.epoch(0, 0) {
            let batch = batch?;
            if batch.is_empty() {
                continue;
            }
            let out = infer(&batch.images)?;
            mine.positions.extend(&batch.indices);
            mine.va.extend(out.va);
            mine.expr_logits.extend(out.expr);
            mine.au_logits.extend(out.au);
            mine.va_labels.extend(batch.va.to_vec::<f32>()?);
            mine.expr_labels.extend(batch.expr.to_vec::<f32>()?);
            mine.au_labels.extend(batch.aus.to_vec::<f32>()?);
        }
        let mut ranks = self
            .group
            .all_gather(&mine.to_bytes())?
            .iter()
            .map(|b| RankPredictions::from_bytes(b))
            .collect::<Result<Vec<_>>>()?;
        // Dataset indices to dense positions in dataset order (the order a
        // single process evaluates a validation set in).
        let mut all: Vec<usize> = ranks.iter().flat_map(|r| r.positions.clone()).collect();
        all.sort_unstable();
        for r in &mut ranks {
            for p in &mut r.positions {
                *p = all.partition_point(|&i| i < *p);
            }
        }
        let ls = loader.dataset().label_set;
        gather_metrics(&ranks, ls.num_expressions(), ls.num_aus())
    }
}
