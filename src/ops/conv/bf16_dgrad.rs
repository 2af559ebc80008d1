//! The input gradient of conv2d (groups = 1) in bf16 on tensor cores: one
//! dense stride-1 convolution of dy over flipped weights per stride phase
//! (a single phase at stride 1), each run by
//! the bf16 fprop body (`conv_bf16_dgrad_phase` in kernels/conv_bf16.cu,
//! whose comment derives the decomposition).
//!
//! For stride (sh, sw), dx's pixels split into sh*sw phases
//! (a, b) = (h mod sh, w mod sw). [`phases`] computes, per phase and
//! dimension, the taps that reach dy and the phase conv that applies them
//! (a pure function, checked on the CPU against the reference dgrad by
//! running the same decomposition through the CPU conv); the GPU gathers
//! each phase's sub-kernel in bf16 and runs the phase conv, whose rows land
//! on dx's pixels (n, a + i sh, b + j sw).

use super::bf16_layout::{Bf16Nhwc, FpropTile, TILE_N};
use super::cuda::{params, ConvParams};
use super::geom::Conv2dGeom;
use crate::backend::cuda::launcher::{empty, owned_onto, ptr, same_gpu, zeros};
use crate::backend::cuda::CudaStorage;
use crate::{Error, Result, Tensor};
use cudarc::driver::DeviceRepr;

const OP: &str = "conv2d_dgrad_bf16";

/// One dimension (rows or columns) of a stride phase: dx rows
/// `residue + i * stride` for `i < len`, each the sum over `taps` kernel
/// taps. The phase conv's tap `t` is the original tap `first - t * step`
/// (last first, so that it reads dy forward) and reads dy row
/// `i - pad + t * dilation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PhaseDim {
    pub residue: usize,
    /// The phase's rows: ceil((H - residue) / stride).
    pub len: usize,
    /// Taps reaching dy from this residue; 0: the phase's dx rows are zero.
    pub taps: usize,
    /// The original tap of the phase conv's tap 0 (the last that reaches dy).
    pub first: usize,
    /// Original taps between consecutive phase taps: stride / gcd(stride, dilation).
    pub step: usize,
    /// The phase conv's leading padding: negative where it starts inside dy.
    pub pad: isize,
    /// The phase conv's dilation: dilation / gcd(stride, dilation).
    pub dilation: usize,
}

impl PhaseDim {
    /// The phase of `residue` along a dimension of `extent` input pixels,
    /// convolved with `kernel` taps at `stride`, leading padding `pad` and
    /// `dilation`.
    ///
    /// Tap r reaches dy row (h + pad - r dilation) / stride from dx row
    /// h = residue + i stride exactly when residue + pad - r dilation is a
    /// multiple of the stride. Those r repeat every stride / g (g = gcd), so
    /// the first, r0, if any, is below the stride; the j-th matching tap
    /// r0 + j step then reads dy row i + e - j dilation / g, with
    /// e = (residue + pad - r0 dilation) / stride.
    fn new(
        residue: usize,
        stride: usize,
        pad: usize,
        dilation: usize,
        kernel: usize,
        extent: usize,
    ) -> PhaseDim {
        let g = gcd(stride, dilation);
        let (step, de) = (stride / g, dilation / g);
        let len = extent.saturating_sub(residue).div_ceil(stride);
        let offset = |r: usize| (residue + pad) as isize - (r * dilation) as isize;
        let matches = (0..kernel.min(stride)).find(|&r| offset(r) % stride as isize == 0);
        let Some(r0) = matches else {
            return PhaseDim {
                residue,
                len,
                taps: 0,
                first: 0,
                step,
                pad: 0,
                dilation: de,
            };
        };
        let taps = (kernel - 1 - r0) / step + 1;
        let e = offset(r0) / stride as isize; // exact
        PhaseDim {
            residue,
            len,
            taps,
            first: r0 + (taps - 1) * step,
            step,
            pad: (de * (taps - 1)) as isize - e,
            dilation: de,
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A stride phase: its rows and columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Phase {
    pub rows: PhaseDim,
    pub cols: PhaseDim,
}

impl Phase {
    /// Whether the phase has dx pixels but no tap reaches dy from them.
    fn is_zero(&self) -> bool {
        self.rows.len * self.cols.len > 0 && self.rows.taps * self.cols.taps == 0
    }

    /// Whether the phase has dx pixels and taps: a conv to run.
    fn runs(&self) -> bool {
        self.rows.len * self.cols.len * self.rows.taps * self.cols.taps > 0
    }
}

/// The sh*sw stride phases of the dgrad of `g` (row residue major).
pub(super) fn phases(g: &Conv2dGeom) -> Vec<Phase> {
    let [sh, sw] = g.prm.stride;
    let [dh, dw] = g.prm.dilation;
    let [pt, _, pl, _] = g.prm.padding;
    (0..sh)
        .flat_map(|a| (0..sw).map(move |b| (a, b)))
        .map(|(a, b)| Phase {
            rows: PhaseDim::new(a, sh, pt, dh, g.r, g.h),
            cols: PhaseDim::new(b, sw, pl, dw, g.s, g.w),
        })
        .collect()
}

/// Mirrors `Bf16PhaseWeightParams` in kernels/conv_bf16.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct PhaseWeightParams {
    k: i32,
    r: i32,
    s: i32,
    c: i32,
    r_first: i32,
    r_step: i32,
    tr: i32,
    s_first: i32,
    s_step: i32,
    ts: i32,
    kp: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for PhaseWeightParams {}

/// Mirrors `Bf16DgradPhaseParams` in kernels/conv_bf16.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct DgradPhaseParams {
    conv: ConvParams,
    a: i32,
    b: i32,
    sh: i32,
    sw: i32,
    h: i32,
    w: i32,
    accumulate: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for DgradPhaseParams {}

/// dx [N, H, W, C] (f32) = the input gradient of conv2d `g` (any stride,
/// groups = 1) for the bf16 output gradient `dy16`
/// and the f32 weight `w` [K, R, S, C], from the products of their bf16
/// values accumulated in f32 on tensor cores.
///
/// dx is zero-filled first only where some phase has pixels but no taps
/// (e.g. all but one phase of a 1x1 stride-2 conv); the other phases write
/// every one of their pixels.
///
/// With `onto` (the gradient x already has from its other consumers, as a
/// residual block's input), the result is added onto it in place, in the
/// kernels' epilogue: no separate sum pass, and phases without taps leave
/// their pixels as they are.
pub fn conv2d_dgrad_bf16(
    dy16: &Bf16Nhwc,
    w: &Tensor,
    g: &Conv2dGeom,
    onto: Option<Tensor>,
) -> Result<Tensor> {
    conv2d_dgrad_bf16_on(None, dy16, w, g, onto)
}

/// [`conv2d_dgrad_bf16`] with every phase on a named block tile (None: the
/// launcher's pick per phase): the benches and the GPU tests run the tiles
/// side by side.
pub fn conv2d_dgrad_bf16_on(
    tile: Option<FpropTile>,
    dy16: &Bf16Nhwc,
    w: &Tensor,
    g: &Conv2dGeom,
    onto: Option<Tensor>,
) -> Result<Tensor> {
    if g.prm.groups != 1 {
        return Err(Error::arg(
            OP,
            format!(
                "groups = {}: the bf16 dgrad handles groups = 1 only",
                g.prm.groups
            ),
        ));
    }
    let wd = [g.k, g.r, g.s, g.c];
    if dy16.dims() != g.out_dims() || w.dims() != wd {
        return Err(Error::shape(
            OP,
            format!(
                "output gradient {:?} and weight {} for {g:?}: expected {:?} and {wd:?}",
                dy16.dims(),
                w.shape(),
                g.out_dims()
            ),
        ));
    }
    let dev = dy16.device().clone();
    same_gpu(OP, &dev, w.cuda(OP)?.device())?;
    let kp = dy16.padded_channels();
    let base = params(OP, g, false)?; // the 32-bit checks of dx, dy and w
    if g.n * g.p * g.q * kp > i32::MAX as usize || g.c * g.r * g.s * kp > i32::MAX as usize {
        return Err(Error::shape(
            OP,
            format!("dy or the weight with K padded to {kp} needs 64-bit indices: {g:?}"),
        ));
    }
    if g.c.div_ceil(TILE_N) > 65_535 {
        return Err(Error::shape(
            OP,
            format!("C = {}: more than 65535 column tiles of {TILE_N}", g.c),
        ));
    }
    let phases = phases(g);
    let accumulate = onto.is_some();
    let dx = match onto {
        Some(t) => owned_onto(OP, &dev, t, &g.in_dims())?,
        None if phases.iter().any(Phase::is_zero) => zeros(&dev, g.in_dims())?,
        None => empty(&dev, g.in_dims())?,
    };
    let i = |v: usize| v as i32;
    for ph in phases.iter().filter(|ph| ph.runs()) {
        let (rows, cols) = (ph.rows, ph.cols);
        // The sub-kernel [C, taps_r, taps_s, kp] in bf16 (two per f32 slot).
        let sub_len = g.c * rows.taps * cols.taps * kp;
        let sub = CudaStorage::alloc(&dev, sub_len.div_ceil(2))?;
        let wp = PhaseWeightParams {
            k: i(g.k),
            r: i(g.r),
            s: i(g.s),
            c: i(g.c),
            r_first: i(rows.first),
            r_step: -i(rows.step),
            tr: i(rows.taps),
            s_first: i(cols.first),
            s_step: -i(cols.step),
            ts: i(cols.taps),
            kp: i(kp),
        };
        // SAFETY: PhaseWeightParams mirrors the kernel's struct; w holds
        // K*R*S*C f32 values and every tap first - t step lies in 0..R
        // (0..S); sub holds sub_len bf16 values.
        unsafe {
            dev.launch(
                "conv_bf16_phase_weights",
                dev.elementwise_config(sub_len),
                &wp,
                &[ptr(w, OP)?, sub.ptr()],
            )?
        };
        let p = DgradPhaseParams {
            conv: ConvParams {
                h: base.p,
                w: base.q,
                c: i(kp),
                k: base.c,
                r: i(rows.taps),
                s: i(cols.taps),
                p: i(rows.len),
                q: i(cols.len),
                sh: 1,
                sw: 1,
                ph: rows.pad as i32,
                pw: cols.pad as i32,
                dh: i(rows.dilation),
                dw: i(cols.dilation),
                ..base
            },
            a: i(rows.residue),
            b: i(cols.residue),
            sh: base.sh,
            sw: base.sw,
            h: base.h,
            w: base.w,
            accumulate: accumulate as i32,
        };
        let m = g.n * rows.len * cols.len;
        let tile = tile.map_or_else(|| FpropTile::for_launch(&dev, m, g.c), Ok)?;
        let cfg = tile.config(m, g.c);
        // SAFETY: DgradPhaseParams mirrors the kernel's struct; dy16 holds
        // N*P*Q*kp bf16 values, sub C*taps_r*taps_s*kp, and the phase's rows
        // (n, i, j) address dx pixels (n, a + i sh, b + j sw) inside [N, H, W, C].
        unsafe {
            dev.launch(
                &format!("conv_bf16_dgrad_phase{}", tile.suffix),
                cfg,
                &p,
                &[dy16.ptr(), sub.ptr(), ptr(&dx, OP)?],
            )?
        };
    }
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Float;
    use crate::ops::conv::{dgrad, forward, Conv2dParams};
    use crate::Rng;

    fn dim(residue: usize, stride: usize, pad: usize, dilation: usize, kernel: usize) -> PhaseDim {
        PhaseDim::new(residue, stride, pad, dilation, kernel, 9)
    }

    #[test]
    fn phase_taps_of_the_resnet_stage_transitions() {
        // 3x3/2 pad 1: even rows h = 2i take tap 1 (dy row i), odd rows taps 0
        // and 2 (dy rows i + 1 and i): read forward, tap 2 first.
        let even = dim(0, 2, 1, 1, 3);
        assert_eq!((even.taps, even.first, even.pad, even.len), (1, 1, 0, 5));
        let odd = dim(1, 2, 1, 1, 3);
        assert_eq!((odd.taps, odd.first, odd.step, odd.pad), (2, 2, 2, 0));
        assert_eq!(odd.len, 4);
        // Stride 1: one phase, every tap, read last first with padding
        // dilation (R - 1) - pad (negative where the pad is wider).
        let one = dim(0, 1, 1, 1, 3);
        assert_eq!((one.taps, one.first, one.pad, one.len), (3, 2, 1, 9));
        assert_eq!(dim(0, 1, 2, 1, 1).pad, -2);
        // 1x1/2 pad 0: only even rows receive gradient.
        assert_eq!(dim(0, 2, 0, 1, 1).taps, 1);
        assert_eq!(dim(1, 2, 0, 1, 1).taps, 0);
        // 7x7/2 pad 3: 4 and 3 taps; dilation 2 at stride 2: one residue takes all.
        assert_eq!((dim(1, 2, 3, 1, 7).taps, dim(0, 2, 3, 1, 7).taps), (4, 3));
        let d = dim(1, 2, 1, 2, 3);
        assert_eq!((d.taps, d.step, d.dilation), (3, 1, 1));
        assert_eq!(dim(0, 2, 1, 2, 3).taps, 0);
    }

    /// dy [n, p, q, k] shifted and cropped so that a plain unpadded conv
    /// reads it as the phase conv does: window row i is dy row i - pad
    /// (zero outside dy), over len + dilation (taps - 1) rows (columns alike).
    fn window<T: Float>(dy: &[T], [n, p, q, k]: [usize; 4], ph: &Phase) -> (Vec<T>, [usize; 4]) {
        let extent = |d: &PhaseDim| d.len + d.dilation * (d.taps - 1);
        let (hw, ww) = (extent(&ph.rows), extent(&ph.cols));
        let mut out = vec![T::ZERO; n * hw * ww * k];
        for img in 0..n {
            for i in 0..hw {
                for j in 0..ww {
                    let (src_i, src_j) = (i as isize - ph.rows.pad, j as isize - ph.cols.pad);
                    if !(0..p as isize).contains(&src_i) || !(0..q as isize).contains(&src_j) {
                        continue;
                    }
                    let src = ((img * p + src_i as usize) * q + src_j as usize) * k;
                    let dst = ((img * hw + i) * ww + j) * k;
                    out[dst..dst + k].copy_from_slice(&dy[src..src + k]);
                }
            }
        }
        (out, [n, hw, ww, k])
    }

    /// dx by the stride-phase decomposition on the CPU: per phase the CPU
    /// conv of the windowed dy with the sub-kernel
    /// wp[c, t, u, k] = w[k, first_r - t step_r, first_s - u step_s, c],
    /// scattered to dx[n, a + i sh, b + j sw]; phases without taps stay 0.
    fn phase_dgrad<T: Float>(g: &Conv2dGeom, dy: &[T], w: &[T]) -> Vec<T> {
        let mut dx = vec![T::ZERO; g.n * g.h * g.w * g.c];
        for ph in phases(g).iter().filter(|ph| ph.runs()) {
            let (rows, cols) = (ph.rows, ph.cols);
            let mut wp = Vec::with_capacity(g.c * rows.taps * cols.taps * g.k);
            for c in 0..g.c {
                for t in 0..rows.taps {
                    for u in 0..cols.taps {
                        let (r, s) = (rows.first - t * rows.step, cols.first - u * cols.step);
                        wp.extend((0..g.k).map(|k| w[((k * g.r + r) * g.s + s) * g.c + c]));
                    }
                }
            }
            let (dyw, dims) = window(dy, g.out_dims(), ph);
            let prm = Conv2dParams::new().dilation_hw(rows.dilation, cols.dilation);
            let pg =
                Conv2dGeom::new("test", &dims, &[g.c, rows.taps, cols.taps, g.k], prm).unwrap();
            assert_eq!((pg.p, pg.q), (rows.len, cols.len), "{ph:?}");
            let y = forward(&pg, &dyw, &wp, None);
            for (row, v) in y.chunks_exact(g.c).enumerate() {
                let (img, i, j) = (row / (pg.p * pg.q), (row / pg.q) % pg.p, row % pg.q);
                let (h, x) = (
                    rows.residue + i * g.prm.stride[0],
                    cols.residue + j * g.prm.stride[1],
                );
                let o = ((img * g.h + h) * g.w + x) * g.c;
                dx[o..o + g.c].copy_from_slice(v);
            }
        }
        dx
    }

    /// The geometries the decomposition must cover: strides 1 (one phase),
    /// 2 and 3, paddings 0 to 3 (asymmetric too, and wider than the kernel's
    /// reach), 1x1, 3x3, 4x4, 7x7 and 5x2 kernels, dilation 2 and 3, odd
    /// sizes, and phases without taps.
    fn geometries() -> Vec<([usize; 4], [usize; 4], Conv2dParams)> {
        let p = Conv2dParams::new;
        vec![
            ([2, 6, 5, 3], [4, 3, 3, 3], p().padding(1)),
            ([1, 6, 7, 2], [3, 3, 3, 2], p().padding_tblr(2, 0, 1, 2)),
            ([1, 4, 4, 2], [3, 1, 1, 2], p().padding(1)),
            ([1, 9, 8, 2], [2, 3, 3, 2], p().padding(2).dilation(2)),
            ([2, 9, 7, 3], [4, 3, 3, 3], p().stride(2).padding(1)),
            ([1, 8, 8, 2], [3, 1, 1, 2], p().stride(2)),
            ([1, 11, 13, 3], [2, 7, 7, 3], p().stride(2).padding(3)),
            ([1, 8, 9, 2], [3, 4, 4, 2], p().stride(2).padding(1)),
            ([2, 10, 11, 2], [3, 3, 3, 2], p().stride(3).padding(1)),
            ([1, 10, 9, 2], [2, 3, 3, 2], p().stride(3).padding(2)),
            (
                [1, 9, 10, 2],
                [3, 3, 3, 2],
                p().stride(2).padding(2).dilation(2),
            ),
            (
                [1, 12, 11, 2],
                [2, 3, 3, 2],
                p().stride(3).padding(1).dilation(2),
            ),
            ([1, 13, 9, 2], [2, 3, 2, 2], p().stride(2).dilation_hw(3, 1)),
            (
                [1, 9, 8, 2],
                [2, 5, 2, 2],
                p().stride_hw(2, 3).padding_tblr(2, 0, 1, 2),
            ),
            (
                [1, 7, 9, 2],
                [3, 3, 3, 2],
                p().stride(2).padding_tblr(0, 2, 1, 0),
            ),
            ([1, 3, 3, 2], [2, 1, 1, 2], p().stride(3)),
            ([1, 4, 5, 2], [2, 2, 2, 2], p().stride(3).padding(2)),
        ]
    }

    fn check_decomposition<T: Float>(tol: f64) {
        let mut rng = Rng::new(7);
        for (x, w, prm) in geometries() {
            let g = Conv2dGeom::new("test", &x, &w, prm).unwrap();
            let dy: Vec<T> = (0..g.n * g.p * g.q * g.k)
                .map(|_| T::from_f64(rng.normal()))
                .collect();
            let wt: Vec<T> = (0..w.iter().product())
                .map(|_| T::from_f64(rng.normal()))
                .collect();
            let (want, got) = (dgrad(&g, &dy, &wt), phase_dgrad(&g, &dy, &wt));
            for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                let (a, b) = (a.to_f64(), b.to_f64());
                assert!(
                    (a - b).abs() <= tol * (1.0 + a.abs()),
                    "{g:?} dx[{i}]: {b} vs {a}"
                );
            }
        }
    }

    #[test]
    fn the_phase_decomposition_equals_the_reference_dgrad_f64() {
        check_decomposition::<f64>(1e-12);
    }

    #[test]
    fn the_phase_decomposition_equals_the_reference_dgrad_f32() {
        check_decomposition::<f32>(1e-5);
    }
}
