//! 2-D convolution over NHWC activations with [K, R, S, C/groups] weights
//! (out channels, kernel rows, kernel cols, in channels per group): the op
//! [`conv2d`] with its backward rule, the dispatch of forward, dgrad and
//! wgrad to the host or the GPU, and the tests. The rest of the family is
//! in `src/ops/conv/`:
//! - `geom.rs`: [`Conv2dParams`] and the checked sizes of one call, [`Conv2dGeom`];
//! - `cpu.rs`: the CPU reference [`forward`], [`dgrad`] and [`wgrad`]
//!   (GEMM over patches, f32 and f64);
//! - `cuda.rs`: the f32 launchers for kernels/conv.cu (implicit GEMM);
//! - `bf16.rs`, `bf16_layout.rs`, `bf16_dgrad.rs`: the tensor-core path of
//!   kernels/conv_bf16.cu and conv2d under a bf16 tape.
//!
//! [`conv_transpose2d`](super::conv_transpose::conv_transpose2d) is the
//! adjoint of this op and reuses [`forward_t`], [`dgrad_t`] and [`wgrad_t`].

pub mod bf16;
pub mod bf16_dgrad;
mod bf16_layout;
mod cpu;
mod cuda;
mod geom;

pub use cpu::{dgrad, forward, wgrad};
pub use geom::{Conv2dGeom, Conv2dParams, PATCH_BUDGET_ELEMS};

use crate::autograd::Precision;
use crate::backend::cpu::Float;
use crate::tensor::{check_same_dtype, same_device};
use crate::{with_dtype, Error, Result, Shape, Tape, Tensor, Var};

/// conv forward on tensors, on their device.
pub fn forward_t(g: &Conv2dGeom, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if let Some(dev) = same_device("conv2d", &[x, w])? {
        if let Some(b) = bias {
            same_device("conv2d", &[x, b])?;
        }
        return cuda::fprop(&dev, g, x, w, bias);
    }
    with_dtype!(x.dtype(), T => {
        let b = bias.map(|b| b.data::<T>()).transpose()?;
        Tensor::from_vec(forward(g, x.data::<T>()?, w.data::<T>()?, b), g.out_dims())
    })
}

/// conv dgrad on tensors, on their device, plus a per-channel `bias`
/// (conv_transpose2d's forward).
pub fn dgrad_t(
    op: &'static str,
    g: &Conv2dGeom,
    dy: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    if let Some(dev) = same_device(op, &[dy, w])? {
        if let Some(b) = bias {
            same_device(op, &[dy, b])?;
        }
        return cuda::dgrad(&dev, op, g, dy, w, bias);
    }
    with_dtype!(dy.dtype(), T => {
        let mut dx = dgrad(g, dy.data::<T>()?, w.data::<T>()?);
        if let Some(b) = bias {
            let b = b.data::<T>()?;
            for row in dx.chunks_exact_mut(g.c) {
                row.iter_mut().zip(b).for_each(|(v, &bb)| *v += bb);
            }
        }
        Tensor::from_vec(dx, g.in_dims())
    })
}

/// conv wgrad on tensors, on their device: a weight gradient of `w_shape`.
pub fn wgrad_t(
    op: &'static str,
    g: &Conv2dGeom,
    x: &Tensor,
    dy: &Tensor,
    w_shape: &Shape,
) -> Result<Tensor> {
    if let Some(dev) = same_device(op, &[x, dy])? {
        return cuda::wgrad(&dev, op, g, (x, dy), w_shape, false);
    }
    with_dtype!(dy.dtype(), T => Tensor::from_vec(wgrad(g, x.data::<T>()?, dy.data::<T>()?), w_shape.clone()))
}

/// Sum of `dy` over all rows, per channel (the bias gradient).
pub(crate) fn channel_sum(dy: &Tensor, channels: usize) -> Result<Tensor> {
    if let Some(dev) = dy.cuda_device() {
        let shape = Shape::new(vec![channels]);
        return crate::ops::reduce::cuda::sum_to_shape(dev, "conv bias", dy, &shape, 1.0);
    }
    with_dtype!(dy.dtype(), T => {
        let mut s = vec![T::ZERO; channels];
        for row in dy.data::<T>()?.chunks_exact(channels) {
            s.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
        }
        Tensor::from_vec(s, [channels])
    })
}

/// Checks dtypes and the bias shape shared by conv2d and conv_transpose2d.
pub(crate) fn check_operands(
    op: &'static str,
    x: &Var,
    w: &Var,
    bias: Option<&Var>,
    out_ch: usize,
) -> Result<()> {
    check_same_dtype(op, x.value(), w.value())?;
    if let Some(b) = bias {
        check_same_dtype(op, x.value(), b.value())?;
        if b.dims() != [out_ch] {
            return Err(Error::shape(
                op,
                format!(
                    "bias {} for {out_ch} output channels (weight {})",
                    b.shape(),
                    w.shape()
                ),
            ));
        }
    }
    Ok(())
}

/// 2-D convolution: x [N, H, W, C], weight [K, R, S, C/groups], optional
/// bias [K] -> [N, P, Q, K] with P = (H + pad_top + pad_bottom - dil·(R-1) - 1) / stride + 1
/// (floor), likewise Q. Cross-correlation, as in PyTorch. Under a bf16
/// tape ([`Precision::Bf16`]) the products read bf16-rounded operands and
/// accumulate in f32 (see [`bf16::Autocast`] for which, and for grouped
/// convolutions).
pub fn conv2d(tape: &Tape, x: &Var, w: &Var, bias: Option<&Var>, prm: Conv2dParams) -> Result<Var> {
    let g = Conv2dGeom::new("conv2d", x.dims(), w.dims(), prm)?;
    check_operands("conv2d", x, w, bias, g.k)?;
    let (xt, wt) = (x.value().clone(), w.value().clone());
    let b = bias.map(|b| b.value());
    let (y, autocast) = match tape.precision() {
        Precision::F32 => (forward_t(&g, &xt, &wt, b)?, None),
        Precision::Bf16 => {
            let (y, a) = bf16::Autocast::forward(&g, &xt, &wt, b)?;
            (y, Some(a))
        }
    };
    tape.count_product(g.macs(), [x, w]);
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    // A residual block's input feeds two convs (or a conv and the block
    // end): the bf16 dgrad adds onto the gradient that arrived first.
    tape.record_accumulating("conv2d", &inputs, y, move |dy, needs, pending| {
        let [dx, dw] = match &autocast {
            Some(a) => {
                let onto = match needs[0] && a.dgrad_adds_onto() {
                    true => pending.take(0),
                    false => None,
                };
                a.backward(&g, (&xt, &wt), dy, [needs[0], needs[1]], onto)?
            }
            None => [
                needs[0]
                    .then(|| dgrad_t("conv2d", &g, dy, &wt, None))
                    .transpose()?,
                needs[1]
                    .then(|| wgrad_t("conv2d", &g, &xt, dy, wt.shape()))
                    .transpose()?,
            ],
        };
        let mut grads = vec![dx, dw];
        if needs.len() == 3 {
            grads.push(needs[2].then(|| channel_sum(dy, g.k)).transpose()?);
        }
        Ok(grads)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    /// Direct definition: y[n,p,q,k] = b[k] + Σ_{r,s,c} x[n, p·sh - pt + r·dh, q·sw - pl + s·dw, grp·Cg + c]
    /// · w[k, r, s, c], out-of-range taps reading 0. Shares nothing with the GEMM path.
    pub(crate) fn naive_conv(
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        prm: Conv2dParams,
    ) -> (Vec<f64>, [usize; 4]) {
        let (xd, wd) = (x.dims(), w.dims());
        let (n, h, wi, c) = (xd[0], xd[1] as isize, xd[2] as isize, xd[3]);
        let (k, r, s, cg) = (wd[0], wd[1], wd[2], wd[3]);
        let kg = k / prm.groups;
        let [pt, pb, pl, pr] = prm.padding.map(|v| v as isize);
        let [sh, sw] = prm.stride.map(|v| v as isize);
        let [dh, dw] = prm.dilation.map(|v| v as isize);
        let p = ((h + pt + pb - dh * (r as isize - 1) - 1) / sh + 1) as usize;
        let q = ((wi + pl + pr - dw * (s as isize - 1) - 1) / sw + 1) as usize;
        let (xv, wv) = (x.to_f64_vec(), w.to_f64_vec());
        let bv = b.map(|b| b.to_f64_vec());
        let mut y = vec![0.0; n * p * q * k];
        for ni in 0..n {
            for pi in 0..p {
                for qi in 0..q {
                    for ki in 0..k {
                        let grp = ki / kg;
                        let mut acc = bv.as_ref().map_or(0.0, |b| b[ki]);
                        for ri in 0..r {
                            for si in 0..s {
                                for ci in 0..cg {
                                    let hh = pi as isize * sh - pt + ri as isize * dh;
                                    let ww = qi as isize * sw - pl + si as isize * dw;
                                    if hh < 0 || hh >= h || ww < 0 || ww >= wi {
                                        continue;
                                    }
                                    let xo = ((ni as isize * h + hh) * wi + ww) as usize * c
                                        + grp * cg
                                        + ci;
                                    acc += xv[xo] * wv[((ki * r + ri) * s + si) * cg + ci];
                                }
                            }
                        }
                        y[((ni * p + pi) * q + qi) * k + ki] = acc;
                    }
                }
            }
        }
        (y, [n, p, q, k])
    }

    /// (input dims, K, R, S, params): odd sizes, strides, asymmetric padding,
    /// dilation, groups, depthwise and the pointwise fast path.
    pub(crate) fn configs() -> Vec<([usize; 4], usize, usize, usize, Conv2dParams)> {
        let p = Conv2dParams::new;
        vec![
            ([2, 5, 5, 3], 4, 3, 3, p().padding(1)),
            ([1, 7, 6, 2], 3, 3, 2, p().stride(2)),
            (
                [2, 6, 7, 4],
                6,
                3,
                3,
                p().stride_hw(2, 1).padding_tblr(0, 2, 1, 0).groups(2),
            ),
            ([1, 7, 7, 3], 2, 3, 3, p().dilation(2).padding(2)),
            ([2, 5, 4, 4], 4, 3, 3, p().groups(4).padding(1)),
            ([2, 3, 5, 6], 4, 1, 1, p()),
            ([1, 4, 3, 6], 9, 1, 1, p().groups(3)),
            ([1, 5, 5, 2], 3, 1, 1, p().stride(2)),
            ([1, 6, 5, 2], 3, 4, 4, p().stride(2).padding(1)),
            (
                [1, 4, 5, 1],
                1,
                2,
                3,
                p().padding_tblr(1, 0, 2, 1).dilation(1),
            ),
            // Kernel wider than the input: a patch row is padding on both
            // sides of its one span of data.
            ([1, 3, 2, 2], 2, 3, 5, p().padding(2)),
            // The ImageNet stem's shape: 7x7/2 over 3 channels.
            ([1, 9, 8, 3], 2, 7, 7, p().stride(2).padding(3)),
        ]
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "element {i}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn matches_direct_loops_in_f32_and_f64() {
        let mut rng = Rng::new(21);
        for (xd, k, r, s, prm) in configs() {
            let cg = xd[3] / prm.groups;
            for dt in [DType::F64, DType::F32] {
                let x = Tensor::randn(xd, 1.0, dt, &mut rng);
                let w = Tensor::randn([k, r, s, cg], 1.0, dt, &mut rng);
                let b = Tensor::randn([k], 1.0, dt, &mut rng);
                let tape = Tape::no_grad();
                let (xv, wv, bv) = (
                    tape.constant(x.clone()),
                    tape.constant(w.clone()),
                    tape.constant(b.clone()),
                );
                let y = conv2d(&tape, &xv, &wv, Some(&bv), prm).unwrap();
                let (want, dims) = naive_conv(&x, &w, Some(&b), prm);
                assert_eq!(y.dims(), dims, "{prm:?}");
                close(
                    &y.value().to_f64_vec(),
                    &want,
                    if dt == DType::F64 { 1e-12 } else { 1e-5 },
                );
            }
        }
    }

    #[test]
    fn gradcheck_every_config() {
        let mut rng = Rng::new(22);
        for (xd, k, r, s, prm) in configs() {
            let x = Tensor::randn(xd, 1.0, DType::F64, &mut rng);
            let w = Tensor::randn([k, r, s, xd[3] / prm.groups], 1.0, DType::F64, &mut rng);
            let b = Tensor::randn([k], 1.0, DType::F64, &mut rng);
            check_gradients(&[x.clone(), w.clone(), b], 1e-6, |t, v| {
                conv2d(t, &v[0], &v[1], Some(&v[2]), prm)
            })
            .unwrap_or_else(|e| panic!("{prm:?}: {e}"));
            check_gradients(&[x, w], 1e-6, |t, v| conv2d(t, &v[0], &v[1], None, prm)).unwrap();
        }
    }

    #[test]
    fn multi_chunk_geometry_matches_direct_loops_and_adjoints() {
        // R·S·C large enough that chunk_rows (28) < P·Q (30) < N·P·Q: forward
        // and wgrad chunks straddle images, dgrad splits each image, wgrad
        // sums several partials. Checked against the direct loops and the
        // adjoint identities.
        let prm = Conv2dParams::new().padding(1);
        let g = Conv2dGeom::new("t", &[3, 6, 5, 8192], &[2, 3, 3, 8192], prm).unwrap();
        assert!(g.chunk_rows() < 3 * 6 * 5, "{}", g.chunk_rows());
        assert!(g.chunk_rows() * 9 * 8192 <= PATCH_BUDGET_ELEMS);
        let mut rng = Rng::new(3);
        let x = Tensor::randn(g.in_dims(), 1.0, DType::F64, &mut rng);
        let w = Tensor::randn([2, 3, 3, 8192], 1.0, DType::F64, &mut rng);
        let dy = Tensor::randn(g.out_dims(), 1.0, DType::F64, &mut rng);
        let (xs, ws, dys) = (
            x.data::<f64>().unwrap(),
            w.data::<f64>().unwrap(),
            dy.data::<f64>().unwrap(),
        );
        let y = forward(&g, xs, ws, None);
        close(&y, &naive_conv(&x, &w, None, prm).0, 1e-10);
        // <dy, conv(x)> = <dgrad(dy), x> = <wgrad(x, dy), w>: both adjoints agree with forward.
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
        let lhs = dot(dys, &y);
        let dx = dgrad(&g, dys, ws);
        let dw = wgrad(&g, xs, dys);
        assert!((dot(&dx, xs) - lhs).abs() < 1e-8 * lhs.abs().max(1.0));
        assert!((dot(&dw, ws) - lhs).abs() < 1e-8 * lhs.abs().max(1.0));
    }

    #[test]
    fn matches_pytorch_values() {
        // import torch; torch.set_printoptions(precision=10)
        // x = torch.arange(1*4*5*2, dtype=torch.float64).reshape(1,4,5,2).permute(0,3,1,2) / 10  # NHWC -> NCHW
        // w = (torch.arange(3*2*3*2, dtype=torch.float64).reshape(3,2,3,2) - 17).permute(0,3,1,2) / 10  # KRSC -> OIHW
        // b = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
        // y = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2,0,1,0)), w, b, stride=(2,1), dilation=(1,2))
        // print(y.permute(0,2,3,1).flatten())
        let prm = Conv2dParams::new()
            .stride_hw(2, 1)
            .padding_tblr(1, 0, 2, 0)
            .dilation_hw(1, 2);
        let x: Vec<f64> = (0..40).map(|v| v as f64 / 10.0).collect();
        let w: Vec<f64> = (0..36).map(|v| (v as f64 - 17.0) / 10.0).collect();
        let tape = Tape::no_grad();
        let xv = tape.constant(Tensor::from_f64s(&x, [1, 4, 5, 2], DType::F64).unwrap());
        let wv = tape.constant(Tensor::from_f64s(&w, [3, 2, 3, 2], DType::F64).unwrap());
        let bv = tape.constant(Tensor::from_f64s(&[0.5, -1.0, 2.0], [3], DType::F64).unwrap());
        let y = conv2d(&tape, &xv, &wv, Some(&bv), prm).unwrap();
        assert_eq!(y.dims(), [1, 2, 3, 3]);
        close(&y.value().to_f64_vec(), &PYTORCH_CONV, 1e-12);
    }

    const PYTORCH_CONV: [f64; 18] = [
        -0.16, -0.46, 3.74, -0.76, -0.1, 5.06, -1.46, 0.28, 6.52, -12.82, 2.48, 22.28, -14.5, 2.72,
        24.44, -23.94, 2.64, 33.72,
    ];

    #[test]
    fn backward_matches_pytorch_values() {
        // import torch; F = torch.nn.functional
        // x = (torch.arange(1*5*6*4, dtype=torch.float64).reshape(1,5,6,4) / 10).permute(0,3,1,2).requires_grad_()
        // w = ((torch.arange(4*3*3*2, dtype=torch.float64).reshape(4,3,3,2) - 36) / 10).permute(0,3,1,2).requires_grad_()
        // b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        // y = F.conv2d(F.pad(x, (0,1,1,2)), w, b, stride=2, dilation=(1,2), groups=2)  # y: [1, 4, 3, 2]
        // dy = ((torch.arange(y.numel()) % 7 - 3) / 2).to(torch.float64).reshape(1,3,2,4).permute(0,3,1,2)
        // y.backward(dy)
        // for g in [x.grad.permute(0,2,3,1), w.grad.permute(0,2,3,1), b.grad]:
        //     print([round(v, 10) + 0.0 for v in g.flatten().tolist()])
        let prm = Conv2dParams::new()
            .stride(2)
            .padding_tblr(1, 2, 0, 1)
            .dilation_hw(1, 2)
            .groups(2);
        let x: Vec<f64> = (0..120).map(|v| v as f64 / 10.0).collect();
        let w: Vec<f64> = (0..72).map(|v| (v as f64 - 36.0) / 10.0).collect();
        let dy: Vec<f64> = (0..24).map(|v| ((v % 7) as f64 - 3.0) / 2.0).collect();
        let mut params = crate::Params::new();
        let ids = [
            params
                .add(
                    "x",
                    Tensor::from_f64s(&x, [1, 5, 6, 4], DType::F64).unwrap(),
                )
                .unwrap(),
            params
                .add(
                    "w",
                    Tensor::from_f64s(&w, [4, 3, 3, 2], DType::F64).unwrap(),
                )
                .unwrap(),
            params.add("b", Tensor::zeros([4], DType::F64)).unwrap(),
        ];
        let tape = Tape::new();
        let v: Vec<Var> = ids.iter().map(|&id| tape.param(&params, id)).collect();
        let y = conv2d(&tape, &v[0], &v[1], Some(&v[2]), prm).unwrap();
        assert_eq!(y.dims(), [1, 3, 2, 4]);
        let seed = Tensor::from_f64s(&dy, [1, 3, 2, 4], DType::F64).unwrap();
        let grads = tape.backward_with_seed(&y, seed).unwrap();
        close(&grads.get(ids[0]).unwrap().to_f64_vec(), &PYTORCH_DX, 1e-12);
        close(&grads.get(ids[1]).unwrap().to_f64_vec(), &PYTORCH_DW, 1e-12);
        close(&grads.get(ids[2]).unwrap().to_f64_vec(), &PYTORCH_DB, 1e-12);
    }

    const PYTORCH_DX: [f64; 120] = [
        5.7, 5.45, -0.3, -0.35, 0.0, 0.0, 0.0, 0.0, 2.5, 2.4, -3.1, -3.15, 0.0, 0.0, 0.0, 0.0, 2.3,
        2.2, -3.2, -3.25, 0.0, 0.0, 0.0, 0.0, 8.7, 8.3, 0.3, 0.3, 0.0, 0.0, 0.0, 0.0, -0.2, -0.2,
        -4.2, -4.45, 0.0, 0.0, 0.0, 0.0, -0.2, -0.2, -4.7, -4.95, 0.0, 0.0, 0.0, 0.0, 3.6, 3.45,
        1.2, 1.25, 0.0, 0.0, 0.0, 0.0, -1.5, -1.4, -2.0, -2.2, 0.0, 0.0, 0.0, 0.0, -1.3, -1.2,
        -2.4, -2.6, 0.0, 0.0, 0.0, 0.0, 4.5, 4.3, 3.3, 3.5, 0.0, 0.0, 0.0, 0.0, -1.9, -1.85, -2.0,
        -2.2, 0.0, 0.0, 0.0, 0.0, -1.8, -1.75, -2.4, -2.6, 0.0, 0.0, 0.0, 0.0, 1.5, 1.45, 2.7,
        2.85, 0.0, 0.0, 0.0, 0.0, -1.3, -1.35, 1.2, 1.2, 0.0, 0.0, 0.0, 0.0, -1.4, -1.45, 1.2, 1.2,
        0.0, 0.0, 0.0, 0.0,
    ];
    const PYTORCH_DW: [f64; 72] = [
        9.2, 9.3, 10.0, 10.1, -8.4, -8.55, 12.0, 12.0, 12.0, 12.0, -14.4, -14.7, -1.2, -1.3, -2.0,
        -2.1, -14.8, -15.05, -8.4, -8.45, -8.8, -8.85, -2.0, -2.05, -8.8, -8.85, -9.2, -9.25, -4.8,
        -4.95, 9.2, 9.3, 10.0, 10.1, -8.4, -8.55, -9.6, -9.8, -11.2, -11.4, 4.5, 4.55, -13.0,
        -13.1, -13.8, -13.9, 4.8, 4.8, -8.5, -8.55, -8.9, -8.95, -2.1, -2.15, 1.2, 1.2, 1.2, 1.2,
        11.1, 11.25, -0.3, -0.45, -1.5, -1.65, 14.7, 14.85, -9.6, -9.8, -11.2, -11.4, 4.5, 4.55,
    ];
    const PYTORCH_DB: [f64; 4] = [0.0, -0.5, -1.0, -1.5];

    #[test]
    fn bad_shapes_are_errors_naming_op_and_shapes() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::zeros([1, 4, 4, 6], DType::F32));
        let w = tape.constant(Tensor::zeros([4, 3, 3, 4], DType::F32));
        let e = conv2d(&tape, &x, &w, None, Conv2dParams::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("conv2d") && e.contains("[1, 4, 4, 6]") && e.contains("[4, 3, 3, 4]"),
            "{e}"
        );
        let w = tape.constant(Tensor::zeros([4, 5, 5, 6], DType::F32));
        assert!(conv2d(&tape, &x, &w, None, Conv2dParams::new())
            .unwrap_err()
            .to_string()
            .contains("larger"));
        assert!(conv2d(&tape, &x, &w, None, Conv2dParams::new().stride(0)).is_err());
        let w = tape.constant(Tensor::zeros([4, 1, 1, 3], DType::F32));
        assert!(conv2d(&tape, &x, &w, None, Conv2dParams::new().groups(2)).is_ok());
        assert!(conv2d(&tape, &x, &w, None, Conv2dParams::new().groups(4)).is_err());
        let b = tape.constant(Tensor::zeros([3], DType::F32));
        let e = conv2d(&tape, &x, &w, Some(&b), Conv2dParams::new().groups(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bias [3]"), "{e}");
        let x64 = tape.constant(Tensor::zeros([1, 4, 4, 6], DType::F64));
        assert!(conv2d(&tape, &x64, &w, None, Conv2dParams::new().groups(2)).is_err());
    }
}
