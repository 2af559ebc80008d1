//! Training-step throughput of the SE-ResNet multi-task model on the CPU:
//! forward, masked multi-task loss, backward and an Adam step, in images/s.
//! `cargo bench --bench train_step [-- depth width stem size batch]`.

use mtaffect::model::{MtlNet, NeckKind, NetConfig, SeResNetConfig, Stem};
use mtaffect::nn::{Buffers, Ctx};
use mtaffect::optim::{Adam, AdamConfig, Optimizer};
use mtaffect::train::{LossConfig, MtlLoss, MtlTargets};
use mtaffect::{DType, Params, Rng, Tape, Tensor};
use std::time::Instant;

fn bench(depth: usize, width: f64, stem: Stem, size: usize, batch: usize) {
    let mut rng = Rng::new(0);
    let cfg = NetConfig {
        backbone: SeResNetConfig {
            depth,
            width_mult: width,
            stem,
            ..SeResNetConfig::default()
        }
        .into(),
        neck: NeckKind::Mtanet,
        ..NetConfig::default()
    };
    let (mut params, mut buffers) = (Params::new(), Buffers::new());
    let net = MtlNet::new(&cfg, &mut params, &mut buffers, &mut rng).unwrap();
    let loss = MtlLoss::new(&LossConfig::default(), &mut params).unwrap();
    let mut opt = Adam::new(AdamConfig::default());
    let x = Tensor::randn([batch, size, size, 3], 1.0, DType::F32, &mut rng);
    let va = Tensor::uniform([batch, 2], -1.0, 1.0, DType::F32, &mut rng);
    let au = Tensor::from_f64s(
        &(0..batch * 12).map(|i| (i % 2) as f64).collect::<Vec<_>>(),
        [batch, 12],
        DType::F32,
    )
    .unwrap();
    let expr: Vec<i64> = (0..batch as i64).map(|i| i % 8).collect();
    let mut step = |rng: &mut Rng| {
        let tape = Tape::new();
        let xv = tape.constant(x.clone());
        let mut cx = Ctx {
            tape: &tape,
            params: &params,
            buffers: &mut buffers,
            training: true,
            rng,
            frozen: false,
        };
        let out = net.forward(&mut cx, &xv).unwrap();
        let t = MtlTargets {
            va: &va,
            au: &au,
            expr: &expr,
        };
        let terms = loss.forward(&tape, &params, &out, &t).unwrap();
        let flops = tape.product_flops().total();
        let grads = tape.backward(&terms.total).unwrap();
        opt.step(&mut params, &grads, 1e-3).unwrap();
        flops
    };
    let flops = step(&mut rng);
    let reps = 3;
    let t = Instant::now();
    for _ in 0..reps {
        step(&mut rng);
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "depth {depth:>2} width {width:<5} stem {:<8} {size:>3}x{size:<3} batch {batch:>3}: {:>7.1} ms/step {:>8.1} images/s ({} params; {:.2} GFLOP/step in convolutions and GEMMs, {:.1} GFLOP/s)",
        format!("{stem:?}"),
        s * 1e3,
        batch as f64 / s,
        params.numel(),
        flops as f64 / 1e9,
        flops as f64 / s / 1e9
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() == 5 {
        let stem = if args[2] == "small" {
            Stem::Small
        } else {
            Stem::Imagenet
        };
        bench(
            args[0].parse().unwrap(),
            args[1].parse().unwrap(),
            stem,
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        );
        return;
    }
    bench(10, 0.25, Stem::Imagenet, 64, 32);
    bench(10, 0.5, Stem::Imagenet, 64, 32);
    bench(18, 0.5, Stem::Imagenet, 64, 32);
    bench(10, 0.25, Stem::Small, 64, 32);
    bench(18, 1.0, Stem::Imagenet, 112, 16);
}
