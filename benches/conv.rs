//! CPU f32 conv2d throughput: `cargo bench --bench conv`.
//! 3x3, 64 -> 64 channels, pad 1, on an 8x56x56 NHWC batch (a ResNet stage-1
//! layer); forward, and backward = dgrad + wgrad. Best of several runs, with
//! GFLOP/s counted as 2·N·P·Q·K·R·S·C per pass (backward: twice that).
//! `scripts/torch_conv_bench.py` measures PyTorch on the same shape.

use mtaffect::ops::{self, Conv2dParams};
use mtaffect::{DType, Rng, Tape, Tensor};
use std::time::Instant;

/// Best of `reps` runs (after one warm-up for page faults and thread pools);
/// `f` returns the seconds of the part it times.
fn best_of(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    f();
    (0..reps).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn main() {
    let (n, h, w, c, k) = (8usize, 56usize, 56usize, 64usize, 64usize);
    let mut rng = Rng::new(0);
    let x = Tensor::randn([n, h, w, c], 1.0, DType::F32, &mut rng);
    let wt = Tensor::randn([k, 3, 3, c], 0.05, DType::F32, &mut rng);
    let dy = Tensor::randn([n, h, w, k], 1.0, DType::F32, &mut rng);
    let prm = Conv2dParams::new().padding(1);
    let flops = 2.0 * (n * h * w * k * 9 * c) as f64;
    let reps = 5;

    let fwd = best_of(reps, || {
        let tape = Tape::no_grad();
        let t = Instant::now();
        let y = ops::conv2d(
            &tape,
            &tape.constant(x.clone()),
            &tape.constant(wt.clone()),
            None,
            prm,
        )
        .expect("conv2d");
        std::hint::black_box(y);
        t.elapsed().as_secs_f64()
    });

    // The tape's backward of one conv: dgrad + wgrad (forward untimed).
    let mut params = mtaffect::Params::new();
    let (xi, wi) = (
        params.add("x", x.clone()).unwrap(),
        params.add("w", wt.clone()).unwrap(),
    );
    let bwd = best_of(reps, || {
        let tape = Tape::new();
        let (xv, wv) = (tape.param(&params, xi), tape.param(&params, wi));
        let y = ops::conv2d(&tape, &xv, &wv, None, prm).expect("conv2d");
        let t = Instant::now();
        let g = tape.backward_with_seed(&y, dy.clone()).expect("backward");
        std::hint::black_box(g);
        t.elapsed().as_secs_f64()
    });

    println!(
        "conv2d 3x3 {c}->{k} pad 1, input [{n}, {h}, {w}, {c}] NHWC f32, {} rayon threads",
        rayon::current_num_threads()
    );
    println!("{:>22} {:>10} {:>10}", "pass", "ms", "GFLOP/s");
    println!(
        "{:>22} {:>10.2} {:>10.1}",
        "forward",
        fwd * 1e3,
        flops / fwd / 1e9
    );
    println!(
        "{:>22} {:>10.2} {:>10.1}",
        "backward (dgrad+wgrad)",
        bwd * 1e3,
        2.0 * flops / bwd / 1e9
    );
}
