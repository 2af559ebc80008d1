//! A multi-threaded prefetching loader producing NHWC batches.
//!
//! Determinism: epoch e's order comes from [`Sampler::epoch_order`]`(seed, e)`
//! and the augmentation of the sample at position p of epoch e from its own
//! stream `(seed, e, p)`. Worker w builds steps start+w, start+w+W, ... into
//! its own bounded channel and the consumer reads them round-robin, so batch
//! contents depend neither on the number of workers nor on their timing, and
//! `epoch(e, k)` yields exactly the batches an uninterrupted epoch yields from
//! step k on.

use super::abaw_annotations::{read_mtl_annotations, ReadOptions};
use super::affwild_tasks::{read_affwild_tasks, Split};
use super::augment::{augment, AugmentConfig};
use super::image::load_normalised;
use super::labels::{LabelSet, Sample, LABEL_INVALID, VA_INVALID};
use super::report::{BadReason, LoadSummary, OnBadSample};
use super::sampler::{stream, Sampler, SamplerKind};
use crate::dist::Shard;
use crate::{Error, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Annotated frames plus the `cropped_aligned` folder their images live in.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub image_root: PathBuf,
    pub samples: Vec<Sample>,
    pub label_set: LabelSet,
}

impl Dataset {
    /// Reads an ABAW multi-task annotation file whose images are under `image_root`.
    pub fn from_mtl(
        annotations: &Path,
        image_root: &Path,
        opts: &ReadOptions,
    ) -> Result<(Dataset, LoadSummary)> {
        let opts = ReadOptions {
            image_root: Some(image_root.to_path_buf()),
            ..opts.clone()
        };
        let (samples, summary) = read_mtl_annotations(annotations, &opts)?;
        let ds = Dataset {
            image_root: image_root.to_path_buf(),
            samples,
            label_set: opts.label_set,
        };
        Ok((ds, summary))
    }

    /// Reads the Aff-Wild2 per-task folders under `tasks_root` for `split`,
    /// merged per frame, with images under `image_root`.
    pub fn from_affwild_tasks(
        tasks_root: &Path,
        split: Split,
        image_root: &Path,
        opts: &ReadOptions,
    ) -> Result<(Dataset, LoadSummary)> {
        let opts = ReadOptions {
            image_root: Some(image_root.to_path_buf()),
            ..opts.clone()
        };
        let (samples, summary) = read_affwild_tasks(tasks_root, split, &opts)?;
        let ds = Dataset {
            image_root: image_root.to_path_buf(),
            samples,
            label_set: opts.label_set,
        };
        Ok((ds, summary))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Square model input size; images of another size are resized.
    pub image_size: usize,
    pub workers: usize,
    /// Batches each worker may have ready ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    pub sampler: SamplerKind,
    /// Drop the last incomplete batch of an epoch (training); keep it for evaluation.
    pub drop_last: bool,
    pub augment: AugmentConfig,
    pub on_bad_sample: OnBadSample,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            image_size: 112,
            workers: 2,
            prefetch: 2,
            seed: 0,
            sampler: SamplerKind::Shuffle,
            drop_last: true,
            augment: AugmentConfig::default(),
            on_bad_sample: OnBadSample::Fail,
        }
    }
}

/// One batch. Invalid labels carry the markers the losses expect: VA -5
/// (CCC ignores), expression -1 (cross-entropy ignore index), AU -1 (BCE mask).
#[derive(Clone, Debug)]
pub struct Batch {
    pub epoch: u64,
    pub step: usize,
    /// [N, H, W, 3] f32 in [-1, 1].
    pub images: Tensor,
    /// [N, 2] valence, arousal.
    pub va: Tensor,
    /// [N] expression class as f32.
    pub expr: Tensor,
    /// The same expression classes as integers, for index-based losses.
    pub expr_class: Vec<i64>,
    /// [N, n_aus] 0/1.
    pub aus: Tensor,
    /// Dataset indices of the rows (image names: `dataset.samples[i].image`).
    pub indices: Vec<usize>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

const AUGMENT_DOMAIN: u64 = 0xA06_3E47;

struct Shared {
    dataset: Dataset,
    cfg: LoaderConfig,
    sampler: Sampler,
    /// Images skipped under `OnBadSample::Skip`, counted each time they are met.
    skipped: Mutex<LoadSummary>,
    /// This rank's slice of every batch in a data-parallel run.
    shard: Option<Shard>,
}

pub struct Loader {
    shared: Arc<Shared>,
}

impl Loader {
    pub fn new(dataset: Dataset, cfg: LoaderConfig) -> Result<Loader> {
        if cfg.batch_size == 0 || cfg.image_size == 0 || cfg.workers == 0 || cfg.prefetch == 0 {
            return Err(Error::Config(format!(
                "loader: batch_size, image_size, workers and prefetch must be > 0, found {}, {}, {}, {}",
                cfg.batch_size, cfg.image_size, cfg.workers, cfg.prefetch
            )));
        }
        if dataset.samples.is_empty() {
            return Err(Error::Config(format!(
                "loader: no samples (images under {})",
                dataset.image_root.display()
            )));
        }
        if cfg.drop_last && dataset.samples.len() < cfg.batch_size {
            // Every epoch would be empty and a training loop would spin without a step.
            return Err(Error::Config(format!(
                "loader: {} samples is fewer than batch_size {} with drop_last",
                dataset.samples.len(),
                cfg.batch_size
            )));
        }
        let ls = dataset.label_set;
        let sampler = Sampler::new(
            cfg.sampler,
            &dataset.samples,
            ls.num_expressions(),
            ls.num_aus(),
        );
        Ok(Loader {
            shared: Arc::new(Shared {
                dataset,
                cfg,
                sampler,
                skipped: Mutex::new(LoadSummary::default()),
                shard: None,
            }),
        })
    }

    pub fn dataset(&self) -> &Dataset {
        &self.shared.dataset
    }

    pub fn steps_per_epoch(&self) -> usize {
        let (n, b) = (
            self.shared.dataset.samples.len(),
            self.shared.cfg.batch_size,
        );
        if self.shared.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Starts the tally of [`Loader::skipped`] from what loading the data
    /// set dropped, so one summary holds every skip of this split.
    pub fn with_load_summary(self, summary: LoadSummary) -> Loader {
        *self.shared.skipped.lock().expect("loader summary lock") = summary;
        self
    }

    /// Samples skipped when the data set was loaded (see
    /// [`Loader::with_load_summary`]) and images skipped by batches since
    /// (only under `OnBadSample::Skip`).
    pub fn skipped(&self) -> LoadSummary {
        self.shared
            .skipped
            .lock()
            .expect("loader summary lock")
            .clone()
    }

    /// This loader with every batch cut to `shard`'s slice of it (the
    /// batch size stays the global one): the union of the ranks' batches
    /// of a step is the single-process batch, with the same augmentation,
    /// since each sample's random stream is keyed by its global position.
    pub fn sharded(self, shard: Shard) -> Result<Loader> {
        let (batch_size, _) = self.batching();
        if shard.batch_size != batch_size {
            return Err(Error::Config(format!(
                "shard of a global batch of {} over a loader batching {batch_size}",
                shard.batch_size
            )));
        }
        let shared = Arc::try_unwrap(self.shared)
            .map_err(|_| Error::Config("loader: sharded while an epoch is open".into()))?;
        Ok(Loader {
            shared: Arc::new(Shared {
                shard: Some(shard),
                ..shared
            }),
        })
    }

    /// The batch size and whether an epoch drops its last partial batch.
    pub fn batching(&self) -> (usize, bool) {
        (self.shared.cfg.batch_size, self.shared.cfg.drop_last)
    }

    /// Dataset indices in the order epoch `epoch` visits them: the one
    /// order this loader's batches (and every rank's shard of them) follow.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        self.shared.sampler.epoch_order(self.shared.cfg.seed, epoch)
    }

    /// Iterates epoch `epoch` from step `start_step` (0 for a fresh epoch; the
    /// saved step when resuming). Workers start at once and stop when the
    /// iterator is dropped.
    pub fn epoch(&self, epoch: u64, start_step: usize) -> EpochIter {
        let steps = self.steps_per_epoch();
        let order = Arc::new(self.epoch_order(epoch));
        let workers = self
            .shared
            .cfg
            .workers
            .min(steps.saturating_sub(start_step))
            .max(1);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(self.shared.cfg.prefetch);
            let shared = self.shared.clone();
            let order = order.clone();
            handles.push(std::thread::spawn(move || {
                let mut scratch = Vec::new();
                for step in (start_step + w..steps).step_by(workers) {
                    let batch = build_batch(&shared, &order, epoch, step, &mut scratch);
                    let failed = batch.is_err();
                    // A closed channel means the iterator was dropped: stop quietly.
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            }));
            receivers.push(rx);
        }
        EpochIter {
            receivers,
            handles,
            start: start_step,
            next: start_step,
            end: steps,
        }
    }
}

pub struct EpochIter {
    receivers: Vec<Receiver<Result<Batch>>>,
    handles: Vec<JoinHandle<()>>,
    start: usize,
    next: usize,
    end: usize,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.end {
            return None;
        }
        let rx = &self.receivers[(self.next - self.start) % self.receivers.len()];
        let item = match rx.recv() {
            Ok(b) => b,
            Err(_) => Err(Error::Config(
                "loader: worker thread stopped unexpectedly".into(),
            )),
        };
        // After an error the epoch is over: later steps would be missing a batch.
        self.next = if item.is_err() {
            self.end
        } else {
            self.next + 1
        };
        Some(item)
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Closing the channels makes blocked workers' sends fail, so they exit.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn build_batch(
    shared: &Shared,
    order: &[usize],
    epoch: u64,
    step: usize,
    scratch: &mut Vec<f32>,
) -> Result<Batch> {
    let cfg = &shared.cfg;
    let ds = &shared.dataset;
    let size = cfg.image_size;
    let n_aus = ds.label_set.num_aus();
    let mut lo = step * cfg.batch_size;
    let mut hi = (lo + cfg.batch_size).min(order.len());
    if let Some(shard) = &shared.shard {
        let per = shard.per_rank_batch();
        lo = (lo + shard.rank * per).min(hi);
        hi = (lo + per).min(hi);
    }
    let mut images = Vec::with_capacity((hi - lo) * size * size * 3);
    let (mut va, mut expr, mut expr_class, mut aus, mut indices) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (pos, &idx) in order.iter().enumerate().take(hi).skip(lo) {
        let s = &ds.samples[idx];
        let mut img = match load_normalised(&ds.image_root.join(&s.image), size as u32) {
            Ok(img) => img,
            Err(e) => {
                let err = Error::Parse {
                    file: s.origin.file.to_path_buf(),
                    line: s.origin.line,
                    field: "image".into(),
                    msg: e.0,
                };
                let mut sum = shared.skipped.lock().expect("loader summary lock");
                sum.bad(cfg.on_bad_sample, BadReason::UndecodableImage, err)?;
                continue;
            }
        };
        let mut rng = stream(cfg.seed, AUGMENT_DOMAIN, epoch, pos as u64);
        augment(&cfg.augment, &mut img, size, &mut rng, scratch);
        images.extend_from_slice(&img);
        va.extend_from_slice(&s.va.unwrap_or([VA_INVALID; 2]));
        let e = s.expr.map_or(LABEL_INVALID as i64, i64::from);
        expr.push(e as f32);
        expr_class.push(e);
        match &s.aus {
            Some(a) => aus.extend(a.iter().map(|&v| v as f32)),
            None => aus.extend(std::iter::repeat_n(LABEL_INVALID as f32, n_aus)),
        }
        indices.push(idx);
    }
    let n = indices.len();
    Ok(Batch {
        epoch,
        step,
        images: Tensor::from_vec(images, vec![n, size, size, 3])?,
        va: Tensor::from_vec(va, vec![n, 2])?,
        expr: Tensor::from_vec(expr, vec![n])?,
        expr_class,
        aus: Tensor::from_vec(aus, vec![n, n_aus])?,
        indices,
    })
}
