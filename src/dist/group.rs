//! The collectives of a data-parallel run. Small host-side ones (loss
//! counts and values, evaluation predictions, checksums) go over the TCP
//! control channel of the rendezvous, star-shaped through rank 0: rank 0
//! receives every rank's bytes, combines them in rank order and sends every
//! rank the same result, so a sum is bit-identical on all ranks. Gradients
//! of a CPU run take the same path, bucket by bucket (the role gloo plays
//! beside NCCL in PyTorch; it is what lets the distributed runner be tested
//! without a GPU); gradients on a GPU always go through NCCL
//! ([`super::nccl`]). A failure reported by any rank arrives in place of the
//! data a collective waits for, so every rank stops with that rank's message.

use super::rendezvous::{io_err, read_frame, write_blob, Frame};
use super::{BucketPlan, Control};
use crate::{Error, Gradients, Result, Tensor};
use std::net::TcpStream;
use std::time::Duration;

/// How long a collective waits for a peer that neither sends nor fails (a
/// rank still writing a checkpoint or evaluating is well inside this).
pub const COLLECTIVE_TIMEOUT: Duration = Duration::from_secs(600);

/// Largest collective payload per rank (a gradient bucket is 25 MiB).
const MAX_COLLECTIVE: usize = 1 << 30;

/// This process's place in the job and its host collectives.
pub struct ProcessGroup {
    control: Control,
}

impl ProcessGroup {
    pub fn new(control: Control) -> ProcessGroup {
        ProcessGroup { control }
    }

    pub fn rank(&self) -> usize {
        self.control.rank
    }

    pub fn world_size(&self) -> usize {
        self.control.world_size
    }

    /// Waits for every rank (or fails with a rank's reported failure).
    pub fn barrier(&mut self) -> Result<()> {
        self.control.barrier(COLLECTIVE_TIMEOUT)
    }

    /// Tells every rank that this one failed with `msg` (best effort).
    pub fn fail(&mut self, msg: &str) {
        self.control.fail(msg);
    }

    /// Every rank's `bytes`, indexed by rank, on every rank.
    pub fn all_gather(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let parts = self.gather(bytes)?;
        let mut flat = Vec::new();
        if let Some(parts) = &parts {
            for p in parts {
                flat.extend((p.len() as u64).to_le_bytes());
                flat.extend(p);
            }
        }
        let flat = self.broadcast(flat)?;
        split_parts(&flat, self.world_size())
    }

    /// Sums `data` over ranks in place, in rank order on rank 0: every
    /// rank ends with the same bits.
    pub fn all_reduce_sum(&mut self, data: &mut [f32]) -> Result<()> {
        let mine: Vec<u8> = bytemuck::cast_slice(data).to_vec();
        let sum = match self.gather(&mine)? {
            Some(parts) => {
                let mut acc = vec![0f32; data.len()];
                for (r, p) in parts.iter().enumerate() {
                    if p.len() != mine.len() {
                        let e = Error::Dist(format!(
                            "all-reduce: rank {r} sent {} bytes, rank 0 has {}",
                            p.len(),
                            mine.len()
                        ));
                        self.fail(&e.to_string());
                        return Err(e);
                    }
                    let v: Vec<f32> = bytemuck::pod_collect_to_vec(p);
                    for (a, x) in acc.iter_mut().zip(v) {
                        *a += x;
                    }
                }
                bytemuck::cast_slice(&acc).to_vec()
            }
            None => Vec::new(),
        };
        let sum = self.broadcast(sum)?;
        if sum.len() != mine.len() {
            return Err(Error::Dist(format!(
                "all-reduce: rank 0 sent {} bytes for {} of this rank's",
                sum.len(),
                mine.len()
            )));
        }
        data.copy_from_slice(&bytemuck::pod_collect_to_vec::<u8, f32>(&sum));
        Ok(())
    }

    /// The mean over ranks of host gradients, one all-reduce per bucket of
    /// `plan`. A parameter without a gradient here contributes zeros and
    /// stays without one (every rank runs the same graph, so the same
    /// parameters have gradients everywhere).
    pub fn average_host_gradients(
        &mut self,
        grads: &mut Gradients,
        plan: &BucketPlan,
    ) -> Result<()> {
        let inv = 1.0 / self.world_size() as f32;
        for b in &plan.buckets {
            let mut flat = Vec::with_capacity(b.bytes / 4);
            let mut sizes = Vec::with_capacity(b.params.len());
            for (&id, w) in b.params.iter().zip(bucket_widths(b)) {
                match grads.get(id) {
                    Some(g) => flat.extend(g.to_vec::<f32>()?),
                    None => flat.extend(std::iter::repeat_n(0.0, w)),
                }
                sizes.push(w);
            }
            self.all_reduce_sum(&mut flat)?;
            let mut at = 0;
            for (&id, w) in b.params.iter().zip(sizes) {
                if let Some(g) = grads.get_mut(id) {
                    let mean = flat[at..at + w].iter().map(|x| x * inv).collect();
                    *g = Tensor::from_vec(mean, g.shape().clone())?;
                }
                at += w;
            }
        }
        Ok(())
    }

    /// Rank 0: every rank's bytes by rank; other ranks: `None` once theirs
    /// are sent.
    fn gather(&mut self, bytes: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        if self.rank() != 0 {
            let s = &mut self.control.streams[0];
            write_blob(s, b"D", bytes).map_err(|e| io_err("collective: rank 0 is gone", e))?;
            return Ok(None);
        }
        let mut parts = vec![bytes.to_vec()];
        for r in 1..self.world_size() {
            let s = &mut self.control.streams[r - 1];
            match receive(s, COLLECTIVE_TIMEOUT, &format!("rank {r}")) {
                Ok(p) => parts.push(p),
                Err(e) => {
                    self.fail(&e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(Some(parts))
    }

    /// Rank 0 sends `bytes` to every rank; every rank returns rank 0's.
    pub fn broadcast(&mut self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        if self.rank() != 0 {
            return receive(&mut self.control.streams[0], COLLECTIVE_TIMEOUT, "rank 0");
        }
        for s in &mut self.control.streams {
            write_blob(s, b"D", &bytes).map_err(|e| io_err("collective: a rank is gone", e))?;
        }
        Ok(bytes)
    }
}

/// Element counts of a bucket's gradients (f32), from its byte offsets.
fn bucket_widths(b: &super::Bucket) -> Vec<usize> {
    let ends = b.offsets.iter().skip(1).copied().chain([b.start + b.bytes]);
    b.offsets
        .iter()
        .zip(ends)
        .map(|(lo, hi)| (hi - lo) / 4)
        .collect()
}

/// One data frame from `peer`, or the failure it reported instead.
fn receive(s: &mut TcpStream, timeout: Duration, peer: &str) -> Result<Vec<u8>> {
    s.set_read_timeout(Some(timeout))
        .map_err(|e| io_err("collective", e))?;
    match read_frame(s, MAX_COLLECTIVE) {
        Ok(Frame::Data(v)) => Ok(v),
        Ok(Frame::Barrier) => Err(Error::Dist(format!(
            "collective: {peer} is at a barrier, this rank at a collective"
        ))),
        Err(Some(e)) => Err(e),
        Err(None) => Err(Error::Dist(format!(
            "{peer} sent nothing within {timeout:?} or exited without a message"
        ))),
    }
}

/// Splits `len:u64 bytes` records into `n` parts.
fn split_parts(mut flat: &[u8], n: usize) -> Result<Vec<Vec<u8>>> {
    let mut parts = Vec::with_capacity(n);
    for r in 0..n {
        let bad = || Error::Dist(format!("all-gather: truncated part of rank {r}"));
        let len = flat.get(..8).ok_or_else(bad)?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let part = flat.get(8..8 + len).ok_or_else(bad)?;
        parts.push(part.to_vec());
        flat = &flat[8 + len..];
    }
    Ok(parts)
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
