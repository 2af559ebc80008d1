//! A small synthetic face set generated into a folder and its training
//! loader (shuffled, unaugmented, last partial batch dropped): what the
//! tests that train a backbone for a few steps share.

use mtaffect::data::synth::{generate, SynthConfig};
use mtaffect::data::{AugmentConfig, Dataset, Loader, LoaderConfig, ReadOptions};
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
