//! Loader throughput (images/s) from a synthetic set on disk, augmentation
//! on, at 112x112 and 64x64, for 1 and 2 worker threads.
//!
//! Run: `cargo bench --bench loader`

use mtaffect::data::synth::{generate, SynthConfig};
use mtaffect::data::{Dataset, Loader, LoaderConfig, ReadOptions};
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("mtaffect-bench-loader-{}", std::process::id()));
    let cfg = SynthConfig {
        videos: 20,
        frames_per_video: 100,
        val_fraction: 0.0,
        ..Default::default()
    };
    generate(&cfg, &dir).unwrap();
    let (ds, summary) = Dataset::from_mtl(
        &dir.join("training_set_annotations.txt"),
        &dir.join("cropped_aligned"),
        &ReadOptions::default(),
    )
    .unwrap();
    println!("data set: {summary} (112x112 JPEGs on disk)");
    for size in [112usize, 64] {
        for workers in [1usize, 2] {
            let loader = Loader::new(
                ds.clone(),
                LoaderConfig {
                    batch_size: 64,
                    image_size: size,
                    workers,
                    prefetch: 4,
                    ..Default::default()
                },
            )
            .unwrap();
            let t = Instant::now();
            let mut n = 0;
            for b in loader.epoch(0, 0) {
                n += b.unwrap().len();
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "{size}x{size}, {workers} worker(s): {n} images in {s:.2} s = {:.0} images/s",
                n as f64 / s
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
