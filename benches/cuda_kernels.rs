//! CUDA kernel throughput: `cargo bench --bench cuda_kernels` on a GPU host
//! (prints one skip line elsewhere). Each figure is the best of several
//! timed batches, synchronising only around a batch:
//! - f32 GEMM 4096^3 in TFLOP/s (2·n³ per product);
//! - conv2d fprop, dgrad, wgrad, each kernel launched alone (no tape), in
//!   TFLOP/s (2·N·P·Q·K·R·S·C each), on these shapes at batch 64:
//!   stem 7x7/2 3>64 at 112x112, 3x3 64>64 at 28x28 and 56x56, 3x3/2
//!   64>128 at 56x56, 1x1 64>256 and 256>64 at 28x28, 3x3 512>512 at 4x4,
//!   and 4x4/2 64>128 at 32x32 (whose dgrad is conv_transpose2d 128>64
//!   16x16 -> 32x32);
//! - device-to-device copy of 1 GiB, GB/s counting read + write bytes: the
//!   ceiling the memory-bound kernels are compared against;
//! - fused CCC loss + gradient on [N, 2] (bytes: pred + target read once,
//!   gradient written once, although the kernel reads the inputs twice);
//! - fused Adam over 64M parameters (bytes: p, g, m, v read; p, m, v written);
//! - cross-entropy (fused softmax, a quarter of the rows ignored) on
//!   [65536, 8] (the expression head's shape at a large batch) and
//!   [16384, 1000] (a wide classifier), and masked BCE-with-logits on 16M
//!   logits [1398101, 12] (action units, a quarter of the labels missing):
//!   loss and input gradient, forward + backward through the tape;
//! - batch norm and batch norm + ReLU, forward and backward, in training
//!   mode on [64, 56, 56, 64], and the SE block's squeeze and channel scale
//!   (forward, fused backward) on the same shape.
//!
//! Bandwidth rows count the least traffic any implementation needs (each
//! activation-sized tensor read or written once) and say how many tensors
//! these kernels actually move; the second percentage uses the latter.
//!
//! scripts/torch_kernel_bench.py measures cuBLAS/cuDNN on the same shapes.

use mtaffect::backend::cuda::{CudaDevice, CudaStorage};
use mtaffect::ops::loss::{bce_with_logits, ccc_loss, cross_entropy, CrossEntropyParams};
use mtaffect::optim::{Adam, AdamConfig, Optimizer};
use mtaffect::{ops, DType, Device, Gradients, ParamId, Params, Rng, Tape, Tensor, Var};
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
    cross_entropy_bench(&dev, &gpu, &mut rng, copy_gbs);
    bce(&dev, &gpu, &mut rng, copy_gbs);
    adam(&dev, &gpu, &mut rng, copy_gbs);
    batch_norm(&dev, &gpu, &mut rng, copy_gbs);
    se_block(&dev, &gpu, &mut rng, copy_gbs);
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
    // The large square product, then the SE-ResNet-50 SE blocks' shapes at
    // batch 256 (C = 2048, C/16 = 128): fc1 forward, the weight gradient
    // (K = the batch) and fc2 forward: few output tiles, split over K.
    for [m, k, n] in [
        [4096, 4096, 4096],
        [256, 2048, 128],
        [2048, 256, 128],
        [256, 128, 2048],
    ] {
        let tape = Tape::no_grad();
        let mut put = |d: [usize; 2]| {
            tape.constant(
                Tensor::randn(d, 1.0, DType::F32, rng)
                    .to_device(gpu)
                    .unwrap(),
            )
        };
        let (a, b) = (put([m, k]), put([k, n]));
        let secs = time(dev, 5, 3, || {
            std::hint::black_box(ops::matmul(&tape, &a, &b).expect("matmul"));
        });
        let tflops = 2.0 * (m * k * n) as f64 / secs / 1e12;
        row(
            "gemm f32",
            &format!("{m}x{k}x{n}"),
            secs,
            tflops,
            "TFLOP/s",
            "gemm_f32, no tensor cores",
        );
    }
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
    // pred and target read twice (statistics, gradient), the gradient written.
    bw_row(
        "ccc loss+grad",
        "[16M, 2]",
        secs,
        (n * 2 * 4) as f64,
        3.0,
        5.0,
        copy_gbs,
    );
}

/// Best seconds of a scalar loss of the parameter `id` and its backward on
/// a fresh recording tape (the backward seed's upload included, as in a
/// training step).
fn loss_fwd_bwd(
    dev: &CudaDevice,
    params: &Params,
    id: ParamId,
    f: impl Fn(&Tape, &Var) -> mtaffect::Result<Var>,
) -> f64 {
    time(dev, 10, 3, || {
        let tape = Tape::new();
        let x = tape.param(params, id);
        let loss = f(&tape, &x).expect("loss");
        std::hint::black_box(tape.backward(&loss).expect("backward"));
    })
}

/// Cross-entropy loss + gradient. Least traffic: logits read, their gradient
/// written, the labels (4 bytes a row) read. The kernels also write and
/// re-read the unscaled gradient (the backward scales it by the seed); the
/// labels are host data by the op's signature and are uploaded every call.
fn cross_entropy_bench(dev: &Arc<CudaDevice>, gpu: &Device, rng: &mut Rng, copy_gbs: f64) {
    for (n, c, size) in [(65536, 8, "[65536, 8]"), (16384, 1000, "[16384, 1000]")] {
        let mut params = Params::new();
        let id = params
            .add(
                "z",
                Tensor::randn([n, c], 2.0, DType::F32, rng)
                    .to_device(gpu)
                    .unwrap(),
            )
            .unwrap();
        let labels: Vec<i64> = (0..n)
            .map(|i| if i % 4 == 3 { -1 } else { rng.below(c) as i64 })
            .collect();
        let prm = CrossEntropyParams::default();
        let secs = loss_fwd_bwd(dev, &params, id, |tape, z| {
            cross_entropy(tape, z, &labels, &prm)
        });
        let label_share = 1.0 / c as f64;
        bw_row(
            "ce loss+grad",
            size,
            secs,
            (n * c * 4) as f64,
            2.0 + label_share,
            4.0 + label_share,
            copy_gbs,
        );
    }
}

/// Masked BCE-with-logits loss + gradient on 16M logits, 12 classes.
/// Least traffic: logits and targets read, the gradient written; the
/// kernels also write and re-read the unscaled gradient.
fn bce(dev: &Arc<CudaDevice>, gpu: &Device, rng: &mut Rng, copy_gbs: f64) {
    let (rows, c) = ((1 << 24) / 12, 12);
    let on = |t: Tensor| t.to_device(gpu).unwrap();
    let mut params = Params::new();
    let id = params
        .add("x", on(Tensor::randn([rows, c], 2.0, DType::F32, rng)))
        .unwrap();
    let t: Vec<f64> = (0..rows * c)
        .map(|_| {
            if rng.bernoulli(0.25) {
                -1.0
            } else {
                rng.bernoulli(0.3) as u8 as f64
            }
        })
        .collect();
    let targets = on(Tensor::from_f64s(&t, [rows, c], DType::F32).unwrap());
    let secs = loss_fwd_bwd(dev, &params, id, |tape, x| {
        bce_with_logits(tape, x, &targets, None)
    });
    bw_row(
        "bce loss+grad",
        "[1398101, 12] masked",
        secs,
        (rows * c * 4) as f64,
        3.0,
        5.0,
        copy_gbs,
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

/// Best seconds of `f`'s forward alone and of its backward alone (forward
/// plus backward for a seed, minus the forward) with `ids` as the inputs.
fn fwd_bwd(
    dev: &CudaDevice,
    params: &Params,
    ids: &[ParamId],
    seed: &Tensor,
    f: impl Fn(&Tape, &[Var]) -> Var,
) -> (f64, f64) {
    let fwd = time(dev, 10, 3, || {
        let tape = Tape::no_grad();
        let v: Vec<Var> = ids.iter().map(|&id| tape.param(params, id)).collect();
        std::hint::black_box(f(&tape, &v));
    });
    let both = time(dev, 10, 3, || {
        let tape = Tape::new();
        let v: Vec<Var> = ids.iter().map(|&id| tape.param(params, id)).collect();
        let y = f(&tape, &v);
        std::hint::black_box(tape.backward_with_seed(&y, seed.clone()).expect("backward"));
    });
    (fwd, (both - fwd).max(1e-9))
}

/// A bandwidth row: `tensors` activation-sized tensors of `bytes` each are
/// the least any implementation must move; `moved` what these kernels move.
fn bw_row(name: &str, size: &str, secs: f64, bytes: f64, tensors: f64, moved: f64, copy_gbs: f64) {
    let gbs = tensors * bytes / secs / 1e9;
    row(
        name,
        size,
        secs,
        gbs,
        "GB/s",
        &format!(
            "{:.0}% of copy ({tensors:.0} tensors; kernels move {moved:.0}: {:.0}% of copy)",
            100.0 * gbs / copy_gbs,
            100.0 * gbs * moved / tensors / copy_gbs
        ),
    );
}

/// Batch norm and batch norm + ReLU in training mode on [64, 56, 56, 64]:
/// forward (x read, y written; the kernels read x twice: statistics, then
/// apply) and backward (dy and x read, dx written; the kernels read dy and
/// x twice: the sums, then dx).
fn batch_norm(dev: &Arc<CudaDevice>, gpu: &Device, rng: &mut Rng, copy_gbs: f64) {
    use mtaffect::ops::{batch_norm2d, batch_norm_relu, BatchNormParams};
    let (m, c) = (64 * 56 * 56, 64);
    let bytes = (m * c * 4) as f64;
    let on = |t: Tensor| t.to_device(gpu).unwrap();
    let mut params = Params::new();
    let ids = [
        params
            .add(
                "x",
                on(Tensor::randn([64, 56, 56, c], 1.0, DType::F32, rng)),
            )
            .unwrap(),
        params.add("w", on(Tensor::ones([c], DType::F32))).unwrap(),
        params.add("b", on(Tensor::zeros([c], DType::F32))).unwrap(),
    ];
    let seed = on(Tensor::randn([64, 56, 56, c], 1.0, DType::F32, rng));
    let running = std::cell::RefCell::new((
        on(Tensor::zeros([c], DType::F32)),
        on(Tensor::ones([c], DType::F32)),
    ));
    type BnOp = fn(
        &Tape,
        &Var,
        &Var,
        &Var,
        &mut Tensor,
        &mut Tensor,
        BatchNormParams,
    ) -> mtaffect::Result<Var>;
    let ops: [(&str, &str, BnOp); 2] = [
        ("batch norm fwd", "batch norm bwd", batch_norm2d),
        ("bn+relu fwd", "bn+relu bwd", batch_norm_relu),
    ];
    for (fwd_name, bwd_name, op) in ops {
        let (fwd, bwd) = fwd_bwd(dev, &params, &ids, &seed, |tape, v| {
            let (rm, rv) = &mut *running.borrow_mut();
            op(
                tape,
                &v[0],
                &v[1],
                &v[2],
                rm,
                rv,
                BatchNormParams::default(),
            )
            .expect("batch norm")
        });
        bw_row(fwd_name, "[64,56,56,64]", fwd, bytes, 2.0, 3.0, copy_gbs);
        bw_row(bwd_name, "[64,56,56,64]", bwd, bytes, 3.0, 5.0, copy_gbs);
    }
}

/// The SE block's memory-bound parts on [64, 56, 56, 64] with gates [64, 64]
/// (its two tiny linear layers are left out): the squeeze (x read), the
/// channel scale forward (x read, y written) and its fused backward (dy and
/// x read, dx written, dg summed in the same pass), and the squeeze's
/// backward (dx written); then the block's end as the model runs it,
/// `channel_scale_add_relu`: forward x and the residual read, y written;
/// backward dy, y and x read, dx and the residual's gradient written.
fn se_block(dev: &Arc<CudaDevice>, gpu: &Device, rng: &mut Rng, copy_gbs: f64) {
    use mtaffect::ops::{channel_scale, channel_scale_add_relu, global_avg_pool};
    let (n, c) = (64, 64);
    let bytes = (n * 56 * 56 * c * 4) as f64;
    let on = |t: Tensor| t.to_device(gpu).unwrap();
    let mut params = Params::new();
    let x = params
        .add("x", on(Tensor::randn([n, 56, 56, c], 1.0, DType::F32, rng)))
        .unwrap();
    let g = params
        .add("g", on(Tensor::uniform([n, c], 0.0, 1.0, DType::F32, rng)))
        .unwrap();
    let seed = on(Tensor::randn([n, c], 1.0, DType::F32, rng));
    let (fwd, bwd) = fwd_bwd(dev, &params, &[x], &seed, |tape, v| {
        global_avg_pool(tape, &v[0]).expect("squeeze")
    });
    bw_row(
        "se squeeze fwd",
        "[64,56,56,64]",
        fwd,
        bytes,
        1.0,
        1.0,
        copy_gbs,
    );
    bw_row(
        "se squeeze bwd",
        "[64,56,56,64]",
        bwd,
        bytes,
        1.0,
        1.0,
        copy_gbs,
    );
    let seed = on(Tensor::randn([n, 56, 56, c], 1.0, DType::F32, rng));
    let (fwd, bwd) = fwd_bwd(dev, &params, &[x, g], &seed, |tape, v| {
        channel_scale(tape, &v[0], &v[1]).expect("channel scale")
    });
    bw_row(
        "se scale fwd",
        "[64,56,56,64]",
        fwd,
        bytes,
        2.0,
        2.0,
        copy_gbs,
    );
    bw_row(
        "se scale bwd (dx+dg)",
        "[64,56,56,64]",
        bwd,
        bytes,
        3.0,
        3.0,
        copy_gbs,
    );
    let r = params
        .add("r", on(Tensor::randn([n, 56, 56, c], 1.0, DType::F32, rng)))
        .unwrap();
    let (fwd, bwd) = fwd_bwd(dev, &params, &[x, g, r], &seed, |tape, v| {
        channel_scale_add_relu(tape, &v[0], &v[1], &v[2]).expect("channel scale + add + relu")
    });
    bw_row(
        "se scale+add+relu fwd",
        "[64,56,56,64]",
        fwd,
        bytes,
        3.0,
        3.0,
        copy_gbs,
    );
    bw_row(
        "se scale+add+relu bwd",
        "[64,56,56,64]",
        bwd,
        bytes,
        5.0,
        5.0,
        copy_gbs,
    );
}

/// The conv shapes at batch 64 (SE-ResNet's stem and layers, and the
/// generator's 4x4/2 upsampling): (size label, input [N, H, W, C], weight
/// [K, R, S, C], stride, padding). scripts/torch_kernel_bench.py times the
/// same shapes in cuDNN.
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
        let flop = 2.0 * g.macs() as f64;
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
            // What each timing holds (ops/conv/cuda.rs picks the path; a
            // split-K fprop also fills y with the bias first).
            let note = match name {
                "conv dgrad" if xs[3] <= 16 => "zero fill + scatter kernel",
                "conv dgrad" if stride == 1 => "flip weights + fprop kernel",
                "conv dgrad" => "stride-phase kernel alone",
                _ => "kernel alone",
            };
            row(name, size, secs, flop / secs / 1e12, "TFLOP/s", note);
        }
    }
}
