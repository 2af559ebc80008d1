//! Temporal ops on the GPU: `cargo bench --bench cuda_temporal` on a GPU
//! host (one skip line elsewhere). Milliseconds per call, best of several
//! timed batches (benches/common), for
//! - GRU and LSTM layers, batch 32, 64 steps, 256 inputs and hidden units:
//!   forward alone, and forward + backward (every gradient);
//! - multi-head attention (kernels/attention.cu, flash style): batch 32, 64
//!   frames, 4 heads of 64, a key-padding mask with a quarter of the frames
//!   padded; and the ViT-S/16 shape at 224 pixels, batch 256, 197 tokens,
//!   6 heads of 64, no mask.
//!
//! The recurrent ops queue 2 launches per step forward (hidden GEMM, gate
//! kernel) and 2 per step backward, with no host synchronisation inside.

mod common;

use common::{gpu_or_skip, time};
use mtaffect::backend::cuda::CudaDevice;
use mtaffect::ops::{self, RnnWeights};
use mtaffect::{DType, Device, Params, Rng, Tape, Tensor, Var};

/// One layer's x and weights on the GPU as parameters, so backward computes every gradient.
fn rnn_params(gates: usize, [n, t, f, h]: [usize; 4], gpu: &Device, rng: &mut Rng) -> Params {
    let mut p = Params::new();
    let dims = [
        vec![n, t, f],
        vec![gates * h, f],
        vec![gates * h, h],
        vec![gates * h],
        vec![gates * h],
    ];
    for (i, d) in dims.into_iter().enumerate() {
        let v = Tensor::randn(d, 0.1, DType::F32, rng)
            .to_device(gpu)
            .expect("copy");
        p.add(format!("p{i}"), v).expect("add");
    }
    p
}

fn report(name: &str, size: &str, fwd: f64, both: f64) {
    println!(
        "{name:<5} {size:<28} fwd {:>8.3} ms   fwd+bwd {:>8.3} ms",
        fwd * 1e3,
        both * 1e3
    );
}

/// Times `f(tape)` alone and followed by backward (a zero seed: the work
/// does not depend on its values).
fn fwd_bwd(dev: &CudaDevice, gpu: &Device, f: impl Fn(&Tape) -> Var) -> (f64, f64) {
    let fwd = time(dev, 5, 5, || {
        f(&Tape::no_grad());
    });
    let both = time(dev, 5, 5, || {
        let tape = Tape::new();
        let y = f(&tape);
        let seed = Tensor::zeros_on(y.shape().clone(), DType::F32, gpu).expect("seed");
        tape.backward_with_seed(&y, seed).expect("backward");
    });
    (fwd, both)
}

fn main() {
    let Some(dev) = gpu_or_skip("cuda_temporal") else {
        return;
    };
    let gpu = Device::Cuda(dev.clone());
    let mut rng = Rng::new(0);
    let sizes = [32, 64, 256, 256];
    for (name, gates) in [("gru", 3), ("lstm", 4)] {
        let p = rnn_params(gates, sizes, &gpu, &mut rng);
        let (fwd, both) = fwd_bwd(&dev, &gpu, |tape| {
            let v: Vec<Var> = p.ids().map(|id| tape.param(&p, id)).collect();
            let w = [v[1].clone(), v[2].clone(), v[3].clone(), v[4].clone()];
            let w = RnnWeights::from_vars(&w);
            if gates == 3 {
                ops::gru(tape, &v[0], w, None, None).expect("gru").0
            } else {
                ops::lstm(tape, &v[0], w, None, None).expect("lstm").0
            }
        });
        report(name, "N=32 T=64 F=H=256", fwd, both);
    }
    // The temporal encoder's shape (a quarter of the frames padded), then a
    // ViT-S/16 block's at 224 pixels (197 tokens, no mask).
    let mask: Vec<bool> = (0..32 * 64).map(|i| i % 64 < 48).collect();
    attention(&dev, &gpu, &mut rng, [32, 64, 4, 64], Some(&mask));
    attention(&dev, &gpu, &mut rng, [256, 197, 6, 64], None);
}

/// Self-attention over q, k, v [N, T, H, D] held as parameters.
fn attention(
    dev: &CudaDevice,
    gpu: &Device,
    rng: &mut Rng,
    [n, t, heads, d]: [usize; 4],
    mask: Option<&[bool]>,
) {
    let mut p = Params::new();
    for name in ["q", "k", "v"] {
        let x = Tensor::randn([n, t, heads, d], 1.0, DType::F32, rng)
            .to_device(gpu)
            .expect("copy");
        p.add(name, x).expect("add");
    }
    let (fwd, both) = fwd_bwd(dev, gpu, |tape| {
        let v: Vec<Var> = p.ids().map(|id| tape.param(&p, id)).collect();
        ops::attention(tape, &v[0], &v[1], &v[2], mask).expect("attention")
    });
    let size = format!(
        "N={n} T={t} H={heads} D={d}{}",
        if mask.is_some() { " masked" } else { "" }
    );
    report("attn", &size, fwd, both);
}
