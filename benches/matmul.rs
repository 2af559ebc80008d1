//! CPU f32 matmul throughput: `cargo bench --bench matmul`.
//! Prints GFLOP/s at 512, 1024 and 2048 (square), best of several runs.

use mtaffect::{ops, DType, Rng, Tape, Tensor};
use std::time::Instant;

fn main() {
    let mut rng = Rng::new(0);
    let tape = Tape::no_grad();
    println!("{:>6} {:>10} {:>10}", "n", "ms", "GFLOP/s");
    for n in [512usize, 1024, 2048] {
        let a = tape.constant(Tensor::randn([n, n], 1.0, DType::F32, &mut rng));
        let b = tape.constant(Tensor::randn([n, n], 1.0, DType::F32, &mut rng));
        let reps = if n <= 1024 { 10 } else { 3 };
        ops::matmul(&tape, &a, &b).expect("warm-up");
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t = Instant::now();
            let c = ops::matmul(&tape, &a, &b).expect("matmul");
            best = best.min(t.elapsed().as_secs_f64());
            std::hint::black_box(c);
        }
        let flops = 2.0 * (n as f64).powi(3);
        println!("{:>6} {:>10.2} {:>10.1}", n, best * 1e3, flops / best / 1e9);
    }
}
