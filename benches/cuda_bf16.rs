//! bf16 tensor-core conv fprop, wgrad and strided dgrad (kernels/conv_bf16.cu) on the
//! SE-ResNet's layer shapes: `cargo bench --bench cuda_bf16` on a GPU host
//! (prints one skip line elsewhere).
//!
//! Operands are converted to bf16 once, outside the timing: a bf16 training
//! step keeps the forward's bf16 input for the wgrad. Each line is the best
//! of several timed batches of launches, synchronising only around a batch:
//! `conv bf16 <layer> <kernel> ms TFLOP/s %peak`, FLOP = 2·N·P·Q·K·R·S·C
//! with the layer's real C (the stem's 3, not the 8 it is padded to), for
//! the fprop with f32 and with bf16 output (`f32`, `bf16`), the wgrad
//! (`wgrad`, its zeroing of dw included) and the dgrad (`dgrad`:
//! `conv2d_dgrad_bf16` from the f32 weight, one phase per stride phase, its
//! sub-kernel gathers and zero fill included; FLOP counts the useful
//! products only), each on the launcher's tile; then the fprop and the
//! dgrad on every block tile (`f32-narrow`, `dgrad-wide`, ...).
//!
//! Peak: 989.4 TFLOP/s, the dense (non-sparse) BF16 tensor-core figure of the
//! H100 SXM5 in NVIDIA's H100 datasheet (1979 "with sparsity", halved). On
//! another GPU the % column is against that number all the same.
//! scripts/torch_kernel_bench.py measures cuDNN bf16 (channels_last) on the
//! same shapes.

use mtaffect::ops::conv::bf16::{
    conv2d_fprop_bf16, conv2d_fprop_bf16_on, conv2d_fprop_bf16_out, conv2d_wgrad_bf16, Bf16Nhwc,
    FpropTile,
};
use mtaffect::ops::conv::bf16_dgrad::conv2d_dgrad_bf16_on;
use mtaffect::ops::conv::Conv2dGeom;
use mtaffect::ops::Conv2dParams;
use mtaffect::{DType, Device, Rng, Tensor};

mod common;
use common::{gpu_or_skip, time};

const H100_SXM_BF16_DENSE_TFLOPS: f64 = 989.4;

/// (name, input [N, H, W, C], K, R, S, params).
type Layer = (&'static str, [usize; 4], usize, usize, usize, Conv2dParams);

fn main() {
    let Some(dev) = gpu_or_skip("cuda_bf16") else {
        return;
    };
    let gpu = Device::Cuda(dev.clone());
    let mut rng = Rng::new(0);
    let p = Conv2dParams::new;
    // Sizes are input sizes.
    #[rustfmt::skip]
    let layers: [Layer; 12] = [
        ("stem7x7s2_3-64_112_b64", [64, 112, 112, 3], 64, 7, 7, p().stride(2).padding(3)),
        ("3x3_64-64_56_b64", [64, 56, 56, 64], 64, 3, 3, p().padding(1)),
        ("3x3_64-64_56_b256", [256, 56, 56, 64], 64, 3, 3, p().padding(1)),
        ("3x3_64-64_28_b64", [64, 28, 28, 64], 64, 3, 3, p().padding(1)),
        ("3x3s2_64-128_56_b64", [64, 56, 56, 64], 128, 3, 3, p().stride(2).padding(1)),
        ("1x1s2_256-512_56_b64", [64, 56, 56, 256], 512, 1, 1, p().stride(2)),
        ("1x1_64-256_28_b64", [64, 28, 28, 64], 256, 1, 1, p()),
        ("1x1_256-64_28_b64", [64, 28, 28, 256], 64, 1, 1, p()),
        ("3x3_512-512_4_b64", [64, 4, 4, 512], 512, 3, 3, p().padding(1)),
        // SE-ResNet-50's stages 3 and 4 at batch 256 (grids near one wave).
        ("1x1_256-1024_7_b256", [256, 7, 7, 256], 1024, 1, 1, p()),
        ("3x3_512-512_4_b256", [256, 4, 4, 512], 512, 3, 3, p().padding(1)),
        ("1x1_2048-512_4_b256", [256, 4, 4, 2048], 512, 1, 1, p()),
    ];
    println!(
        "{:<10} {:<24} {:<12} {:>9} {:>9} {:>7}",
        "kernel", "layer", "kind", "ms", "TFLOP/s", "%peak"
    );
    for (name, xd, k, r, s, prm) in layers {
        let put = |d: &[usize], std: f64, rng: &mut Rng| {
            Tensor::randn(d, std, DType::F32, rng)
                .to_device(&gpu)
                .expect("host-to-device copy")
        };
        let wd = [k, r, s, xd[3]];
        let x = Bf16Nhwc::from_f32(&put(&xd, 1.0, &mut rng)).expect("convert x");
        let w32 = put(&wd, 0.05, &mut rng);
        let w = Bf16Nhwc::from_f32(&w32).expect("convert w");
        let g = Conv2dGeom::new("bench", &xd, &wd, prm).expect("geometry");
        let y = conv2d_fprop_bf16(&x, &w, None, prm).expect("conv");
        let flop = 2.0 * g.macs() as f64;
        let dy = Bf16Nhwc::from_f32(&y).expect("convert dy");
        drop(y);
        let reps = ((2e10 / flop) as usize).clamp(3, 200);
        // The launcher's pick, then the fprop and the dgrad on each tile.
        let tiles = FpropTile::ALL.map(Some);
        let runs = [
            ("f32", None),
            ("bf16", None),
            ("wgrad", None),
            ("dgrad", None),
        ]
        .into_iter()
        .chain(tiles.map(|t| ("f32", t)))
        .chain(tiles.map(|t| ("dgrad", t)));
        for (kernel, tile) in runs {
            let sec = time(&dev, reps, 5, || match (kernel, tile) {
                ("f32", t) => drop(conv2d_fprop_bf16_on(t, &x, &w, None, prm).expect("conv")),
                ("bf16", _) => drop(conv2d_fprop_bf16_out(&x, &w, None, prm).expect("conv")),
                ("wgrad", _) => drop(conv2d_wgrad_bf16(&x, &dy, wd, prm).expect("wgrad")),
                (_, t) => drop(conv2d_dgrad_bf16_on(t, &dy, &w32, &g, None).expect("dgrad")),
            });
            let tflops = flop / sec / 1e12;
            let kernel = match tile {
                None => kernel.to_string(),
                Some(t) => format!("{kernel}-{}", t.name()),
            };
            println!(
                "conv bf16  {name:<24} {kernel:<12} {:>9.3} {tflops:>9.1} {:>6.1}%",
                sec * 1e3,
                100.0 * tflops / H100_SXM_BF16_DENSE_TFLOPS
            );
        }
    }
}
