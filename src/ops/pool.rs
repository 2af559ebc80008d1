//! 2-D pooling over NHWC activations: max_pool2d (argmax backward),
//! avg_pool2d, and the global average / max pools [N, H, W, C] -> [N, C].
//!
//! Window placement follows PyTorch: output size
//! `floor_or_ceil((H + 2·pad - kernel) / stride) + 1`, and with `ceil_mode`
//! a last window that would start in the bottom/right padding is dropped, so
//! every window overlaps the input. Padding is symmetric and at most half the
//! kernel, as in PyTorch.

mod cuda;

use crate::backend::cpu::Float;
use crate::{with_dtype, Error, Result, Tape, Tensor, Var};

/// Kernel, stride and padding (rows, cols) of a pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Added on both sides: (top and bottom, left and right).
    pub padding: [usize; 2],
    pub ceil_mode: bool,
    /// avg_pool2d only. True (PyTorch's default): the divisor counts padded
    /// positions, i.e. it is the window's overlap with the *padded* input
    /// (smaller than kernel² only where a ceil_mode window runs past the
    /// padding). False: only real input elements are counted.
    pub count_include_pad: bool,
}

impl Pool2dParams {
    /// A square `kernel` moved by `stride`, no padding, floor mode, count_include_pad.
    pub fn new(kernel: usize, stride: usize) -> Self {
        Pool2dParams {
            kernel: [kernel, kernel],
            stride: [stride, stride],
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    pub fn padding(mut self, p: usize) -> Self {
        self.padding = [p, p];
        self
    }

    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }

    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.count_include_pad = on;
        self
    }
}

/// Output length along one axis (PyTorch's pooling_output_shape).
fn out_len(len: usize, k: usize, s: usize, p: usize, ceil: bool) -> usize {
    let span = len + 2 * p - k;
    let mut out = if ceil { span.div_ceil(s) } else { span / s } + 1;
    if ceil && (out - 1) * s >= len + p {
        out -= 1;
    }
    out
}

#[derive(Clone, Copy)]
enum Kind {
    Max,
    Avg,
}

/// One output position's window: rows `h0..h1`, cols `w0..w1` clipped to the
/// input, and the avg divisor.
struct Window {
    h0: usize,
    h1: usize,
    w0: usize,
    w1: usize,
    divisor: usize,
}

#[derive(Clone, Copy)]
struct Geom {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    p: usize,
    q: usize,
    prm: Pool2dParams,
}

impl Geom {
    fn new(op: &'static str, dims: &[usize], prm: Pool2dParams) -> Result<Self> {
        if dims.len() != 4 || dims.contains(&0) {
            return Err(Error::shape(
                op,
                format!("input {dims:?} must be a non-empty NHWC tensor"),
            ));
        }
        let ([kh, kw], [sh, sw], [ph, pw]) = (prm.kernel, prm.stride, prm.padding);
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || 2 * ph > kh || 2 * pw > kw {
            return Err(Error::arg(
                op,
                format!(
                    "kernel and stride must be >= 1 and padding at most half the kernel: {prm:?}"
                ),
            ));
        }
        if kh > dims[1] + 2 * ph || kw > dims[2] + 2 * pw {
            return Err(Error::shape(
                op,
                format!(
                    "kernel {:?} is larger than the padded input {dims:?}",
                    prm.kernel
                ),
            ));
        }
        Ok(Geom {
            n: dims[0],
            h: dims[1],
            w: dims[2],
            c: dims[3],
            p: out_len(dims[1], kh, sh, ph, prm.ceil_mode),
            q: out_len(dims[2], kw, sw, pw, prm.ceil_mode),
            prm,
        })
    }

    fn window(&self, op: usize, oq: usize) -> Window {
        let ([kh, kw], [sh, sw], [ph, pw]) = (self.prm.kernel, self.prm.stride, self.prm.padding);
        // Window start in padded coordinates; the padded input spans 0..h + 2·ph.
        let (a, b) = (op * sh, oq * sw);
        let (ae, be) = ((a + kh).min(self.h + 2 * ph), (b + kw).min(self.w + 2 * pw));
        let (h0, h1) = (
            a.saturating_sub(ph),
            (a + kh).saturating_sub(ph).min(self.h),
        );
        let (w0, w1) = (
            b.saturating_sub(pw),
            (b + kw).saturating_sub(pw).min(self.w),
        );
        let divisor = if self.prm.count_include_pad {
            (ae - a) * (be - b)
        } else {
            (h1 - h0) * (w1 - w0)
        };
        Window {
            h0,
            h1,
            w0,
            w1,
            divisor,
        }
    }

    /// Calls `f(output_row_offset, window, image_offset)` for every output
    /// position; offsets point at channel 0.
    fn for_each_window(&self, mut f: impl FnMut(usize, &Window, usize)) {
        for n in 0..self.n {
            for op in 0..self.p {
                for oq in 0..self.q {
                    f(
                        ((n * self.p + op) * self.q + oq) * self.c,
                        &self.window(op, oq),
                        n * self.h * self.w * self.c,
                    );
                }
            }
        }
    }
}

fn pool(
    tape: &Tape,
    op: &'static str,
    x: &Var,
    prm: Pool2dParams,
    kind: Kind,
    global: bool,
) -> Result<Var> {
    let g = Geom::new(op, x.dims(), prm)?;
    let c = g.c;
    let out_dims = if global {
        vec![g.n, c]
    } else {
        vec![g.n, g.p, g.q, c]
    };
    let in_shape = x.shape().clone();
    if let (Some(dev), true, Kind::Avg) = (x.value().cuda_device().cloned(), global, kind) {
        let y = cuda::global_avg_forward(&dev, op, x.value())?;
        // The SE squeeze's input also feeds the channel scale, whose
        // gradient reaches it first: the backward adds onto it in place.
        return tape.record_accumulating(op, &[x], y, move |dy, _, pending| {
            Ok(vec![Some(cuda::global_avg_backward(
                &dev,
                op,
                dy,
                &in_shape,
                pending.take(0),
            )?)])
        });
    }
    if let Some(dev) = x.value().cuda_device().cloned() {
        let p = cuda::PoolParams::new(op, &g, kind)?;
        let (y, argmax) = cuda::forward(&dev, op, &p, x.value(), out_dims.into())?;
        return tape.record(op, &[x], y, move |dy, _| {
            Ok(vec![Some(cuda::backward(
                &dev,
                op,
                &p,
                dy,
                argmax.as_ref(),
                &in_shape,
            )?)])
        });
    }
    let (y, argmax) = with_dtype!(x.value().dtype(), T => {
        let xd = x.value().data::<T>()?;
        let mut y = vec![T::ZERO; g.n * g.p * g.q * c];
        let mut argmax = Vec::new();
        if let Kind::Max = kind {
            argmax = vec![0usize; y.len()];
        }
        g.for_each_window(|o, win, base| {
            let (yr, first) = (&mut y[o..o + c], ((win.h0 * g.w) + win.w0) * c + base);
            match kind {
                Kind::Max => {
                    let am = &mut argmax[o..o + c];
                    yr.copy_from_slice(&xd[first..first + c]);
                    am.iter_mut().enumerate().for_each(|(j, a)| *a = first + j);
                    for hh in win.h0..win.h1 {
                        for ww in win.w0..win.w1 {
                            let off = (hh * g.w + ww) * c + base;
                            // Zipped, not indexed: no bounds checks in the
                            // channel loop, so it vectorises.
                            let taps = (off..off + c).zip(&xd[off..off + c]);
                            for ((y, a), (i, &v)) in yr.iter_mut().zip(am.iter_mut()).zip(taps) {
                                // A NaN wins and stays (v is NaN exactly when it is
                                // unordered with itself), as in PyTorch.
                                if v > *y || v.partial_cmp(&v).is_none() {
                                    *y = v;
                                    *a = i;
                                }
                            }
                        }
                    }
                }
                Kind::Avg => {
                    for hh in win.h0..win.h1 {
                        for ww in win.w0..win.w1 {
                            let off = (hh * g.w + ww) * c + base;
                            yr.iter_mut().zip(&xd[off..off + c]).for_each(|(a, &v)| *a += v);
                        }
                    }
                    let inv = T::ONE / T::from_f64(win.divisor as f64);
                    yr.iter_mut().for_each(|a| *a *= inv);
                }
            }
        });
        (Tensor::from_vec(y, out_dims)?, argmax)
    });
    tape.record(op, &[x], y, move |dy, _| {
        let dx = with_dtype!(dy.dtype(), T => {
            let gd = dy.data::<T>()?;
            let mut dx = vec![T::ZERO; in_shape.numel()];
            match kind {
                Kind::Max => argmax.iter().zip(gd).for_each(|(&i, &v)| dx[i] += v),
                Kind::Avg => g.for_each_window(|o, win, base| {
                    let inv = T::ONE / T::from_f64(win.divisor as f64);
                    for hh in win.h0..win.h1 {
                        for ww in win.w0..win.w1 {
                            let off = (hh * g.w + ww) * c + base;
                            dx[off..off + c].iter_mut().zip(&gd[o..o + c]).for_each(|(a, &v)| *a += v * inv);
                        }
                    }
                }),
            }
            Tensor::from_vec(dx, in_shape.clone())?
        });
        Ok(vec![Some(dx)])
    })
}

/// Max over each window; the gradient goes to the first maximal element in
/// row-major window order. A NaN in a window makes its output NaN (PyTorch).
pub fn max_pool2d(tape: &Tape, x: &Var, prm: Pool2dParams) -> Result<Var> {
    pool(tape, "max_pool2d", x, prm, Kind::Max, false)
}

/// Mean over each window; see [`Pool2dParams::count_include_pad`] for the divisor.
pub fn avg_pool2d(tape: &Tape, x: &Var, prm: Pool2dParams) -> Result<Var> {
    pool(tape, "avg_pool2d", x, prm, Kind::Avg, false)
}

fn global_params(op: &'static str, x: &Var) -> Result<Pool2dParams> {
    match x.dims() {
        [_, h, w, _] => Ok(Pool2dParams {
            kernel: [*h, *w],
            ..Pool2dParams::new(1, 1)
        }),
        _ => Err(Error::shape(
            op,
            format!("input {} must be NHWC", x.shape()),
        )),
    }
}

/// Mean over H and W: [N, H, W, C] -> [N, C].
pub fn global_avg_pool(tape: &Tape, x: &Var) -> Result<Var> {
    pool(
        tape,
        "global_avg_pool",
        x,
        global_params("global_avg_pool", x)?,
        Kind::Avg,
        true,
    )
}

/// Max over H and W: [N, H, W, C] -> [N, C].
pub fn global_max_pool(tape: &Tape, x: &Var) -> Result<Var> {
    pool(
        tape,
        "global_max_pool",
        x,
        global_params("global_max_pool", x)?,
        Kind::Max,
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    fn t(v: &[f64], s: &[usize]) -> Tensor {
        Tensor::from_f64s(v, s, DType::F64).unwrap()
    }

    type PoolFn = fn(&Tape, &Var, Pool2dParams) -> Result<Var>;

    fn run(f: PoolFn, x: &Tensor, prm: Pool2dParams) -> (Vec<usize>, Vec<f64>) {
        let tape = Tape::no_grad();
        let y = f(&tape, &tape.constant(x.clone()), prm).unwrap();
        (y.dims().to_vec(), y.value().to_f64_vec())
    }

    #[test]
    fn output_sizes_follow_pytorch_ceil_mode_rule() {
        // torch.nn.functional.max_pool2d(torch.zeros(1,1,H,H), k, s, p, ceil_mode=c).shape[-1]
        assert_eq!(out_len(5, 2, 2, 0, false), 2);
        assert_eq!(out_len(5, 2, 2, 0, true), 3);
        assert_eq!(out_len(6, 3, 2, 1, true), 4); // the 4th window starts at padded row 6 = input row 5
        assert_eq!(out_len(5, 3, 2, 1, true), 3); // a 4th window would start in the padding: dropped
        assert_eq!(out_len(112, 3, 2, 1, false), 56);
    }

    #[test]
    fn values_by_hand() {
        // One channel 4x4 holding 0..16 (row-major).
        let x = t(&(0..16).map(f64::from).collect::<Vec<_>>(), &[1, 4, 4, 1]);
        let (d, v) = run(max_pool2d, &x, Pool2dParams::new(2, 2));
        assert_eq!((d, v), (vec![1, 2, 2, 1], vec![5., 7., 13., 15.]));
        let (_, v) = run(avg_pool2d, &x, Pool2dParams::new(2, 2));
        assert_eq!(v, [2.5, 4.5, 10.5, 12.5]);
        // 3x3 stride 2 pad 1: corner window covers {0,1,4,5} of a padded 3x3.
        let (d, v) = run(avg_pool2d, &x, Pool2dParams::new(3, 2).padding(1));
        assert_eq!(d, [1, 2, 2, 1]);
        assert_eq!(v[0], 10.0 / 9.0);
        let (_, v) = run(
            avg_pool2d,
            &x,
            Pool2dParams::new(3, 2).padding(1).count_include_pad(false),
        );
        assert_eq!(v[0], 10.0 / 4.0);
        let (_, v) = run(max_pool2d, &x, Pool2dParams::new(3, 2).padding(1));
        assert_eq!(v, [5., 7., 13., 15.]);
        let tape = Tape::no_grad();
        let xv = tape.constant(x);
        assert_eq!(
            global_avg_pool(&tape, &xv).unwrap().value().to_f64_vec(),
            [7.5]
        );
        assert_eq!(global_max_pool(&tape, &xv).unwrap().dims(), [1, 1]);
        let nan = tape.constant(t(&[1., f64::NAN, 3., 2.], &[1, 2, 2, 1]));
        let y = global_max_pool(&tape, &nan)
            .unwrap()
            .into_value()
            .to_f64_vec();
        assert!(y[0].is_nan(), "{y:?}");
    }

    #[test]
    fn matches_pytorch_values() {
        // import torch; F = torch.nn.functional
        // x = torch.sin(torch.arange(2*5*5*3, dtype=torch.float64) * 0.7).reshape(2,5,5,3).permute(0,3,1,2)  # NHWC -> NCHW
        // for y in [F.max_pool2d(x, 3, 2, 1, ceil_mode=True), F.avg_pool2d(x, 2, 2, 0, ceil_mode=True),
        //           F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)]:
        //     print(y.shape, [round(v, 12) for v in y.permute(0,2,3,1).flatten()[:12].tolist()])
        let x: Vec<f64> = (0..150).map(|i| (i as f64 * 0.7).sin()).collect();
        let x = t(&x, &[2, 5, 5, 3]);
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-11);
        let cases: [(PoolFn, Pool2dParams, [usize; 4], [f64; 12]); 3] = [
            (
                max_pool2d,
                Pool2dParams::new(3, 2).padding(1).ceil_mode(true),
                [2, 3, 3, 3],
                PT_MAX,
            ),
            (
                avg_pool2d,
                Pool2dParams::new(2, 2).ceil_mode(true),
                [2, 3, 3, 3],
                PT_AVG,
            ),
            (
                avg_pool2d,
                Pool2dParams::new(3, 2)
                    .padding(1)
                    .ceil_mode(true)
                    .count_include_pad(false),
                [2, 3, 3, 3],
                PT_AVG_EXCL,
            ),
        ];
        for (f, prm, dims, want) in cases {
            let (d, v) = run(f, &x, prm);
            assert_eq!(d, dims, "{prm:?}");
            assert!(close(&v[..12], &want), "{prm:?}: {v:?}");
        }
    }

    const PT_MAX: [f64; 12] = [
        0.863209366649,
        0.669569762197,
        0.990607355695,
        0.863209366649,
        0.669569762197,
        0.990607355695,
        0.854598908088,
        0.681963620068,
        0.992766405836,
        0.836655638536,
        0.70616945718,
        0.996241928755,
    ];
    const PT_AVG: [f64; 12] = [
        0.004284163475,
        0.16739946761,
        0.251784186439,
        -0.224145518592,
        -0.249493415657,
        -0.157500660896,
        0.452510797948,
        0.500530991209,
        0.313143638292,
        0.210802245234,
        0.069026498902,
        -0.105213488432,
    ];
    const PT_AVG_EXCL: [f64; 12] = [
        0.004284163475,
        0.16739946761,
        0.251784186439,
        4.172325e-05,
        0.001097374954,
        0.00163691407,
        0.008567115699,
        0.170605643917,
        0.252405672014,
        -0.000477288636,
        -0.005583661891,
        -0.008063951712,
    ];

    #[test]
    fn gradcheck_pools() {
        let mut rng = Rng::new(51);
        let x = Tensor::randn([2, 5, 7, 3], 1.0, DType::F64, &mut rng);
        let prms = [
            Pool2dParams::new(2, 2),
            Pool2dParams::new(3, 2).padding(1),
            Pool2dParams::new(3, 2).padding(1).ceil_mode(true),
            Pool2dParams::new(2, 2)
                .ceil_mode(true)
                .count_include_pad(false),
            Pool2dParams {
                kernel: [3, 2],
                stride: [1, 2],
                ..Pool2dParams::new(1, 1)
            },
        ];
        for prm in prms {
            check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| {
                max_pool2d(t, &v[0], prm)
            })
            .unwrap();
            check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| {
                avg_pool2d(t, &v[0], prm)
            })
            .unwrap();
        }
        check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| {
            global_avg_pool(t, &v[0])
        })
        .unwrap();
        check_gradients(&[x], 1e-6, |t, v| global_max_pool(t, &v[0])).unwrap();
    }

    #[test]
    fn bad_arguments_are_errors() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::zeros([1, 3, 3, 2], DType::F32));
        assert!(max_pool2d(&tape, &x, Pool2dParams::new(2, 0)).is_err());
        let e = max_pool2d(&tape, &x, Pool2dParams::new(2, 1).padding(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_pool2d") && e.contains("half"), "{e}");
        let e = avg_pool2d(&tape, &x, Pool2dParams::new(4, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[1, 3, 3, 2]"), "{e}");
        let flat = tape.constant(Tensor::zeros([3, 2], DType::F32));
        assert!(global_avg_pool(&tape, &flat)
            .unwrap_err()
            .to_string()
            .contains("[3, 2]"));
    }
}
