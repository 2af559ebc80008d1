//! conv2d in bf16 on tensor cores (kernels/conv_bf16.cu): the fprop
//! (bf16 activations and weights, f32 accumulation, f32 or bf16 output) and
//! the wgrad (bf16 activations and output gradient, f32 weight gradient);
//! and conv2d under a bf16 tape ([`Autocast`]), with CPU references: the
//! forward, the input gradient (one fprop over flipped weights per stride
//! phase, in [`super::bf16_dgrad`]) and the weight gradient.
//!
//! The kernel needs C % 8 == 0 (16-byte loads along the reduction), so
//! [`Bf16Nhwc::from_f32`] pads the channels with zeros while converting: the
//! 3-channel stem becomes 8 channels, which adds zero products only.
//! Groups = 1 only. That operand type, the fprop block tiles and the
//! checked kernel geometry are in bf16_layout.rs (re-exported here), which
//! the dgrad shares.

pub use super::bf16_layout::{kernel_geometry, Bf16Nhwc, FpropTile, CHANNEL_ALIGN};

use super::bf16_dgrad::conv2d_dgrad_bf16;
use super::bf16_layout::OP;
use super::cuda::{params, ConvParams};
use super::geom::{Conv2dGeom, Conv2dParams};
use super::{dgrad_t, forward_t, wgrad_t};
use crate::backend::cpu::Float;
use crate::backend::cuda::launcher::{empty, opt_ptr, ptr, same_gpu, zeros};
use crate::backend::cuda::CudaDevice;
use crate::{with_dtype, Error, Result, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::Arc;

/// y [N, P, Q, K] = conv(x, w) (+ bias), f32.
pub fn conv2d_fprop_bf16(
    x: &Bf16Nhwc,
    w: &Bf16Nhwc,
    bias: Option<&Tensor>,
    prm: Conv2dParams,
) -> Result<Tensor> {
    conv2d_fprop_bf16_on(None, x, w, bias, prm)
}

/// [`conv2d_fprop_bf16`] on a named block tile (None: the launcher's
/// pick): the benches and the GPU tests run the tiles side by side.
pub fn conv2d_fprop_bf16_on(
    tile: Option<FpropTile>,
    x: &Bf16Nhwc,
    w: &Bf16Nhwc,
    bias: Option<&Tensor>,
    prm: Conv2dParams,
) -> Result<Tensor> {
    let run = Launch::new(x, w, bias, prm)?;
    let y = empty(&run.dev, run.g.out_dims())?;
    run.launch(tile, "conv_bf16_fprop_f32", x, w, bias, ptr(&y, OP)?)?;
    Ok(y)
}

/// y [N, P, Q, K] = conv(x, w) (+ bias), rounded to bf16 once at the end;
/// K must be a multiple of [`CHANNEL_ALIGN`] (no padding to write).
pub fn conv2d_fprop_bf16_out(
    x: &Bf16Nhwc,
    w: &Bf16Nhwc,
    bias: Option<&Tensor>,
    prm: Conv2dParams,
) -> Result<Bf16Nhwc> {
    let run = Launch::new(x, w, bias, prm)?;
    let g = &run.g;
    if g.k % CHANNEL_ALIGN != 0 {
        return Err(Error::shape(
            OP,
            format!(
                "a bf16 output needs K % {CHANNEL_ALIGN} == 0, found K = {} (weight {:?})",
                g.k,
                w.dims()
            ),
        ));
    }
    let y = Bf16Nhwc::alloc(&run.dev, g.out_dims(), g.k)?;
    run.launch(None, "conv_bf16_fprop_bf16", x, w, bias, y.storage.ptr())?;
    Ok(y)
}

/// conv2d under a bf16 tape ([`crate::autograd::Precision`]), for
/// groups = 1: every product reads bf16-rounded operands and accumulates in
/// f32. The forward reads x and w; the input gradient dy and w (one fprop
/// over flipped weights per stride phase, a single one at stride 1:
/// [`super::bf16_dgrad`]); the weight gradient x and dy. On a GPU those
/// are the tensor-core kernels; x and dy come in bf16 from the copies their
/// producers attached (batch norm + ReLU, the SE block end, batch norm's
/// input gradient: [`Tensor::with_bf16_copy`]) or are converted once, and
/// the forward's bf16 x is kept for the weight gradient, whose kernel
/// reads it instead of x in f32. On the host they are the f32 ops on
/// rounded copies, which give the same sums (a product of two bf16 values
/// is exact in f32) up to the order of the additions.
///
/// Grouped convolutions (no bf16 kernel) keep the f32 forward and input
/// gradient, and their weight gradient reads TF32-rounded x and dy (10
/// explicit mantissa bits, ties away from zero, as `cvt.rna.tf32.f32`): the
/// `conv_wgrad*_tf32` kernels on a GPU, the f32 wgrad of rounded copies on
/// the host.
pub(crate) struct Autocast {
    /// The forward's bf16 copy of x (GPU, groups = 1).
    x16: Option<Bf16Nhwc>,
}

impl Autocast {
    /// The forward: y and what the backward keeps.
    pub(crate) fn forward(
        g: &Conv2dGeom,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<(Tensor, Autocast)> {
        if g.prm.groups != 1 {
            return Ok((forward_t(g, x, w, bias)?, Autocast { x16: None }));
        }
        if x.cuda_device().is_some() {
            let x16 = Bf16Nhwc::of(x)?;
            let y = conv2d_fprop_bf16(&x16, &Bf16Nhwc::from_f32(w)?, bias, g.prm)?;
            return Ok((y, Autocast { x16: Some(x16) }));
        }
        let y = forward_t(g, &round_to_bf16(x)?, &round_to_bf16(w)?, bias)?;
        Ok((y, Autocast { x16: None }))
    }

    /// Whether [`Autocast::backward`] adds the input gradient onto an
    /// earlier one in its kernel: the bf16 dgrad, which runs where the
    /// forward kept a bf16 x (a GPU, groups = 1).
    pub(crate) fn dgrad_adds_onto(&self) -> bool {
        self.x16.is_some()
    }

    /// The input and weight gradients for output gradient `dy`, each where
    /// `need` asks for it; the input gradient added onto `onto` (which only
    /// a path where [`Autocast::dgrad_adds_onto`] may be given).
    pub(crate) fn backward(
        &self,
        g: &Conv2dGeom,
        (x, w): (&Tensor, &Tensor),
        dy: &Tensor,
        need: [bool; 2],
        onto: Option<Tensor>,
    ) -> Result<[Option<Tensor>; 2]> {
        if onto.is_some() && !(need[0] && self.dgrad_adds_onto()) {
            return Err(crate::Error::Tape(
                "conv2d: an input gradient to add onto, on a path that does not add".into(),
            ));
        }
        if g.prm.groups != 1 {
            let dx = need[0]
                .then(|| dgrad_t("conv2d", g, dy, w, None))
                .transpose()?;
            let dw = need[1]
                .then(|| wgrad_tf32(g, x, dy, w.shape()))
                .transpose()?;
            return Ok([dx, dw]);
        }
        let Some(x16) = &self.x16 else {
            // Host: the f32 ops on rounded copies.
            let r = round_to_bf16;
            let dx = need[0]
                .then(|| dgrad_t("conv2d", g, &r(dy)?, &r(w)?, None))
                .transpose()?;
            let dw = need[1]
                .then(|| wgrad_t("conv2d", g, &r(x)?, &r(dy)?, w.shape()))
                .transpose()?;
            return Ok([dx, dw]);
        };
        if !need[0] && !need[1] {
            return Ok([None, None]);
        }
        let dy16 = Bf16Nhwc::of(dy)?;
        let dx = need[0]
            .then(|| conv2d_dgrad_bf16(&dy16, w, g, onto))
            .transpose()?;
        let dw = need[1]
            .then(|| {
                let wd: [usize; 4] = w.dims().try_into().expect("conv2d checked a rank-4 weight");
                conv2d_wgrad_bf16(x16, &dy16, wd, g.prm)
            })
            .transpose()?;
        Ok([dx, dw])
    }
}

/// The weight gradient of a grouped conv under a bf16 tape: the products of
/// TF32-rounded x and dy, accumulated in f32 (see [`Autocast`]).
fn wgrad_tf32(g: &Conv2dGeom, x: &Tensor, dy: &Tensor, w_shape: &crate::Shape) -> Result<Tensor> {
    if let Some(dev) = x.cuda_device() {
        return super::cuda::wgrad(dev, "conv2d", g, (x, dy), w_shape, true);
    }
    wgrad_t(
        "conv2d",
        g,
        &round_to_tf32(x)?,
        &round_to_tf32(dy)?,
        w_shape,
    )
}

/// A host tensor with every value rounded to TF32 (nearest, ties away from
/// zero, as `cvt.rna.tf32.f32`), kept in its dtype; NaN and Inf unchanged
/// (f64 values are taken to f32 first, as a CUDA tensor holds them).
pub fn round_to_tf32(t: &Tensor) -> Result<Tensor> {
    map_values(t, |a| {
        let u = (a as f32).to_bits();
        if u & 0x7f80_0000 == 0x7f80_0000 {
            return a as f32 as f64;
        }
        f32::from_bits((u + 0x1000) & 0xffff_e000) as f64
    })
}

/// A host tensor with every value rounded to the nearest bf16 (ties to
/// even, as kernels/common.cuh's `mt_f32_to_bf16`), kept in its dtype.
pub fn round_to_bf16(t: &Tensor) -> Result<Tensor> {
    map_values(t, |a| half::bf16::from_f64(a).to_f64())
}

/// `f` applied to every value of a host tensor, in f64, kept in its dtype.
fn map_values(t: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor> {
    with_dtype!(t.dtype(), T => {
        let v: Vec<T> = t.data::<T>()?.iter().map(|&a| T::from_f64(f(a.to_f64()))).collect();
        Tensor::from_vec(v, t.shape().clone())
    })
}

/// Mirrors `Bf16WgradParams` in kernels/conv_bf16.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct Bf16WgradParams {
    conv: ConvParams,
    ldy: i32,
    c_out: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for Bf16WgradParams {}

/// A block tile of the bf16 wgrad (`conv_bf16_wgrad_body<BM, BN>`): rows
/// are output channels, columns (r, s, c); one warp per 64 x 32.
struct WgradTile {
    kernel: &'static str,
    rows: usize,
    cols: usize,
    /// Resident blocks per SM (ptxas's registers, the shared memory): the
    /// split-K target.
    per_sm: usize,
}

impl WgradTile {
    /// 64 x 128 where K <= 64 (154 registers x 128 threads); the wide
    /// 128 x 128 (8 warps) where K and R*S*C both reach 128; else 128 x 64
    /// (128 registers x 128 threads).
    fn pick(k: usize, rsc: usize) -> WgradTile {
        let (kernel, rows, cols, per_sm) = match (k, rsc) {
            (..=64, _) => ("conv_bf16_wgrad_m64", 64, 128, 3),
            (128.., 128..) => ("conv_bf16_wgrad_wide", 128, 128, 2),
            _ => ("conv_bf16_wgrad", 128, 64, 4),
        };
        WgradTile {
            kernel,
            rows,
            cols,
            per_sm,
        }
    }

    fn threads(&self) -> u32 {
        (self.rows / 64 * self.cols / 32 * 32) as u32
    }

    /// 3 stages of 32 pixel rows of (rows + 8) and (cols + 8) bf16: 39936
    /// bytes, 52224 for the wide tile.
    fn shared_bytes(&self) -> u32 {
        (3 * 32 * (self.rows + 8 + self.cols + 8) * 2) as u32
    }
}

/// dw [K, R, S, C] (f32, C before padding) = the weight gradient of conv2d
/// over `x` for the output gradient `dy`: the products of their bf16 values,
/// accumulated in f32 on tensor cores (`conv_bf16_wgrad*`). `w_dims` are the
/// weight's logical dims; groups = 1 only.
pub fn conv2d_wgrad_bf16(
    x: &Bf16Nhwc,
    dy: &Bf16Nhwc,
    w_dims: [usize; 4],
    prm: Conv2dParams,
) -> Result<Tensor> {
    let g = kernel_geometry(x.dims, w_dims, prm)?;
    let dev = x.device().clone();
    if dy.dims != [g.n, g.p, g.q, g.k] {
        return Err(Error::shape(
            OP,
            format!(
                "output gradient {:?} for the output [{}, {}, {}, {}] of x {:?} and weight {w_dims:?}",
                dy.dims, g.n, g.p, g.q, g.k, x.dims
            ),
        ));
    }
    same_gpu(OP, &dev, dy.device())?;
    let pixels = g.n * g.p * g.q;
    if pixels * dy.padded > i32::MAX as usize {
        return Err(Error::shape(
            OP,
            format!(
                "the output gradient {:?} (padded to {} channels) needs 64-bit indices",
                dy.dims, dy.padded
            ),
        ));
    }
    let rsc = g.r * g.s * g.c;
    let tile = WgradTile::pick(g.k, rsc);
    let (row_tiles, col_tiles) = (g.k.div_ceil(tile.rows), rsc.div_ceil(tile.cols));
    let splits = super::cuda::wgrad_splits(&dev, row_tiles * col_tiles, pixels, tile.per_sm)
        .min(65_535 / row_tiles);
    let p = Bf16WgradParams {
        conv: params(OP, &g, false)?.with_splits(splits),
        ldy: dy.padded as i32,
        c_out: w_dims[3] as i32,
    };
    let dw = zeros(&dev, w_dims)?;
    let cfg = LaunchConfig {
        grid_dim: (col_tiles as u32, (row_tiles * splits) as u32, 1),
        block_dim: (tile.threads(), 1, 1),
        shared_mem_bytes: tile.shared_bytes(),
    };
    let ptrs = [x.storage.ptr(), dy.storage.ptr(), ptr(&dw, OP)?];
    // SAFETY: Bf16WgradParams mirrors the kernel's struct and describes x
    // (padded channels), dy (rows of ldy) and dw [K, R, S, c_out], which is
    // zeroed for the split-K atomics.
    unsafe { dev.launch(tile.kernel, cfg, &p, &ptrs)? };
    Ok(dw)
}

/// A checked fprop launch: device, geometry and the kernel's parameters.
struct Launch {
    dev: Arc<CudaDevice>,
    g: Conv2dGeom,
    p: ConvParams,
}

impl Launch {
    /// Checks the geometry, the devices and the bias.
    fn new(x: &Bf16Nhwc, w: &Bf16Nhwc, bias: Option<&Tensor>, prm: Conv2dParams) -> Result<Launch> {
        let g = kernel_geometry(x.dims, w.dims, prm)?;
        let dev = x.device().clone();
        same_gpu(OP, &dev, w.device())?;
        if let Some(b) = bias {
            same_gpu(OP, &dev, b.cuda(OP)?.device())?;
            if b.dims() != [g.k] {
                return Err(Error::shape(
                    OP,
                    format!("bias {} for {} output channels", b.shape(), g.k),
                ));
            }
        }
        let p = params(OP, &g, bias.is_some())?;
        Ok(Launch { dev, g, p })
    }

    /// Runs `kernel` (f32 or bf16 output) on `tile` (None: the launcher's
    /// pick), writing to device address `y`.
    fn launch(
        &self,
        tile: Option<FpropTile>,
        kernel: &str,
        x: &Bf16Nhwc,
        w: &Bf16Nhwc,
        bias: Option<&Tensor>,
        y: u64,
    ) -> Result<()> {
        let g = &self.g;
        let rows = g.n * g.p * g.q;
        let tile = tile.map_or_else(|| FpropTile::for_launch(&self.dev, rows, g.k), Ok)?;
        let cfg = tile.config(rows, g.k);
        let kernel = format!("{kernel}{}", tile.suffix);
        let ptrs = [x.storage.ptr(), w.storage.ptr(), opt_ptr(bias, OP)?, y];
        // SAFETY: ConvParams mirrors the kernel's struct and describes x, w
        // (padded channels), bias [K] and y [N, P, Q, K].
        unsafe { self.dev.launch(&kernel, cfg, &self.p, &ptrs) }
    }
}
