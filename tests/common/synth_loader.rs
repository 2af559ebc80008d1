//! A small synthetic face set generated into a folder and its training
//! loader (shuffled, unaugmented, last partial batch dropped), and the
//! check that a small backbone trained on it lowers the loss: what the
//! tests that train a backbone for a few steps share.

use mtaffect::data::synth::{generate, SynthConfig};
use mtaffect::data::{AugmentConfig, Dataset, Loader, LoaderConfig, ReadOptions};
use mtaffect::model::{BackboneConfig, NeckKind, NetConfig};
use mtaffect::optim::{AdamConfig, LrSchedule};
use mtaffect::train::{OptimConfig, TrainConfig, Trainer};
use std::path::Path;

/// Generates `synth` into `dir` (emptied first) and returns the loader of
/// its training annotations, batches of `batch` images, data order `seed`.
pub fn synthetic_train_loader(dir: &Path, synth: &SynthConfig, batch: usize, seed: u64) -> Loader {
    let _ = std::fs::remove_dir_all(dir);
    generate(synth, dir).unwrap();
    let (ds, _) = Dataset::from_mtl(
        &dir.join("training_set_annotations.txt"),
        &dir.join("cropped_aligned"),
        &ReadOptions::default(),
    )
    .unwrap();
    Loader::new(
        ds,
        LoaderConfig {
            batch_size: batch,
            image_size: synth.image_size,
            workers: 2,
            drop_last: true,
            augment: AugmentConfig::off(),
            seed,
            ..LoaderConfig::default()
        },
    )
    .unwrap()
}

/// A small `backbone` learning the synthetic faces on CPU: under `neck`,
/// Adam at a constant 3e-3, batches of 12 from 4 videos of 12 frames at
/// `size` pixels, 10 passes (at least 30 steps). Asserts that the mean loss
/// of the last 4 steps is below 0.8 times that of the first 4; returns the
/// trainer.
#[allow(dead_code)] // The ViT's test steps a runner task instead.
pub fn learns_the_synthetic_faces(
    backbone: BackboneConfig,
    neck: NeckKind,
    size: usize,
) -> Trainer {
    let dir = std::env::temp_dir().join(format!("mtaffect-learns-{}", std::process::id()));
    let synth = SynthConfig {
        videos: 4,
        frames_per_video: 12,
        image_size: size,
        seed: 5,
        val_fraction: 0.0,
        ..Default::default()
    };
    let mut cfg = TrainConfig::default();
    cfg.data.image_size = size;
    cfg.data.batch_size = 12;
    cfg.model = NetConfig {
        backbone,
        neck,
        dropout: 0.0,
        ..NetConfig::default()
    };
    cfg.optim = OptimConfig::Adam(AdamConfig::default());
    cfg.schedule = LrSchedule::constant(3e-3);
    let loader = synthetic_train_loader(&dir, &synth, cfg.data.batch_size, 3);
    let mut t = Trainer::new(&cfg).unwrap();
    let mut losses = Vec::new();
    for epoch in 0..10 {
        for b in loader.epoch(epoch, 0) {
            losses.push(t.step(&b.unwrap()).unwrap().loss);
        }
    }
    let k = 4;
    let first: f64 = losses[..k].iter().sum::<f64>() / k as f64;
    let last: f64 = losses[losses.len() - k..].iter().sum::<f64>() / k as f64;
    assert!(
        losses.len() >= 30 && last < 0.8 * first,
        "{}: loss did not fall enough over {} steps: {first:.3} -> {last:.3}",
        cfg.model.backbone,
        losses.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
    t
}
