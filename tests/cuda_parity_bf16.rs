//! CUDA parity of the bf16 tensor-core conv fprop, wgrad and strided dgrad
//! (kernels/conv_bf16.cu) against the CPU conv reference in f64 on the same
//! bf16-rounded inputs, so only the GPU's f32 accumulation (and, for a bf16
//! output, the final rounding) is measured.
//!
//! Tolerance, per output element: the kernel sums n = R·S·C_padded products
//! plus the bias in f32. bf16 x bf16 products are exact in f32, so the error
//! is the summation's: |err| <= γ_n Σ|terms| with γ_n ≈ n·2^-24 for
//! round-to-nearest (Higham, Accuracy and Stability, §3.1). Tensor cores do
//! not promise round-to-nearest inside an mma (truncation doubles u) and the
//! order is unspecified, so the bound is taken twice more:
//! `tol = 1e-6 + 4 (n + 1) 2^-24 Σ|x·w| (+|bias|)`, Σ|x·w| being the same
//! conv run on |x| and |w|. A bf16 output adds its rounding, at most 2^-8 of
//! the value: `tol (1 + 2^-8) + 2^-8 |ref|`. A missing or misplaced term (an
//! O(|x·w|) error) exceeds this by orders of magnitude on these shapes.
//!
//! Each test that needs a GPU is `#[ignore = "needs a CUDA GPU"]`: `cargo test`
//! counts it as ignored; `--include-ignored` runs it (scripts/gpu_checks.sh).

use mtaffect::autograd::Precision;
use mtaffect::ops::conv::bf16::{
    conv2d_fprop_bf16, conv2d_fprop_bf16_on, conv2d_fprop_bf16_out, conv2d_wgrad_bf16,
    round_to_tf32, Bf16Nhwc, FpropTile, CHANNEL_ALIGN,
};
use mtaffect::ops::conv::bf16_dgrad::{conv2d_dgrad_bf16, conv2d_dgrad_bf16_on};
use mtaffect::ops::conv::{dgrad, forward, wgrad, Conv2dGeom};
use mtaffect::ops::{conv2d, Conv2dParams};
use mtaffect::{DType, Device, Params, Rng, Tape, Tensor};

mod common;
use common::{gpu, Report};

/// `v` rounded to bf16 (nearest even, as the device converts) and widened.
fn bf16_round(v: &[f32]) -> Vec<f64> {
    v.iter()
        .map(|&x| half::bf16::from_f32(x).to_f64())
        .collect()
}

fn randn(dims: &[usize], std: f64, rng: &mut Rng) -> Vec<f32> {
    Tensor::randn(dims, std, DType::F32, rng)
        .to_vec::<f32>()
        .unwrap()
}

/// (input [N, H, W, C], K, R, S, params).
type Case = ([usize; 4], usize, usize, usize, Conv2dParams);

#[test]
#[ignore = "needs a CUDA GPU"]
fn conv2d_bf16_fprop_matches_the_f64_reference() {
    let dev = gpu();
    let gpu = Device::Cuda(dev.clone());
    let p = Conv2dParams::new;
    // (input, K, R, S, params): odd N·P·Q over several row tiles, stride 2
    // with padding and two column tiles, the 7x7/2 stem (3 channels padded to
    // 8), dilation with asymmetric padding, a deep reduction (72 k-steps),
    // 1x1 with K not a multiple of 8 (f32 output only), 1x1 stride 2.
    #[rustfmt::skip]
    let cases: [Case; 7] = [
        ([3, 9, 11, 16], 24, 3, 3, p().padding(1)),
        ([2, 15, 13, 32], 72, 3, 3, p().stride(2).padding(1)),
        ([2, 37, 41, 3], 64, 7, 7, p().stride(2).padding(3)),
        ([1, 12, 10, 8], 16, 3, 3, p().dilation(2).padding_tblr(2, 1, 0, 3)),
        ([1, 6, 6, 256], 64, 3, 3, p().padding(1)),
        ([2, 7, 9, 64], 130, 1, 1, p()),
        ([2, 14, 14, 64], 128, 1, 1, p().stride(2)),
    ];
    let mut rng = Rng::new(10);
    let (mut rep32, mut rep16, mut conv) =
        (Report::default(), Report::default(), Report::default());
    for (xd, k, r, s, prm) in cases {
        let wd = [k, r, s, xd[3] / prm.groups];
        let what = format!("x {xd:?} w {wd:?} {prm:?}");
        let (x, w, b) = (
            randn(&xd, 1.0, &mut rng),
            randn(&wd, 0.2, &mut rng),
            randn(&[k], 1.0, &mut rng),
        );
        let put = |v: &[f32], d: &[usize]| {
            Tensor::from_vec(v.to_vec(), d)
                .unwrap()
                .to_device(&gpu)
                .unwrap()
        };
        let (xt, wt, bt) = (put(&x, &xd), put(&w, &wd), put(&b, &[k]));

        // The conversion: exact bf16 rounding, zeros in the padding channels.
        let xb = Bf16Nhwc::from_f32(&xt).unwrap();
        let cp = xd[3].next_multiple_of(CHANNEL_ALIGN);
        let (xr, wr, br) = (
            bf16_round(&x),
            bf16_round(&w),
            b.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        );
        let padded: Vec<f64> = xr
            .chunks(xd[3])
            .flat_map(|row| {
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0.0, cp - xd[3]))
            })
            .collect();
        conv.compare_values(
            &format!("{what}: f32_to_bf16_pad"),
            &xb.to_f32().unwrap().try_to_f64_vec().unwrap(),
            &padded,
            |_| 0.0,
        );

        let g = Conv2dGeom::new("reference", &xd, &wd, prm).unwrap();
        let reference = forward(&g, &xr, &wr, Some(&br));
        let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let magnitude = forward(&g, &abs(&xr), &abs(&wr), Some(&abs(&br)));
        let terms = (r * s * cp + 1) as f64;
        let tol = |i: usize| 1e-6 + 4.0 * terms * (-24f64).exp2() * magnitude[i];

        let wb = Bf16Nhwc::from_f32(&wt).unwrap();
        let y =
            conv2d_fprop_bf16(&xb, &wb, Some(&bt), prm).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(y.dims(), g.out_dims(), "{what}");
        rep32.compare_values(&what, &y.try_to_f64_vec().unwrap(), &reference, tol);
        // Every block tile, whichever the launcher picks on these small grids.
        for tile in FpropTile::ALL {
            let on = format!("{what} ({} tile)", tile.name());
            let y = conv2d_fprop_bf16_on(Some(tile), &xb, &wb, Some(&bt), prm)
                .unwrap_or_else(|e| panic!("{on}: {e}"));
            rep32.compare_values(&on, &y.try_to_f64_vec().unwrap(), &reference, tol);
        }

        let yb = conv2d_fprop_bf16_out(&xb, &wb, Some(&bt), prm);
        if k % CHANNEL_ALIGN != 0 {
            let e = yb.unwrap_err().to_string();
            assert!(
                e.contains("conv2d_bf16") && e.contains(&format!("K = {k}")),
                "{e}"
            );
            continue;
        }
        let yb = yb.unwrap_or_else(|e| panic!("{what} (bf16 out): {e}"));
        assert_eq!(yb.dims(), g.out_dims(), "{what}");
        let u = (-8f64).exp2();
        rep16.compare_values(
            &format!("{what} (bf16 out)"),
            &yb.to_f32().unwrap().try_to_f64_vec().unwrap(),
            &reference,
            |i| tol(i) * (1.0 + u) + u * reference[i].abs(),
        );
    }
    conv.print("f32_to_bf16_pad (exact)");
    rep32.print("conv2d_bf16 fprop, f32 out (mma.sync bf16, f32 accumulation)");
    rep16.print("conv2d_bf16 fprop, bf16 out");
}

#[test]
fn host_tensors_are_refused_with_the_op_named() {
    let e = Bf16Nhwc::from_f32(&Tensor::zeros([1, 2, 2, 8], DType::F32))
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv2d_bf16") && e.contains("cuda"), "{e}");
    let e = Bf16Nhwc::from_f32(&Tensor::zeros([4, 8], DType::F32))
        .unwrap_err()
        .to_string();
    assert!(e.contains("rank-4"), "{e}");
}

/// The strided bf16 dgrad names itself and the expected shapes for a weight
/// that does not fit the geometry, and refuses host weights and groups > 1.
#[test]
#[ignore = "needs a CUDA GPU"]
fn strided_dgrad_refuses_mismatched_operands() {
    let dev = gpu();
    let gpu = Device::Cuda(dev);
    let put = |d: [usize; 4]| Tensor::zeros(d, DType::F32).to_device(&gpu).unwrap();
    let prm = Conv2dParams::new().stride(2).padding(1);
    let g = Conv2dGeom::new("test", &[1, 8, 8, 16], &[8, 3, 3, 16], prm).unwrap();
    let dy16 = Bf16Nhwc::from_f32(&put(g.out_dims())).unwrap();
    let e = conv2d_dgrad_bf16(&dy16, &put([8, 3, 3, 8]), &g, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv2d_dgrad_bf16") && e.contains("[8, 3, 3, 16]"),
        "{e}"
    );
    let e = conv2d_dgrad_bf16(&dy16, &Tensor::zeros([8, 3, 3, 16], DType::F32), &g, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv2d_dgrad_bf16") && e.contains("cuda"), "{e}");
    let grouped = Conv2dGeom::new("test", &[1, 8, 8, 16], &[8, 3, 3, 8], prm.groups(2)).unwrap();
    let e = conv2d_dgrad_bf16(&dy16, &put([8, 3, 3, 8]), &grouped, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("groups = 1 only"), "{e}");
}

/// The bf16 tensor-core wgrad (`conv2d_wgrad_bf16`) against the f64 wgrad
/// of the bf16-rounded x and dy, with the tolerance above for n = N·P·Q
/// products (the split-K slices add in f32 too): both tile shapes (K <= 64
/// and above), the stem's channels padded from 3 to 8, K not a multiple of
/// 8 (dy padded), dilation with asymmetric padding, small images whose
/// 32-pixel steps span several of them, and grids split over pixels.
#[test]
#[ignore = "needs a CUDA GPU"]
fn conv2d_wgrad_bf16_matches_the_f64_reference() {
    let dev = gpu();
    let gpu = Device::Cuda(dev.clone());
    let p = Conv2dParams::new;
    // The last two take the wide 128 x 128 tile (K and R*S*C >= 128), the
    // last with partial row and column tiles.
    #[rustfmt::skip]
    let cases: [Case; 7] = [
        ([2, 37, 41, 3], 64, 7, 7, p().stride(2).padding(3)),
        ([2, 15, 13, 32], 72, 3, 3, p().stride(2).padding(1)),
        ([1, 12, 10, 8], 20, 3, 3, p().dilation(2).padding_tblr(2, 1, 0, 3)),
        ([4, 28, 28, 64], 64, 3, 3, p().padding(1)),
        ([2, 7, 9, 64], 130, 1, 1, p()),
        ([8, 4, 4, 256], 256, 3, 3, p().padding(1)),
        ([3, 5, 6, 136], 136, 1, 1, p()),
    ];
    let mut rng = Rng::new(13);
    let mut rep = Report::default();
    for (xd, k, r, s, prm) in cases {
        let wd = [k, r, s, xd[3] / prm.groups];
        let what = format!("x {xd:?} w {wd:?} {prm:?}");
        let g = Conv2dGeom::new("reference", &xd, &wd, prm).unwrap();
        let (x, dy) = (
            randn(&xd, 1.0, &mut rng),
            randn(&g.out_dims(), 1.0, &mut rng),
        );
        let put = |v: &[f32], d: &[usize]| {
            let t = Tensor::from_vec(v.to_vec(), d).unwrap();
            Bf16Nhwc::from_f32(&t.to_device(&gpu).unwrap()).unwrap()
        };
        let dw = conv2d_wgrad_bf16(&put(&x, &xd), &put(&dy, &g.out_dims()), wd, prm)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(dw.dims(), wd, "{what}");
        let (xr, dyr) = (bf16_round(&x), bf16_round(&dy));
        let reference = wgrad(&g, &xr, &dyr);
        let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let magnitude = wgrad(&g, &abs(&xr), &abs(&dyr));
        let terms = (g.n * g.p * g.q) as f64;
        rep.compare_values(&what, &dw.try_to_f64_vec().unwrap(), &reference, |i| {
            1e-6 + 4.0 * terms * (-24f64).exp2() * magnitude[i]
        });
    }
    rep.print("conv2d_wgrad_bf16 (mma.sync bf16, f32 accumulation)");
}

/// conv2d under a bf16 tape on the GPU. With one group: the input gradient
/// runs the tensor-core fprop over flipped weights once per stride phase
/// (`conv_bf16_dgrad_phase`; one phase at stride 1) on bf16-rounded dy and
/// w, the weight gradient the bf16 tensor-core wgrad on the forward's bf16
/// x and bf16-rounded dy. Grouped:
/// the f32 input gradient and the TF32 tensor-core wgrad on TF32-rounded x
/// and dy. Each is checked against the f64 product of the (rounded)
/// operands with the tolerance above (n = R·S·K_padded products for dx,
/// N·P·Q for dw, whose split-K slices add in f32 too).
#[test]
#[ignore = "needs a CUDA GPU"]
fn bf16_tape_backward_matches_the_f64_reference() {
    let dev = gpu();
    let gpu = Device::Cuda(dev.clone());
    let p = Conv2dParams::new;
    // 3x3 same padding, asymmetric padding, 1x1, K not a multiple of 8,
    // 5 input channels, a 1x1 padded beyond its reach, two groups, and 136
    // input channels (two column tiles of the 128-column tiles);
    // strided: the stage transitions' 3x3/2 and 1x1/2 (three
    // phases without taps), the stem's 7x7/2 with 3 channels, a 4x4/2 with
    // odd sizes and K = 12, and stride 3 with dilation 2.
    #[rustfmt::skip]
    let cases: [Case; 13] = [
        ([1, 6, 5, 136], 24, 3, 3, p().padding(1)),
        ([2, 9, 11, 24], 40, 3, 3, p().padding(1)),
        ([1, 6, 7, 5], 8, 3, 3, p().padding(1)),
        ([1, 5, 6, 16], 12, 1, 1, p().padding(1)),
        ([1, 10, 7, 32], 16, 3, 3, p().padding_tblr(2, 0, 1, 2)),
        ([3, 5, 6, 64], 128, 1, 1, p()),
        ([2, 8, 8, 48], 20, 3, 3, p().padding(1)),
        ([2, 8, 8, 48], 32, 3, 3, p().padding(1).groups(2)),
        ([2, 15, 13, 72], 40, 3, 3, p().stride(2).padding(1)),
        ([2, 14, 14, 64], 128, 1, 1, p().stride(2)),
        ([2, 37, 41, 3], 64, 7, 7, p().stride(2).padding(3)),
        ([1, 9, 11, 20], 12, 4, 4, p().stride(2).padding(1)),
        ([1, 16, 13, 24], 16, 3, 3, p().stride(3).padding(2).dilation(2)),
    ];
    let mut rng = Rng::new(12);
    let (mut rep, mut rep_w) = (Report::default(), Report::default());
    for (xd, k, r, s, prm) in cases {
        let wd = [k, r, s, xd[3] / prm.groups];
        let what = format!("x {xd:?} w {wd:?} {prm:?}");
        let g = Conv2dGeom::new("reference", &xd, &wd, prm).unwrap();
        let (x, w, dy) = (
            randn(&xd, 1.0, &mut rng),
            randn(&wd, 0.2, &mut rng),
            randn(&g.out_dims(), 1.0, &mut rng),
        );
        let put = |v: &[f32], d: &[usize]| {
            Tensor::from_vec(v.to_vec(), d)
                .unwrap()
                .to_device(&gpu)
                .unwrap()
        };
        let mut params = Params::new();
        let xi = params.add("x", put(&x, &xd)).unwrap();
        let wi = params.add("w", put(&w, &wd)).unwrap();
        let tape = Tape::new();
        tape.set_precision(Precision::Bf16);
        let y = conv2d(
            &tape,
            &tape.param(&params, xi),
            &tape.param(&params, wi),
            None,
            prm,
        )
        .unwrap();
        let grads = tape
            .backward_with_seed(&y, put(&dy, &g.out_dims()))
            .unwrap();
        let dx = grads.get(xi).unwrap().try_to_f64_vec().unwrap();

        let grouped = prm.groups > 1;
        let widen = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let (dyr, wr) = match grouped {
            false => (bf16_round(&dy), bf16_round(&w)),
            true => (widen(&dy), widen(&w)),
        };
        let reference = dgrad(&g, &dyr, &wr);
        let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let magnitude = dgrad(&g, &abs(&dyr), &abs(&wr));
        let terms = (r * s * k.next_multiple_of(CHANNEL_ALIGN)) as f64;
        let tol = |i: usize| 1e-6 + 4.0 * terms * (-24f64).exp2() * magnitude[i];
        rep.compare_values(&what, &dx, &reference, tol);
        // The dgrad itself on every block tile (the tape ran the launcher's pick).
        if !grouped {
            let (dy16, w32) = (
                Bf16Nhwc::from_f32(&put(&dy, &g.out_dims())).unwrap(),
                put(&w, &wd),
            );
            for tile in FpropTile::ALL {
                let on = format!("{what} ({} tile)", tile.name());
                let dx = conv2d_dgrad_bf16_on(Some(tile), &dy16, &w32, &g, None)
                    .unwrap_or_else(|e| panic!("{on}: {e}"));
                rep.compare_values(&on, &dx.try_to_f64_vec().unwrap(), &reference, tol);
            }
        }

        let dw = grads.get(wi).unwrap().try_to_f64_vec().unwrap();
        let (xt, dyt) = match grouped {
            false => (bf16_round(&x), bf16_round(&dy)),
            true => (tf32_round(&x), tf32_round(&dy)),
        };
        let reference = wgrad(&g, &xt, &dyt);
        let magnitude = wgrad(&g, &abs(&xt), &abs(&dyt));
        let terms = (g.n * g.p * g.q) as f64;
        rep_w.compare_values(&what, &dw, &reference, |i| {
            1e-6 + 4.0 * terms * (-24f64).exp2() * magnitude[i]
        });
    }
    rep.print("conv2d dgrad under a bf16 tape (stride-phase fprop, mma.sync bf16; f32 grouped)");
    rep_w.print("conv2d wgrad under a bf16 tape (mma.sync bf16; tf32 grouped)");
}

/// An input consumed by two convs, as a downsampling residual block's (a
/// 3x3/2 main branch and a 1x1/2 shortcut), and, with a 3x3/1 pair, an
/// identity block's: the second dgrad the tape runs adds onto the first's
/// result in its epilogue ([`mtaffect::autograd::Pending`]), which must
/// equal the sum of the two dgrads of bf16-rounded dy and weights.
#[test]
#[ignore = "needs a CUDA GPU"]
fn a_second_dgrad_adds_onto_the_first() {
    let dev = gpu();
    let gpu = Device::Cuda(dev.clone());
    let p = Conv2dParams::new;
    let mut rng = Rng::new(15);
    let mut rep = Report::default();
    let pairs = [
        (
            [2, 15, 13, 24],
            40,
            [(3, p().stride(2).padding(1)), (1, p().stride(2))],
        ),
        (
            [1, 9, 10, 16],
            24,
            [(1, p().stride(2)), (3, p().stride(2).padding(1))],
        ),
        ([2, 7, 9, 32], 16, [(3, p().padding(1)), (1, p())]),
        (
            [1, 8, 7, 136],
            16,
            [(3, p().stride(2).padding(1)), (1, p().stride(2))],
        ),
    ];
    for (xd, k, convs) in pairs {
        let put = |v: &[f32], d: &[usize]| {
            Tensor::from_vec(v.to_vec(), d)
                .unwrap()
                .to_device(&gpu)
                .unwrap()
        };
        let x = randn(&xd, 1.0, &mut rng);
        let mut params = Params::new();
        let xi = params.add("x", put(&x, &xd)).unwrap();
        let tape = Tape::new();
        tape.set_precision(Precision::Bf16);
        let xv = tape.param(&params, xi);
        let (mut reference, mut magnitude) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let mut outs = Vec::new();
        let mut terms = 0.0;
        for (r, prm) in convs {
            let wd = [k, r, r, xd[3]];
            let g = Conv2dGeom::new("reference", &xd, &wd, prm).unwrap();
            let w = randn(&wd, 0.2, &mut rng);
            let y = conv2d(&tape, &xv, &tape.constant(put(&w, &wd)), None, prm).unwrap();
            let dy = randn(&g.out_dims(), 1.0, &mut rng);
            // Each conv's own output gradient, through a sum of dot products.
            let seed = tape.constant(put(&dy, &g.out_dims()));
            let dot = mtaffect::ops::mul(&tape, &y, &seed).unwrap();
            outs.push(mtaffect::ops::sum(&tape, &dot, &[], false).unwrap());
            let (dyr, wr) = (bf16_round(&dy), bf16_round(&w));
            let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
            for (acc, part) in [
                (&mut reference, dgrad(&g, &dyr, &wr)),
                (&mut magnitude, dgrad(&g, &abs(&dyr), &abs(&wr))),
            ] {
                acc.iter_mut().zip(part).for_each(|(a, b)| *a += b);
            }
            terms += (r * r * k.next_multiple_of(CHANNEL_ALIGN)) as f64 + 1.0;
        }
        let loss = mtaffect::ops::add(&tape, &outs[0], &outs[1]).unwrap();
        let dx = tape
            .backward(&loss)
            .unwrap()
            .get(xi)
            .unwrap()
            .try_to_f64_vec()
            .unwrap();
        rep.compare_values(&format!("x {xd:?} K {k}"), &dx, &reference, |i| {
            1e-6 + 4.0 * terms * (-24f64).exp2() * magnitude[i]
        });
    }
    rep.print("conv2d dgrad added onto an earlier dgrad under a bf16 tape");
}

/// `v` rounded to TF32 (nearest, ties away from zero, as cvt.rna.tf32.f32)
/// and widened: the host rounding, checked against literal values in
/// tests/precision.rs.
fn tf32_round(v: &[f32]) -> Vec<f64> {
    let t = Tensor::from_vec(v.to_vec(), [v.len()]).unwrap();
    round_to_tf32(&t).unwrap().try_to_f64_vec().unwrap()
}

/// Under a bf16 tape the producers of what bf16 convolutions read next
/// attach bf16 copies (`Tensor::with_bf16_copy`), written in the same pass:
/// batch norm + ReLU's output, batch norm's input gradient and the fused SE
/// block end's output. Each copy must be exactly its f32 values rounded to
/// bf16; tensors whose channels are not a multiple of 8, batch norm without
/// ReLU, and f32 tapes get none; mutable access drops it; and a conv reads
/// the copy to the same result as converting the values itself.
#[test]
#[ignore = "needs a CUDA GPU"]
fn bf16_copies_are_the_rounded_values_and_convs_read_them() {
    use mtaffect::ops::{batch_norm2d, batch_norm_relu, channel_scale_add_relu, BatchNormParams};
    let dev = gpu();
    let gpu = Device::Cuda(dev.clone());
    let mut rng = Rng::new(14);
    let put = |d: &[usize], rng: &mut Rng| {
        Tensor::randn(d, 1.0, DType::F32, rng)
            .to_device(&gpu)
            .unwrap()
    };
    // The copy, read back through Bf16Nhwc, against the rounded f32 values.
    let exact = |what: &str, t: &Tensor| {
        assert!(t.bf16_copy().is_some(), "{what}: no bf16 copy");
        let copy = Bf16Nhwc::of(t).unwrap().to_f32().unwrap();
        let host = t.to_device(&Device::Cpu).unwrap();
        let want = bf16_round(&host.to_vec::<f32>().unwrap());
        assert_eq!(copy.try_to_f64_vec().unwrap(), want, "{what}");
    };
    for (c, precision) in [
        (16, Precision::Bf16),
        (12, Precision::Bf16),
        (16, Precision::F32),
    ] {
        let copies = c % 8 == 0 && precision == Precision::Bf16;
        let mut params = Params::new();
        let xi = params.add("x", put(&[2, 5, 6, c], &mut rng)).unwrap();
        let gi = params.add("gamma", put(&[c], &mut rng)).unwrap();
        let bi = params.add("beta", put(&[c], &mut rng)).unwrap();
        let tape = Tape::new();
        tape.set_precision(precision);
        let (x, gamma, beta) = (
            tape.param(&params, xi),
            tape.param(&params, gi),
            tape.param(&params, bi),
        );
        let mut rm = put(&[c], &mut rng);
        let mut rv = Tensor::uniform([c], 0.5, 2.0, DType::F32, &mut rng)
            .to_device(&gpu)
            .unwrap();
        let bn = BatchNormParams::default();
        let y = batch_norm_relu(&tape, &x, &gamma, &beta, &mut rm, &mut rv, bn).unwrap();
        let plain = batch_norm2d(&tape, &x, &gamma, &beta, &mut rm, &mut rv, bn).unwrap();
        assert!(plain.value().bf16_copy().is_none(), "BN without ReLU");
        let gate = tape.constant(put(&[2, c], &mut rng));
        let end = channel_scale_add_relu(&tape, &plain, &gate, &y).unwrap();
        assert_eq!(y.value().bf16_copy().is_some(), copies, "c {c} {precision}");
        assert_eq!(
            end.value().bf16_copy().is_some(),
            copies,
            "c {c} {precision}"
        );
        if !copies {
            continue;
        }
        exact("batch_norm_relu output", y.value());
        exact("channel_scale_add_relu output", end.value());
        // The input gradient: two BN ops consume x, so their dx are summed
        // (a new tensor without a copy); backpropagate through one instead.
        let grads = tape
            .backward_with_seed(&y, put(y.dims(), &mut rng))
            .unwrap();
        exact("batch norm input gradient", grads.get(xi).unwrap());

        // A conv reads the copy to the result it gets from converting.
        let mut with_copy = y.value().clone();
        let without = with_copy.reshape(with_copy.dims()).unwrap();
        assert!(without.bf16_copy().is_none(), "a reshape drops the copy");
        let w = put(&[8, 3, 3, c], &mut rng);
        let conv = |input: &Tensor| {
            let tape = Tape::no_grad();
            tape.set_precision(Precision::Bf16);
            let (i, w) = (tape.constant(input.clone()), tape.constant(w.clone()));
            conv2d(&tape, &i, &w, None, Conv2dParams::new().padding(1))
                .unwrap()
                .value()
                .try_to_f64_vec()
                .unwrap()
        };
        assert_eq!(conv(&with_copy), conv(&without));
        with_copy.cuda_mut("test").unwrap();
        assert!(
            with_copy.bf16_copy().is_none(),
            "mutable access drops the copy"
        );
    }
}
