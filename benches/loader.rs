//! Loader throughput (images/s) from a synthetic set on disk, augmentation
//! on, at 112x112 and 64x64, for 1 and 2 worker threads.
//!
//! Run: `cargo bench --bench loader`

use mtaffect::data::synth::{generate, SynthConfig};
use mtaffect::data::{Dataset, Loader, LoaderConfig, ReadOptions};
use std::time::Instant;

/// Process CPU time (user + system) in seconds, from /proc (Linux; USER_HZ = 100).
/// On a shared machine wall-clock rates swing with other users' load; CPU time
/// per image does not, so both are printed.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    f.get(11)
        .zip(f.get(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

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
            let (t, c) = (Instant::now(), cpu_seconds());
            let mut n = 0;
            for b in loader.epoch(0, 0) {
                n += b.unwrap().len();
            }
            let s = t.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - c;
            println!(
                "{size}x{size}, {workers} worker(s): {n} images: wall {s:.2} s = {:.0} images/s | cpu {cpu:.2} s = {:.0} images per cpu-second",
                n as f64 / s,
                n as f64 / cpu.max(1e-9)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
