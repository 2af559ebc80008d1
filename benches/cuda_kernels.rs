//! CUDA kernel throughput: `cargo bench --bench cuda_kernels` on a GPU host
//! (prints one skip line elsewhere). Each figure is the best of several
//! timed batches, synchronising only around a batch:
//! - f32 GEMM 4096^3 in TFLOP/s (2·n³ per product);
//! - conv2d fprop, dgrad, wgrad, each kernel launched alone (no tape), in
//!   TFLOP/s (2·N·P·Q·K·R·S·C each), on the issue-9 shapes at batch 64:
//!   stem 7x7/2 3>64 at 112x112, 3x3 64>64 at 28x28 and 56x56, 3x3/2
//!   64>128 at 56x56, 1x1 64>256 and 256>64 at 28x28, 3x3 512>512 at 4x4,
//!   and 4x4/2 64>128 at 32x32 (whose dgrad is conv_transpose2d 128>64
//!   16x16 -> 32x32);
//! - device-to-device copy of 1 GiB, GB/s counting read + write bytes: the
//!   ceiling the memory-bound kernels are compared against;
//! - fused CCC loss + gradient on [N, 2] (bytes: pred + target read once,
//!   gradient written once, although the kernel reads the inputs three times);
//! - fused Adam over 64M parameters (bytes: p, g, m, v read; p, m, v written);
//! - batch norm forward in training mode on [64, 56, 56, 64] (bytes: x read
//!   once, y written; the kernels read x twice: statistics, then apply).
//!
//! scripts/torch_kernel_bench.py measures cuBLAS/cuDNN on the same shapes.

use mtaffect::backend::cuda::{CudaDevice, CudaStorage};
use mtaffect::ops::loss::ccc_loss;
use mtaffect::optim::{Adam, AdamConfig, Optimizer};
use mtaffect::{ops, DType, Device, Gradients, Params, Rng, Tape, Tensor};
use std::sync::Arc;

mod common;
use common::{gpu_or_skip, time};

fn row(name: &str, size: &str, secs: f64, value: f64, unit: &str, note: &str) {
    println!(
        "{name:<22} {size:<22} {:>9.3} {value:>9.1} {unit:<8} {note}",
        secs * 1e3
    );
}

fn main() {
    let Some(dev) = gpu_or_skip("cuda_kernels") else {
        return;
    };
    let gpu = Device::Cuda(dev.clone());
    let mut rng = Rng::new(0);
    println!(
        "{:<22} {:<22} {:>9} {:>9} {:<8} note",
        "kernel", "size", "ms", "value", "unit"
    );

    let copy_gbs = copy_bandwidth(&dev);
    gemm(&dev, &gpu, &mut rng);
    conv(&dev, &gpu, &mut rng);
    ccc(&dev, &gpu, &mut rng, copy_gbs);
    adam(&dev, &gpu, &mut rng, copy_gbs);
    batch_norm(&dev, &gpu, &mut rng, copy_gbs);
    let s = dev.pool_stats();
    println!(
        "pool: {:.1} MiB reserved, {} driver allocations, {} reuses",
        s.reserved_bytes as f64 / (1 << 20) as f64,
        s.driver_allocs,
        s.reuses
    );
}

fn copy_bandwidth(dev: &Arc<CudaDevice>) -> f64 {
    let n = (1usize << 30) / 4;
    let src = CudaStorage::zeros(dev, n).expect("alloc");
    let mut dst = CudaStorage::zeros(dev, n).expect("alloc");
    let secs = time(dev, 5, 5, || src.copy_to(&mut dst).expect("copy"));
    let gbs = 2.0 * (n * 4) as f64 / secs / 1e9;
    row(
        "copy d2d",
        "1 GiB",
        secs,
        gbs,
        "GB/s",
        "read+write; the ceiling",
    );
    gbs
}

fn gemm(dev: &Arc<CudaDevice>, gpu: &Device, rng: &mut Rng) {
    let n = 4096;
    let tape = Tape::no_grad();
    let a = tape.constant(
        Tensor::randn([n, n], 1.0, DType::F32, rng)
            .to_device(gpu)
            .unwrap(),
    );
    let b = tape.constant(
        Tensor::randn([n, n], 1.0, DType::F32, rng)
            .to_device(gpu)
            .unwrap(),
    );
    let secs = time(dev, 5, 3, || {
        std::hint::black_box(ops::matmul(&tape, &a, &b).expect("matmul"));
    });
    let tflops = 2.0 * (n as f64).powi(3) / secs / 1e12;
    row(
        "gemm f32",
        "4096^3",
        secs,
        tflops,
        "TFLOP/s",
        "gemm_f32, no tensor cores",
    );
}

fn ccc(dev: &Arc<CudaDevice>, gpu: &Device, rng: &mut Rng, copy_gbs: f64) {
    let n = 1 << 24;
    let mut params = Params::new();
    let id = params
        .add(
            "pred",
            Tensor::uniform([n, 2], -1.0, 1.0, DType::F32, rng)
                .to_device(gpu)
                .unwrap(),
        )
        .unwrap();
    let target = Tensor::uniform([n, 2], -1.0, 1.0, DType::F32, rng)
        .to_device(gpu)
        .unwrap();
    let secs = time(dev, 5, 3, || {
        // Forward on a recording tape computes the gradient in the same launch.
        let tape = Tape::new();
        let p = tape.param(&params, id);
        std::hint::black_box(ccc_loss(&tape, &p, &target, -5.0).expect("ccc"));
    });
    let gbs = 3.0 * (n * 2 * 4) as f64 / secs / 1e9;
    row(
        "ccc loss+grad",
        "[16M, 2]",
        secs,
        gbs,
        "GB/s",
        &format!("{:.0}% of copy", 100.0 * gbs / copy_gbs),
    );
}

fn adam(dev: &Arc<CudaDevice>, gpu: &Device, rng: &mut Rng, copy_gbs: f64) {
    let n = 1 << 26;
    let mut params = Params::new();
    let id = params
        .add(
            "w",
            Tensor::randn([n], 1.0, DType::F32, rng)
                .to_device(gpu)
                .unwrap(),
        )
        .unwrap();
    let mut grads = Gradients::new();
    grads
        .accumulate(
            id,
            Tensor::randn([n], 1.0, DType::F32, rng)
                .to_device(gpu)
                .unwrap(),
        )
        .unwrap();
    let mut opt = Adam::new(AdamConfig {
        weight_decay: 0.01,
        decoupled: true,
        ..Default::default()
    });
    let secs = time(dev, 5, 3, || {
        opt.step(&mut params, &grads, 1e-3).expect("adam")
    });
    let gbs = 7.0 * (n * 4) as f64 / secs / 1e9;
    row(
        "adamw step",
        "64M params",
        secs,
        gbs,
        "GB/s",
        &format!("{:.0}% of copy", 100.0 * gbs / copy_gbs),
    );
}

fn batch_norm(dev: &Arc<CudaDevice>, gpu: &Device, rng: &mut Rng, copy_gbs: f64) {
    use mtaffect::ops::{batch_norm2d, BatchNormParams};
    let (n, c) = (64 * 56 * 56, 64);
    let tape = Tape::no_grad();
    let on = |t: Tensor| tape.constant(t.to_device(gpu).unwrap());
    let x = on(Tensor::randn([64, 56, 56, c], 1.0, DType::F32, rng));
    let (w, b) = (
        on(Tensor::ones([c], DType::F32)),
        on(Tensor::zeros([c], DType::F32)),
    );
    let mut rm = Tensor::zeros([c], DType::F32).to_device(gpu).unwrap();
    let mut rv = Tensor::ones([c], DType::F32).to_device(gpu).unwrap();
    let secs = time(dev, 10, 3, || {
        let y = batch_norm2d(
            &tape,
            &x,
            &w,
            &b,
            &mut rm,
            &mut rv,
            BatchNormParams::default(),
        );
        std::hint::black_box(y.expect("batch norm"));
    });
    let gbs = 2.0 * (n * c * 4) as f64 / secs / 1e9;
    row(
        "batch norm fwd",
        "[64,56,56,64]",
        secs,
        gbs,
        "GB/s",
        &format!("{:.0}% of copy", 100.0 * gbs / copy_gbs),
    );
}

/// The issue-9 conv shapes at batch 64: (size label, input [N, H, W, C],
/// weight [K, R, S, C], stride, padding). The 3x3 64>64 56x56 label is the
/// one earlier figures were reported under.
type ConvShape = (&'static str, [usize; 4], [usize; 4], usize, usize);
const CONV_SHAPES: [ConvShape; 8] = [
    (
        "7x7/2 3>64 112x112 b64",
        [64, 112, 112, 3],
        [64, 7, 7, 3],
        2,
        3,
    ),
    (
        "3x3 64>64 28x28 b64",
        [64, 28, 28, 64],
        [64, 3, 3, 64],
        1,
        1,
    ),
    (
        "3x3 64>64 56x56 b64",
        [64, 56, 56, 64],
        [64, 3, 3, 64],
        1,
        1,
    ),
    (
        "3x3/2 64>128 56x56 b64",
        [64, 56, 56, 64],
        [128, 3, 3, 64],
        2,
        1,
    ),
    (
        "1x1 64>256 28x28 b64",
        [64, 28, 28, 64],
        [256, 1, 1, 64],
        1,
        0,
    ),
    (
        "1x1 256>64 28x28 b64",
        [64, 28, 28, 256],
        [64, 1, 1, 256],
        1,
        0,
    ),
    (
        "3x3 512>512 4x4 b64",
        [64, 4, 4, 512],
        [512, 3, 3, 512],
        1,
        1,
    ),
    // conv_transpose2d 4x4/2 128>64 16x16 -> 32x32 (a generator's upsampling)
    // is this conv's dgrad; its input and weight gradients are this conv's
    // fprop and wgrad.
    (
        "4x4/2 64>128 32x32 b64",
        [64, 32, 32, 64],
        [128, 4, 4, 64],
        2,
        1,
    ),
];

/// conv fprop, dgrad and wgrad, each kernel timed alone (no tape, no
/// backward bookkeeping, no fprop to subtract), in TFLOP/s of
/// 2·N·P·Q·K·R·S·C/groups.
fn conv(dev: &Arc<CudaDevice>, gpu: &Device, rng: &mut Rng) {
    use mtaffect::ops::conv::{dgrad_t, forward_t, wgrad_t, Conv2dGeom};
    use mtaffect::ops::Conv2dParams;
    for (size, xs, ws, stride, pad) in CONV_SHAPES {
        let prm = Conv2dParams::new().stride(stride).padding(pad);
        let g = Conv2dGeom::new("conv bench", &xs, &ws, prm).expect("conv geometry");
        let on = |t: Tensor| t.to_device(gpu).unwrap();
        let x = on(Tensor::randn(&xs[..], 1.0, DType::F32, rng));
        let w = on(Tensor::randn(&ws[..], 0.05, DType::F32, rng));
        let dy = on(Tensor::randn(&g.out_dims()[..], 1.0, DType::F32, rng));
        let flop = 2.0 * (g.n * g.p * g.q * g.k * g.r * g.s * g.c / g.prm.groups) as f64;
        let w_shape = w.shape().clone();
        let kernels: [(&str, &mut dyn FnMut()); 3] = [
            ("conv fprop", &mut || {
                std::hint::black_box(forward_t(&g, &x, &w, None).expect("fprop"));
            }),
            ("conv dgrad", &mut || {
                std::hint::black_box(dgrad_t("conv bench", &g, &dy, &w, None).expect("dgrad"));
            }),
            ("conv wgrad", &mut || {
                std::hint::black_box(wgrad_t("conv bench", &g, &x, &dy, &w_shape).expect("wgrad"));
            }),
        ];
        for (name, f) in kernels {
            let secs = time(dev, 5, 3, f);
            let note = if stride == 1 && name == "conv dgrad" {
                "flip weights + fprop kernel"
            } else {
                "kernel alone"
            };
            row(name, size, secs, flop / secs / 1e12, "TFLOP/s", note);
        }
    }
}
