//! Transposed 2-D convolution (the generator's learned upsampling, e.g. 4x4
//! stride 2 padding 1 doubling H and W).
//!
//! It is the adjoint of a [`conv2d`](super::conv::conv2d) that maps the
//! transposed conv's output space back to its input space, so it is built
//! from that conv's kernels: forward = conv dgrad, dgrad = conv forward,
//! wgrad = conv wgrad with input and output-gradient roles swapped.
//!
//! Weight layout: **[C_in, R, S, C_out/groups]**, exactly the [K, R, S, C/groups]
//! weight of that adjoint conv (PyTorch's ConvTranspose2d weight
//! [C_in, C_out/groups, kH, kW] with the kernel axes moved before the channels).

use super::conv::{
    channel_sum, check_operands, dgrad_t, forward_t, wgrad_t, Conv2dGeom, Conv2dParams,
};
use crate::{Error, Result, Tape, Var};

/// x [N, H, W, C_in], weight [C_in, R, S, C_out/groups], optional bias
/// [C_out] -> [N, H', W', C_out] with
/// H' = (H - 1)·stride - pad_top - pad_bottom + dilation·(R - 1) + output_padding + 1
/// (PyTorch's formula), likewise W'. `output_padding` (rows, cols) picks among
/// the output sizes that a strided conv maps to the same input size; it must
/// be smaller than the stride (PyTorch also allows < dilation; not needed here).
pub fn conv_transpose2d(
    tape: &Tape,
    x: &Var,
    w: &Var,
    bias: Option<&Var>,
    prm: Conv2dParams,
    output_padding: [usize; 2],
) -> Result<Var> {
    const OP: &str = "conv_transpose2d";
    let (xd, wd) = (x.dims(), w.dims());
    if xd.len() != 4 || wd.len() != 4 || xd[3] != wd[0] {
        return Err(Error::shape(
            OP,
            format!("input {} must be NHWC with C_in = weight dim 0, weight {} [C_in, R, S, C_out/groups]", x.shape(), w.shape()),
        ));
    }
    if output_padding[0] >= prm.stride[0] || output_padding[1] >= prm.stride[1] {
        return Err(Error::arg(
            OP,
            format!(
                "output_padding {output_padding:?} must be smaller than stride {:?}",
                prm.stride
            ),
        ));
    }
    let [pt, pb, pl, pr] = prm.padding;
    // Output length before cropping the padding. Empty dims are rejected by
    // Conv2dGeom::new below; max(1) only keeps this arithmetic from underflowing first.
    let full = |len: usize, st: usize, dil: usize, k: usize, op: usize| {
        (len.max(1) - 1) * st + dil * (k.max(1) - 1) + op + 1
    };
    let fh = full(
        xd[1],
        prm.stride[0],
        prm.dilation[0],
        wd[1],
        output_padding[0],
    );
    let fw = full(
        xd[2],
        prm.stride[1],
        prm.dilation[1],
        wd[2],
        output_padding[1],
    );
    if fh <= pt + pb || fw <= pl + pr {
        return Err(Error::shape(
            OP,
            format!(
                "padding {:?} leaves no output for input {} and weight {}",
                prm.padding,
                x.shape(),
                w.shape()
            ),
        ));
    }
    let out = [xd[0], fh - pt - pb, fw - pl - pr, wd[3] * prm.groups.max(1)];
    // The adjoint conv maps `out` back to x's shape.
    let g = Conv2dGeom::new(OP, &out, wd, prm)?;
    if g.out_dims() != [xd[0], xd[1], xd[2], xd[3]] {
        return Err(Error::shape(
            OP,
            format!(
                "input {} and weight {} with {prm:?} do not invert to {out:?}",
                x.shape(),
                w.shape()
            ),
        ));
    }
    check_operands(OP, x, w, bias, g.c)?;
    let (xt, wt) = (x.value().clone(), w.value().clone());
    // Through the adjoint conv: forward = its dgrad, dgrad = its forward,
    // wgrad = its wgrad with this op's output gradient as the conv's input.
    let y = dgrad_t(OP, &g, &xt, &wt, bias.map(|b| b.value()))?;
    tape.count_product(g.macs(), [x, w]);
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    tape.record(OP, &inputs, y, move |dy, needs| {
        let dx = needs[0].then(|| forward_t(&g, dy, &wt, None)).transpose()?;
        let dw = needs[1]
            .then(|| wgrad_t(OP, &g, dy, &xt, wt.shape()))
            .transpose()?;
        let mut grads = vec![dx, dw];
        if needs.len() == 3 {
            grads.push(needs[2].then(|| channel_sum(dy, g.c)).transpose()?);
        }
        Ok(grads)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::Tensor;
    use crate::{DType, Rng};

    /// Direct definition by scatter: every input element adds x · w[ci, r, s, co]
    /// to output (h·sh - pt + r·dh, w·sw - pl + s·dw, grp·Cg_out + co) when inside.
    fn naive(
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        prm: Conv2dParams,
        op: [usize; 2],
    ) -> (Vec<f64>, [usize; 4]) {
        let (xd, wd) = (x.dims(), w.dims());
        let (n, hi, wi, ci_n) = (xd[0], xd[1], xd[2], xd[3]);
        let (r, s, cog) = (wd[1], wd[2], wd[3]);
        let cig = ci_n / prm.groups;
        let co_n = cog * prm.groups;
        let [pt, pb, pl, pr] = prm.padding.map(|v| v as isize);
        let [sh, sw] = prm.stride.map(|v| v as isize);
        let [dh, dw] = prm.dilation.map(|v| v as isize);
        let ho = (hi as isize - 1) * sh - pt - pb + dh * (r as isize - 1) + op[0] as isize + 1;
        let wo = (wi as isize - 1) * sw - pl - pr + dw * (s as isize - 1) + op[1] as isize + 1;
        let (xv, wv) = (x.to_f64_vec(), w.to_f64_vec());
        let mut y = vec![0.0; n * (ho * wo) as usize * co_n];
        for ni in 0..n {
            for h in 0..hi {
                for ww in 0..wi {
                    for ci in 0..ci_n {
                        let grp = ci / cig;
                        for ri in 0..r {
                            for si in 0..s {
                                let oh = h as isize * sh - pt + ri as isize * dh;
                                let ow = ww as isize * sw - pl + si as isize * dw;
                                if oh < 0 || oh >= ho || ow < 0 || ow >= wo {
                                    continue;
                                }
                                for co in 0..cog {
                                    let yo = ((ni as isize * ho + oh) * wo + ow) as usize * co_n
                                        + grp * cog
                                        + co;
                                    y[yo] += xv[((ni * hi + h) * wi + ww) * ci_n + ci]
                                        * wv[((ci * r + ri) * s + si) * cog + co];
                                }
                            }
                        }
                    }
                }
            }
        }
        if let Some(b) = b {
            let bv = b.to_f64_vec();
            y.iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v += bv[i % co_n]);
        }
        (y, [n, ho as usize, wo as usize, co_n])
    }

    /// (input dims, C_out/groups, R, S, params, output_padding).
    type Config = ([usize; 4], usize, usize, usize, Conv2dParams, [usize; 2]);

    fn configs() -> Vec<Config> {
        let p = Conv2dParams::new;
        vec![
            ([2, 3, 4, 3], 2, 4, 4, p().stride(2).padding(1), [0, 0]),
            ([1, 3, 3, 2], 3, 3, 3, p().stride(2).padding(1), [1, 1]),
            (
                [1, 4, 3, 4],
                1,
                3,
                2,
                p().stride_hw(2, 3).padding_tblr(1, 0, 0, 2).groups(2),
                [1, 2],
            ),
            ([2, 3, 3, 2], 2, 3, 3, p().dilation(2), [0, 0]),
            ([1, 5, 4, 3], 2, 1, 1, p(), [0, 0]),
            ([1, 4, 4, 4], 1, 3, 3, p().groups(4).padding(1), [0, 0]),
        ]
    }

    #[test]
    fn matches_direct_scatter_loops() {
        let mut rng = Rng::new(31);
        for (xd, cog, r, s, prm, op) in configs() {
            for dt in [DType::F64, DType::F32] {
                let x = Tensor::randn(xd, 1.0, dt, &mut rng);
                let w = Tensor::randn([xd[3], r, s, cog], 1.0, dt, &mut rng);
                let b = Tensor::randn([cog * prm.groups], 1.0, dt, &mut rng);
                let tape = Tape::no_grad();
                let (xv, wv, bv) = (
                    tape.constant(x.clone()),
                    tape.constant(w.clone()),
                    tape.constant(b.clone()),
                );
                let y = conv_transpose2d(&tape, &xv, &wv, Some(&bv), prm, op).unwrap();
                let (want, dims) = naive(&x, &w, Some(&b), prm, op);
                assert_eq!(y.dims(), dims, "{prm:?}");
                let tol = if dt == DType::F64 { 1e-12 } else { 1e-5 };
                for (a, e) in y.value().to_f64_vec().iter().zip(&want) {
                    assert!(
                        (a - e).abs() <= tol * (1.0 + e.abs()),
                        "{prm:?}: {a} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn generator_upsampling_doubles_size() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::zeros([2, 7, 5, 8], DType::F32));
        let w = tape.constant(Tensor::zeros([8, 4, 4, 3], DType::F32));
        let y = conv_transpose2d(
            &tape,
            &x,
            &w,
            None,
            Conv2dParams::new().stride(2).padding(1),
            [0, 0],
        )
        .unwrap();
        assert_eq!(y.dims(), [2, 14, 10, 3]);
    }

    #[test]
    fn gradcheck_every_config() {
        let mut rng = Rng::new(32);
        for (xd, cog, r, s, prm, op) in configs() {
            let x = Tensor::randn(xd, 1.0, DType::F64, &mut rng);
            let w = Tensor::randn([xd[3], r, s, cog], 1.0, DType::F64, &mut rng);
            let b = Tensor::randn([cog * prm.groups], 1.0, DType::F64, &mut rng);
            check_gradients(&[x, w, b], 1e-6, |t, v| {
                conv_transpose2d(t, &v[0], &v[1], Some(&v[2]), prm, op)
            })
            .unwrap_or_else(|e| panic!("{prm:?}: {e}"));
        }
    }

    #[test]
    fn matches_pytorch_values() {
        // import torch
        // x = (torch.arange(1*2*3*2, dtype=torch.float64).reshape(1,2,3,2) / 4 - 1).permute(0,3,1,2)  # NHWC -> NCHW
        // w = (torch.arange(2*4*4*3, dtype=torch.float64).reshape(2,4,4,3) / 20 - 2).permute(0,3,1,2)  # [Cin,R,S,Cout] -> [Cin,Cout,kH,kW]
        // b = torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)
        // y = torch.nn.functional.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
        // print(y.permute(0,2,3,1).flatten().tolist())
        let x: Vec<f64> = (0..12).map(|v| v as f64 / 4.0 - 1.0).collect();
        let w: Vec<f64> = (0..96).map(|v| v as f64 / 20.0 - 2.0).collect();
        let tape = Tape::no_grad();
        let xv = tape.constant(Tensor::from_f64s(&x, [1, 2, 3, 2], DType::F64).unwrap());
        let wv = tape.constant(Tensor::from_f64s(&w, [2, 4, 4, 3], DType::F64).unwrap());
        let bv = tape.constant(Tensor::from_f64s(&[0.1, 0.2, -0.3], [3], DType::F64).unwrap());
        let prm = Conv2dParams::new().stride(2).padding(1);
        let y = conv_transpose2d(&tape, &xv, &wv, Some(&bv), prm, [1, 1]).unwrap();
        assert_eq!(y.dims(), [1, 5, 7, 3]);
        for (a, e) in y.value().to_f64_vec().iter().zip(PYTORCH) {
            assert!((a - e).abs() < 1e-12, "{a} vs {e}");
        }
    }

    const PYTORCH: [f64; 105] = [
        0.4875, 0.5, -0.0875, 0.675, 0.65, 0.025, 0.3, 0.275, -0.35, 0.575, 0.65, 0.125, 0.5,
        0.575, 0.05, 0.425, 0.5375, 0.05, 0.4625, 0.575, 0.0875, -1.075, -1.0, -1.525, -2.65, -2.5,
        -2.95, -2.5, -2.35, -2.8, -2.85, -2.5, -2.75, -2.1, -1.75, -2.0, -0.75, -0.475, -0.8,
        -0.225, 0.05, -0.275, -1.375, -1.3, -1.825, -2.05, -1.9, -2.35, -1.9, -1.75, -2.2, 0.15,
        0.5, 0.25, 0.9, 1.25, 1.0, 1.35, 1.625, 1.3, 1.875, 2.15, 1.825, 1.0875, 1.25, 0.8125,
        2.475, 2.75, 2.425, 3.0, 3.275, 2.95, 3.575, 3.95, 3.725, 4.4, 4.775, 4.55, 2.675, 2.9375,
        2.6, 3.1625, 3.425, 3.0875, 1.8375, 2.0, 1.5625, 4.575, 4.85, 4.525, 5.1, 5.375, 5.05,
        6.875, 7.25, 7.025, 7.7, 8.075, 7.85, 4.625, 4.8875, 4.55, 5.1125, 5.375, 5.0375,
    ];

    #[test]
    fn bad_arguments_are_errors() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::zeros([1, 3, 3, 4], DType::F32));
        let w = tape.constant(Tensor::zeros([3, 4, 4, 2], DType::F32));
        let e = conv_transpose2d(&tape, &x, &w, None, Conv2dParams::new(), [0, 0])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("conv_transpose2d")
                && e.contains("[1, 3, 3, 4]")
                && e.contains("[3, 4, 4, 2]"),
            "{e}"
        );
        let w = tape.constant(Tensor::zeros([4, 4, 4, 2], DType::F32));
        assert!(
            conv_transpose2d(&tape, &x, &w, None, Conv2dParams::new().stride(2), [2, 0]).is_err()
        );
        assert!(
            conv_transpose2d(&tape, &x, &w, None, Conv2dParams::new().padding(5), [0, 0]).is_err()
        );
        let b = tape.constant(Tensor::zeros([4], DType::F32));
        assert!(conv_transpose2d(&tape, &x, &w, Some(&b), Conv2dParams::new(), [0, 0]).is_err());
    }
}
