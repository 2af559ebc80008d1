//! What a run's size-like settings cost in memory, checked against what the
//! machine holds before anything is allocated: the host's `MemAvailable`,
//! and on a GPU the device's free memory. A setting that cannot fit is
//! refused with the keys to lower, instead of an allocation failure (an
//! abort) or a panic deep inside a trainer.
//!
//! What is counted, per trainer: the model's parameters with their
//! gradients and optimizer moments; the values a training step keeps for
//! the backward pass (`model::Footprint`, a lower bound per sample); the
//! batches the loader threads hold ahead of the step. There is no safety
//! factor: every count is a lower bound, so a refusal is always right, and
//! settings that pass can still run out of memory (a GPU allocation then
//! fails with an error naming `data.batch_size`).

use super::gan::GanConfig;
use super::temporal::TemporalConfig;
use super::{DataConfig, OptimConfig, TrainConfig};
use crate::model::footprint::product;
use crate::model::BackboneConfig;
use crate::{Device, Error, Result};
use std::fmt::Write;

/// Batches each loader thread may hold ready ahead of the step.
pub const PREFETCH: usize = 2;

/// Where an item of memory lives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Host memory whatever the device (loader batches).
    Host,
    /// Wherever the model runs: the host on the CPU, the GPU on CUDA.
    Model,
}

struct Item {
    what: &'static str,
    bytes: u128,
    place: Place,
    /// `key = value` of every setting the item grows with.
    keys: Vec<(String, String)>,
}

/// The memory a run's settings need, item by item.
#[derive(Default)]
struct Budget {
    items: Vec<Item>,
}

impl Budget {
    fn add(
        &mut self,
        place: Place,
        what: &'static str,
        bytes: u128,
        keys: &[(&'static str, &dyn std::fmt::Display)],
    ) {
        let keys = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.add_keys(place, what, bytes, keys);
    }

    /// [`Budget::add`] with keys whose names are built at run time.
    fn add_keys(
        &mut self,
        place: Place,
        what: &'static str,
        bytes: u128,
        keys: Vec<(String, String)>,
    ) {
        self.items.push(Item {
            what,
            bytes,
            place,
            keys,
        });
    }

    /// Refuses the settings when what they need on the host, or on the GPU
    /// the model runs on, is more than is free there; the message lists the
    /// items, largest first, and names the keys of the largest to lower.
    fn check(&self, device: &Device) -> Result<()> {
        let on_host = |i: &&Item| i.place == Place::Host || matches!(device, Device::Cpu);
        if let Some(avail) = available_memory() {
            self.fit(on_host, avail as u128, "memory", "available (MemAvailable)")?;
        }
        if let Device::Cuda(dev) = device {
            let free = dev.free_memory()?;
            let place = format!("memory on cuda:{}", dev.ordinal());
            self.fit(
                |i: &&Item| i.place == Place::Model,
                free as u128,
                &place,
                "free",
            )?;
        }
        Ok(())
    }

    fn fit(&self, on: impl Fn(&&Item) -> bool, avail: u128, place: &str, free: &str) -> Result<()> {
        let mut items: Vec<&Item> = self.items.iter().filter(on).collect();
        let need = items
            .iter()
            .fold(0u128, |acc, i| acc.saturating_add(i.bytes));
        if need <= avail {
            return Ok(());
        }
        items.sort_by_key(|i| std::cmp::Reverse(i.bytes));
        let mut msg = format!(
            "these settings need at least {} of {place} and {} is {free}:",
            bytes(need),
            bytes(avail)
        );
        for i in &items {
            let keys: Vec<String> = i.keys.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            let _ = write!(msg, " {} {} ({});", bytes(i.bytes), i.what, keys.join(", "));
        }
        let lower: Vec<&str> = items[0].keys.iter().map(|(k, _)| k.as_str()).collect();
        let _ = write!(msg, " lower {}", lower.join(" or "));
        Err(Error::Config(msg))
    }
}

/// `MemAvailable` of `/proc/meminfo`; `None` where there is no such file
/// (the host check is then skipped).
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// `n` bytes for people: B, KiB ... EiB, then powers of ten.
fn bytes(n: u128) -> String {
    let mut v = n as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"] {
        if v < 1024.0 {
            return if unit == "B" {
                format!("{n} B")
            } else {
                format!("{v:.2} {unit}")
            };
        }
        v /= 1024.0;
    }
    format!("{:.2e} B", n as f64)
}

/// The loader threads a run starts for `data.workers`: no more than the
/// machine's hardware threads, since decoding is CPU-bound and batches do
/// not depend on the thread count; more would only hold more batches.
pub fn loader_threads(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    workers.clamp(1, cores)
}

/// f32 copies of each parameter a training step holds: the weights, their
/// gradients, and the optimizer's moments (Adam two, SGD one with momentum).
fn copies(optim: &OptimConfig) -> u128 {
    match optim {
        OptimConfig::Adam(_) => 4,
        OptimConfig::Sgd(c) if c.momentum != 0.0 => 3,
        OptimConfig::Sgd(_) => 2,
    }
}

/// What a batch of `data.batch_size` images of `data.image_size` pixels
/// costs: the training step's activations, `per_image` values each, and the
/// batches the loader threads hold (each builds one and keeps up to
/// [`PREFETCH`] ready, NHWC f32).
fn image_batches(b: &mut Budget, d: &DataConfig, per_image: u128) {
    let keys: [(&'static str, &dyn std::fmt::Display); 2] = [
        ("data.batch_size", &d.batch_size),
        ("data.image_size", &d.image_size),
    ];
    b.add(
        Place::Model,
        "training activations",
        product(&[d.batch_size, 4]).saturating_mul(per_image),
        &keys,
    );
    let threads = loader_threads(d.workers);
    let bytes = product(&[
        threads,
        PREFETCH + 1,
        d.batch_size,
        d.image_size,
        d.image_size,
        3,
        4,
    ]);
    b.add(
        Place::Host,
        "loader batches",
        bytes,
        &[("data.workers", &threads), keys[0], keys[1]],
    );
}

/// The settings that size a backbone, as `section.backbone.key` and value.
fn backbone_keys(backbone: &BackboneConfig, section: &str) -> Vec<(String, String)> {
    backbone
        .size_keys()
        .into_iter()
        .map(|(k, v)| (format!("{section}.backbone.{k}"), v))
        .collect()
}

/// A frame run: the model's parameters and training activations for a
/// batch of `data.batch_size` images of `data.image_size` pixels, and the
/// loader's batches. Evaluation uses the same batches without a tape, so
/// training bounds it.
pub fn check_frame(cfg: &TrainConfig, device: &Device) -> Result<()> {
    let fp = cfg.model.backbone.footprint(cfg.data.image_size)?;
    let mut b = Budget::default();
    image_batches(&mut b, &cfg.data, fp.activations);
    b.add_keys(
        Place::Model,
        "parameters, gradients and optimizer state",
        fp.params.saturating_mul(4 * copies(&cfg.optim)),
        backbone_keys(&cfg.model.backbone, "model"),
    );
    b.check(device)
}

/// A GAN run: both players' parameters (Adam, plus the generator's weight
/// average) and a discriminator step's activations (a real and a generated
/// batch) with the generator's, and the loader's batches.
pub fn check_gan(cfg: &GanConfig, device: &Device) -> Result<()> {
    let disc = cfg.discriminator.backbone.footprint(cfg.data.image_size)?;
    let gen = cfg.generator.footprint()?;
    let mut b = Budget::default();
    let per_image = disc
        .activations
        .saturating_mul(2)
        .saturating_add(gen.activations);
    image_batches(&mut b, &cfg.data, per_image);
    // Both players train with Adam: weights, gradients and two moments,
    // and the generator's weight average besides.
    b.add_keys(
        Place::Model,
        "discriminator parameters and optimizer state",
        disc.params.saturating_mul(4 * 4),
        backbone_keys(&cfg.discriminator.backbone, "discriminator"),
    );
    let g = &cfg.generator;
    b.add(
        Place::Model,
        "generator parameters, optimizer state and average",
        gen.params.saturating_mul(4 * 5),
        &[
            ("generator.channels", &g.channels),
            ("generator.z_dim", &g.z_dim),
        ],
    );
    b.check(device)
}

/// A temporal run on features of `in_features` values per frame: the
/// model's parameters, a training step's activations over `data.lanes`
/// chunks of `data.chunk` frames, and the input batches of training and
/// evaluation (features and labels per frame, and the chunk plan's lanes).
pub fn check_temporal(cfg: &TemporalConfig, in_features: usize, device: &Device) -> Result<()> {
    let (d, m) = (&cfg.data, &cfg.model);
    let fp = m.footprint(in_features);
    let mut b = Budget::default();
    b.add(
        Place::Model,
        "training activations",
        product(&[d.lanes, d.chunk, 4]).saturating_mul(fp.activations),
        &[
            ("data.lanes", &d.lanes),
            ("data.chunk", &d.chunk),
            ("model.d_model", &m.d_model),
            ("model.shared_layers", &m.shared_layers),
            ("model.task_layers", &m.task_layers),
        ],
    );
    b.add(
        Place::Model,
        "parameters, gradients and optimizer state",
        fp.params.saturating_mul(4 * copies(&cfg.optim)),
        &[
            ("model.d_model", &m.d_model),
            ("model.shared_layers", &m.shared_layers),
            ("model.task_layers", &m.task_layers),
            ("model.d_ff", &m.d_ff),
            ("model.head_hidden", &m.head_hidden),
        ],
    );
    // Features, VA, AUs and the expression per frame; a list per lane.
    let per_frame = in_features.saturating_add(3 + m.n_aus);
    for (what, lanes, key) in [
        ("training batch", d.lanes, "data.lanes"),
        ("evaluation batch", d.eval_lanes, "data.eval_lanes"),
    ] {
        let bytes = product(&[lanes, d.chunk, per_frame, 4]).saturating_add(product(&[lanes, 24]));
        b.add(
            Place::Host,
            what,
            bytes,
            &[(key, &lanes), ("data.chunk", &d.chunk)],
        );
    }
    b.check(device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ConfigFile;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 29), "1.50 GiB");
        assert!(bytes(u128::MAX).ends_with("e38 B"), "{}", bytes(u128::MAX));
    }

    #[test]
    fn the_shipped_defaults_fit_and_absurd_sizes_name_their_keys() {
        check_frame(&TrainConfig::default(), &Device::Cpu).unwrap();
        let huge = TrainConfig::default()
            .with_overrides(&["data.image_size=1000000".into()])
            .unwrap();
        let e = check_frame(&huge, &Device::Cpu).unwrap_err().to_string();
        assert!(
            e.contains("lower data.batch_size or data.image_size")
                && e.contains("data.image_size = 1000000"),
            "{e}"
        );
        let wide = TrainConfig::default()
            .with_overrides(&["model.backbone.width_mult=1e12".into()])
            .unwrap();
        let e = check_frame(&wide, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("lower model.backbone.width_mult"), "{e}");

        let mut vit = TrainConfig::default();
        vit.model.backbone = crate::model::VitConfig {
            width: Some(1 << 20),
            heads: Some(1),
            ..Default::default()
        }
        .into();
        let e = check_frame(&vit, &Device::Cpu).unwrap_err().to_string();
        assert!(
            e.contains("model.backbone.width = 1048576")
                && e.contains("lower model.backbone.preset or model.backbone.width"),
            "{e}"
        );

        check_gan(&GanConfig::default(), &Device::Cpu).unwrap();
        check_temporal(&TemporalConfig::default(), 512, &Device::Cpu).unwrap();
        for (set, needle) in [
            ("data.chunk=1000000000000", "data.chunk = 1000000000000"),
            (
                "model.shared_layers=1000000000000",
                "or model.shared_layers",
            ),
        ] {
            let cfg = TemporalConfig::default()
                .with_overrides(&[set.into()])
                .unwrap();
            let e = check_temporal(&cfg, 512, &Device::Cpu)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn loader_threads_stay_within_the_machine() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(loader_threads(100_000), cores);
        assert_eq!(loader_threads(1), 1);
    }
}
