//! Training-step throughput of the SE-ResNet multi-task model on CUDA, the
//! mtaffect side of the table against `scripts/torch_bench.py`: the same
//! model (width 1, SE reduction 16, ImageNet stem, MTANet neck, dropout 0.2),
//! the same step (forward, masked multi-task loss with a quarter of each
//! task's labels withheld, backward, clipping at 5, AdamW), through
//! `Trainer::step`, so every host synchronisation the real loop makes is
//! counted. Prints one line per configuration starting `train`, with the
//! step's arithmetic in convolutions and GEMMs (`Trainer::last_flops`, as
//! PyTorch's flop counter counts it: tests/flops.rs) and its rate, the
//! model FLOP utilisation once divided by the GPU's peak.
//!
//! The batch's tensors are put on the GPU once, before timing, as
//! torch_bench.py creates its batch on the device: both sides time the step,
//! not the input upload (38.5 MB of images at SE-ResNet-50 b256, 2.5 ms of
//! copy through the pinned ring on the H100 of BENCHMARKS.md, which a
//! training loop pays unless it prefetches).
//!
//! `cargo bench --bench cuda_train_step [-- depth batch [bf16]]`; the default
//! grid is SE-ResNet-18 and -50 at 112x112, batch 64 and 256, in f32 (lines
//! `train se-resnet-..`) and with `train.precision = "bf16"` (lines
//! `train bf16 se-resnet-..`). With a depth and batch given, one more
//! profiled step follows the timed ones and prints the GPU time per kernel
//! (lines starting `kernel`).

use mtaffect::autograd::Precision;
use mtaffect::data::Batch;
use mtaffect::model::{NeckKind, NetConfig, SeResNetConfig, Stem};
use mtaffect::train::{TrainConfig, Trainer};
use mtaffect::{DType, Device, Rng, Tensor};
use std::time::Instant;

const SIZE: usize = 112;

fn batch(n: usize, rng: &mut Rng) -> Batch {
    let q = n / 4;
    let va: Vec<f64> = (0..n * 2)
        .map(|i| {
            if i < 2 * q {
                -5.0
            } else {
                rng.uniform(-1.0, 1.0)
            }
        })
        .collect();
    let aus: Vec<f64> = (0..n * 12)
        .map(|i| match i / 12 {
            r if (q..2 * q).contains(&r) => -1.0,
            _ => rng.bernoulli(0.3) as u8 as f64,
        })
        .collect();
    let expr: Vec<i64> = (0..n)
        .map(|r| {
            if (2 * q..3 * q).contains(&r) {
                -1
            } else {
                rng.below(8) as i64
            }
        })
        .collect();
    Batch {
        epoch: 0,
        step: 0,
        images: Tensor::uniform([n, SIZE, SIZE, 3], -1.0, 1.0, DType::F32, rng),
        va: Tensor::from_f64s(&va, [n, 2], DType::F32).unwrap(),
        expr: Tensor::from_f64s(
            &expr.iter().map(|&c| c as f64).collect::<Vec<_>>(),
            [n],
            DType::F32,
        )
        .unwrap(),
        expr_class: expr,
        aus: Tensor::from_f64s(&aus, [n, 12], DType::F32).unwrap(),
        indices: (0..n).collect(),
    }
}

fn bench(depth: usize, n: usize, precision: Precision, profile: bool) {
    let mut cfg = TrainConfig {
        model: NetConfig {
            backbone: SeResNetConfig {
                depth,
                width_mult: 1.0,
                se_reduction: 16,
                se_divisor: 1,
                stem: Stem::Imagenet,
            }
            .into(),
            neck: NeckKind::Mtanet,
            dropout: 0.2,
            ..NetConfig::default()
        },
        ..TrainConfig::default()
    };
    cfg.data.image_size = SIZE;
    cfg.data.batch_size = n;
    cfg.train.grad_clip = 5.0;
    cfg.train.device = "cuda".into();
    cfg.train.precision = precision;
    let tag = match precision {
        Precision::F32 => "",
        Precision::Bf16 => "bf16 ",
    };
    let mut t = match Trainer::new(&cfg) {
        Ok(t) => t,
        Err(e) => {
            println!("train {tag}se-resnet-{depth} b{n}: skipped ({e})");
            return;
        }
    };
    let mut b = batch(n, &mut Rng::new(0));
    for x in [&mut b.images, &mut b.va, &mut b.aus] {
        *x = x.to_device(&t.device).unwrap();
    }
    let (warmup, iters) = (3, 10);
    for _ in 0..warmup {
        t.step(&b).unwrap();
    }
    let dev = match &t.device {
        Device::Cuda(d) => d.clone(),
        Device::Cpu => unreachable!("the config asks for cuda"),
    };
    dev.synchronize().unwrap();
    let allocs = dev.pool_stats().driver_allocs;
    let t0 = Instant::now();
    for _ in 0..iters {
        t.step(&b).unwrap();
    }
    dev.synchronize().unwrap();
    let s = t0.elapsed().as_secs_f64() / iters as f64;
    let flops = t.last_flops.total() as f64;
    let pool = dev.pool_stats();
    println!(
        "train {tag}se-resnet-{depth:<2} {SIZE}x{SIZE} b{n:<3}  {:>8.1} ms/step {:>8.1} images/s  ({:.4} TFLOP/step in convolutions and GEMMs, {:.1} TFLOP/s; {} params; pool {:.1} GiB, {} driver allocations while timed)",
        s * 1e3,
        n as f64 / s,
        flops / 1e12,
        flops / s / 1e12,
        t.params.numel(),
        pool.reserved_bytes as f64 / (1u64 << 30) as f64,
        pool.driver_allocs - allocs
    );
    host_breakdown(&mut t, &b, &dev);
    if profile {
        dev.set_profiling(true);
        let t0 = Instant::now();
        t.step(&b).unwrap();
        dev.synchronize().unwrap();
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        dev.set_profiling(false);
        let p = t.last_phases;
        println!(
            "host phases of the profiled step: forward queued in {:.1} ms, backward {:.1} ms, update + read-back {:.1} ms",
            p.forward_ms, p.backward_ms, p.update_ms
        );
        let times = dev.kernel_times().unwrap();
        let total: f64 = times.iter().map(|k| k.total_ms).sum();
        println!(
            "kernel time in one profiled step ({wall:.1} ms wall with the events): {total:.2} ms of GPU time over {} kernels, copies and memsets",
            times.len()
        );
        for k in times {
            println!(
                "kernel {:<28} {:>5} calls {:>9.3} ms {:>5.1}%",
                k.name,
                k.calls,
                k.total_ms,
                100.0 * k.total_ms / total
            );
        }
    }
}

/// Where the host's time goes in a few more steps, untimed above because
/// the counters cost a clock read per driver call: the step's phases and
/// the host time inside launches, allocations, uploads and waits. A step
/// whose wait is small spent its wall time queuing work, not on the GPU.
fn host_breakdown(t: &mut Trainer, b: &Batch, dev: &mtaffect::backend::cuda::CudaDevice) {
    const STEPS: usize = 3;
    dev.set_host_timing(true);
    let mut sum = [0.0; 3];
    let t0 = Instant::now();
    for _ in 0..STEPS {
        t.step(b).unwrap();
        let p = t.last_phases;
        for (s, v) in sum
            .iter_mut()
            .zip([p.forward_ms, p.backward_ms, p.update_ms])
        {
            *s += v / STEPS as f64;
        }
    }
    let wall = t0.elapsed().as_secs_f64() * 1e3 / STEPS as f64;
    dev.set_host_timing(false);
    println!(
        "host per step ({wall:.1} ms wall): forward queued {:.1} ms, backward queued {:.1} ms, update + read-back {:.1} ms",
        sum[0], sum[1], sum[2]
    );
    let calls: Vec<String> = dev
        .host_times()
        .iter()
        .map(|h| {
            format!(
                "{:?} {} calls {:.1} ms",
                h.call,
                h.calls / STEPS as u64,
                h.total_ms / STEPS as f64
            )
        })
        .collect();
    println!("host calls per step: {}", calls.join(", "));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let precision = match args.iter().any(|a| a == "bf16") {
        true => Precision::Bf16,
        false => Precision::F32,
    };
    if let [depth, n] = numbers[..] {
        bench(depth, n, precision, true);
        return;
    }
    for precision in [Precision::F32, Precision::Bf16] {
        for depth in [18, 50] {
            for n in [64, 256] {
                bench(depth, n, precision, false);
            }
        }
    }
}
