//! Synthetic face throughput at 112x112 (and 64x64): render only, render +
//! JPEG encode, and the full `generate` to disk. Threads = rayon's pool
//! (RAYON_NUM_THREADS, default all cores).
//!
//! Run: `cargo bench --bench synth`

use mtaffect::data::synth::{encode_jpeg, generate, SynthConfig, VideoPlan};
use rayon::prelude::*;
use std::time::Instant;

fn rate(label: &str, faces: usize, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    let s = t.elapsed().as_secs_f64();
    println!(
        "{label:<40} {faces:>6} faces in {s:>6.2} s = {:>8.0} faces/s",
        faces as f64 / s
    );
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("rayon threads: {threads}");
    for size in [112usize, 64] {
        let cfg = SynthConfig {
            videos: 40,
            frames_per_video: 100,
            image_size: size,
            ..Default::default()
        };
        let faces = cfg.videos * cfg.frames_per_video;
        let plans: Vec<VideoPlan> = (0..cfg.videos).map(|v| VideoPlan::new(&cfg, v)).collect();
        rate(&format!("render only, {size}x{size}"), faces, || {
            let sum: u64 = plans
                .par_iter()
                .map(|p| {
                    let mut acc = 0u64;
                    p.render(size, |_, px| {
                        acc += px[px.len() / 2] as u64;
                        Ok(())
                    })
                    .unwrap();
                    acc
                })
                .sum();
            std::hint::black_box(sum);
        });
        rate(
            &format!("render + JPEG encode, {size}x{size}"),
            faces,
            || {
                let bytes: usize = plans
                    .par_iter()
                    .map(|p| {
                        let mut n = 0;
                        p.render(size, |_, px| {
                            n += encode_jpeg(px, size, p.scene.jpeg_quality)?.len();
                            Ok(())
                        })
                        .unwrap();
                        n
                    })
                    .sum();
                std::hint::black_box(bytes);
            },
        );
        let out = std::env::temp_dir().join(format!(
            "mtaffect-bench-synth-{}-{size}",
            std::process::id()
        ));
        rate(&format!("generate() to disk, {size}x{size}"), faces, || {
            generate(&cfg, &out).unwrap();
        });
        let _ = std::fs::remove_dir_all(&out);
    }
}
