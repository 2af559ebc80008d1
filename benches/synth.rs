//! Synthetic face throughput at 112x112 (and 64x64): render only, render +
//! JPEG encode, and the full `generate` to disk. Threads = rayon's pool
//! (RAYON_NUM_THREADS, default all cores).
//!
//! Run: `cargo bench --bench synth`

use mtaffect::data::synth::{encode_jpeg, generate, SynthConfig, VideoPlan};
use rayon::prelude::*;
use std::time::Instant;

/// Process CPU time (user + system) in seconds, from /proc (Linux; USER_HZ = 100).
/// On a shared machine wall-clock rates swing with other users' load; CPU time
/// per face does not, so both are printed.
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

fn rate(label: &str, faces: usize, f: impl FnOnce()) {
    let (t, c) = (Instant::now(), cpu_seconds());
    f();
    let s = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c;
    println!(
        "{label:<34} {faces} faces: wall {s:.2} s = {:.0} faces/s | cpu {cpu:.2} s = {:.0} faces per cpu-second",
        faces as f64 / s,
        faces as f64 / cpu.max(1e-9)
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
