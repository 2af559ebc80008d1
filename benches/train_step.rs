//! The CPU training step exactly as a run config trains it: `Trainer::step`
//! (forward, masked multi-task loss, backward, gradient clipping, the
//! configured optimizer and schedule, dropout) on a random batch shaped like
//! the config's data, a quarter of each task's labels invalid as in real
//! batches. Reports the median of the timed steps after warm-up, with the
//! phases (forward, backward, update) and the arithmetic rate of the
//! convolutions and GEMMs.
//!
//! ```text
//! cargo bench --bench train_step                      # configs/synthetic-cpu.toml
//! cargo bench --bench train_step -- --config F --set model.backbone.depth=18 \
//!     --warmup 5 --steps 20 --json
//! ```
//! Threads: rayon's pool (`RAYON_NUM_THREADS`, default all cores).
//! `scripts/cpu_side_by_side.py` runs this beside a PyTorch twin.

use mtaffect::data::Batch;
use mtaffect::train::{ConfigFile, TrainConfig, Trainer};
use mtaffect::{DType, Rng, Tensor};
use std::path::PathBuf;
use std::time::Instant;

struct Args {
    config: PathBuf,
    sets: Vec<String>,
    warmup: usize,
    steps: usize,
    json: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        config: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/synthetic-cpu.toml"
        )),
        sets: Vec::new(),
        warmup: 5,
        steps: 20,
        json: false,
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => a.config = value().into(),
            "--set" => a.sets.push(value()),
            "--warmup" => a.warmup = value().parse().expect("--warmup: a count"),
            "--steps" => a.steps = value().parse().expect("--steps: a count"),
            "--json" => a.json = true,
            other => panic!(
                "unknown argument {other}: --config F, --set k=v, --warmup N, --steps N, --json"
            ),
        }
    }
    assert!(a.steps > 0, "--steps must be at least 1");
    a
}

/// A batch shaped like the config's: images in [-1, 1]; rows 0..n/4 have no
/// VA, n/4..n/2 no AUs, n/2..3n/4 no expression (the invalid markers the
/// loaders write), as scripts/torch_bench.py's batches do.
fn random_batch(n: usize, size: usize, n_aus: usize, rng: &mut Rng) -> Batch {
    let images = Tensor::uniform([n, size, size, 3], -1.0, 1.0, DType::F32, rng);
    let mut va = Tensor::uniform([n, 2], -1.0, 1.0, DType::F32, rng).to_f64_vec();
    va[..n / 4 * 2].fill(-5.0);
    let mut aus: Vec<f64> = (0..n * n_aus)
        .map(|i| ((i * 7) % 3 == 0) as u8 as f64)
        .collect();
    aus[n / 4 * n_aus..n / 2 * n_aus].fill(-1.0);
    let expr_class: Vec<i64> = (0..n)
        .map(|i| {
            if (n / 2..3 * n / 4).contains(&i) {
                -1
            } else {
                (i % 8) as i64
            }
        })
        .collect();
    let expr: Vec<f64> = expr_class.iter().map(|&c| c as f64).collect();
    Batch {
        epoch: 0,
        step: 0,
        images,
        va: Tensor::from_f64s(&va, [n, 2], DType::F32).unwrap(),
        expr: Tensor::from_f64s(&expr, [n], DType::F32).unwrap(),
        expr_class,
        aus: Tensor::from_f64s(&aus, [n, n_aus], DType::F32).unwrap(),
        indices: (0..n).collect(),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    let a = parse_args();
    let cfg = TrainConfig::load(&a.config)
        .and_then(|c| c.with_overrides(&a.sets))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.train.device,
        "cpu",
        "this bench times the CPU step; {} trains on {}",
        a.config.display(),
        cfg.train.device
    );
    let mut trainer = Trainer::new(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let (n, size) = (cfg.data.batch_size, cfg.data.image_size);
    let batch = random_batch(n, size, cfg.model.n_aus, &mut Rng::new(1));
    let mut phases = [Vec::new(), Vec::new(), Vec::new()];
    let mut total = Vec::new();
    for i in 0..a.warmup + a.steps {
        let t = Instant::now();
        trainer.step(&batch).unwrap_or_else(|e| panic!("{e}"));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if i >= a.warmup {
            let p = &trainer.last_phases;
            total.push(ms);
            phases[0].push(p.forward_ms);
            phases[1].push(p.backward_ms);
            phases[2].push(p.update_ms);
        }
    }
    let (min, max) = (
        total.iter().copied().fold(f64::INFINITY, f64::min),
        total.iter().copied().fold(0.0, f64::max),
    );
    let ms = median(&mut total);
    let [fwd, bwd, upd] = phases.map(|mut p| median(&mut p));
    let gflop = trainer.last_flops.total() as f64 / 1e9;
    let threads = rayon::current_num_threads();
    if a.json {
        println!(
            "{{\"config\": {:?}, \"sets\": {:?}, \"threads\": {threads}, \"batch\": {n}, \"size\": {size}, \
             \"warmup\": {}, \"steps\": {}, \"ms_median\": {ms:.3}, \"ms_min\": {min:.3}, \"ms_max\": {max:.3}, \
             \"forward_ms\": {fwd:.3}, \"backward_ms\": {bwd:.3}, \"update_ms\": {upd:.3}, \"gflop_per_step\": {gflop:.4}}}",
            a.config.display().to_string(),
            a.sets,
            a.warmup,
            a.steps
        );
    } else {
        println!(
            "{} {}: {threads} threads, batch {n} at {size}x{size}, median of {} steps after {} warm-up: \
             {ms:.1} ms/step (min {min:.1}, max {max:.1}; forward {fwd:.1}, backward {bwd:.1}, update {upd:.1}), \
             {:.1} images/s, {gflop:.2} GFLOP/step in convolutions and GEMMs ({:.1} GFLOP/s)",
            a.config.display(),
            a.sets.join(" "),
            a.steps,
            a.warmup,
            n as f64 / ms * 1e3,
            gflop / ms * 1e3
        );
    }
}
