//! CUDA launchers for kernels/conv.cu (implicit GEMM over NHWC).

use super::geom::Conv2dGeom;
use crate::backend::cuda::launcher::{empty, opt_ptr, ptr, zeros};
use crate::backend::cuda::CudaDevice;
use crate::{Error, Result, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::Arc;

/// Mirrors `ConvParams` in kernels/common.cuh (conv.cu and conv_bf16.cu).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct ConvParams {
    pub(super) n: i32,
    pub(super) h: i32,
    pub(super) w: i32,
    pub(super) c: i32,
    pub(super) k: i32,
    pub(super) r: i32,
    pub(super) s: i32,
    pub(super) p: i32,
    pub(super) q: i32,
    pub(super) sh: i32,
    pub(super) sw: i32,
    pub(super) ph: i32,
    pub(super) pw: i32,
    pub(super) dh: i32,
    pub(super) dw: i32,
    pub(super) groups: i32,
    pub(super) splits: i32,
    pub(super) has_bias: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for ConvParams {}

impl ConvParams {
    /// The same geometry summed in `splits` slices.
    pub(super) fn with_splits(self, splits: usize) -> ConvParams {
        ConvParams {
            splits: splits as i32,
            ..self
        }
    }
}

/// Tile shapes (rows x columns of the implicit GEMM) of the kernels.
const TILE: usize = 128;
/// The 64-wide side of `conv_fprop_n64`, `conv_dgrad_n64` (256 x 64) and `conv_wgrad_m64` (64 x 256).
const NARROW: usize = 64;
const WIDE: usize = 256;

/// The kernels' parameters for `g` (one split); an error if 32-bit indices
/// cannot reach every element.
pub(super) fn params(op: &'static str, g: &Conv2dGeom, has_bias: bool) -> Result<ConvParams> {
    // The kernels index with 32-bit ints.
    let biggest = [
        g.n * g.h * g.w * g.c,
        g.n * g.p * g.q * g.k,
        g.k * g.r * g.s * g.c,
    ];
    if biggest.iter().any(|&v| v > i32::MAX as usize) {
        return Err(Error::shape(
            op,
            format!("the CUDA conv kernels index with 32 bits: input, output or weight of {g:?} is too large"),
        ));
    }
    // conv_fprop packs a pixel's (h, w) origin into 16-bit halves.
    let extents = [
        g.h,
        g.w,
        g.p,
        g.q,
        g.prm.padding.iter().copied().max().unwrap_or(0),
        g.prm.dilation[0] * g.r,
        g.prm.dilation[1] * g.s,
        g.prm.stride[0] * g.p,
        g.prm.stride[1] * g.q,
    ];
    if extents.iter().any(|&v| v >= 1 << 15) {
        return Err(Error::shape(
            op,
            format!("the CUDA conv kernels need heights, widths, paddings and dilated kernel extents below 32768, found {g:?}"),
        ));
    }
    let i = |v: usize| v as i32;
    Ok(ConvParams {
        n: i(g.n),
        h: i(g.h),
        w: i(g.w),
        c: i(g.c),
        k: i(g.k),
        r: i(g.r),
        s: i(g.s),
        p: i(g.p),
        q: i(g.q),
        sh: i(g.prm.stride[0]),
        sw: i(g.prm.stride[1]),
        ph: i(g.prm.padding[0]),
        pw: i(g.prm.padding[2]),
        dh: i(g.prm.dilation[0]),
        dw: i(g.prm.dilation[1]),
        groups: i(g.prm.groups),
        splits: 1,
        has_bias: has_bias as i32,
    })
}

/// `y_blocks` rows of tiles, enough `col_tile`-wide tiles for `cols`, one z per group.
fn config(y_blocks: usize, cols: usize, col_tile: usize, groups: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (
            cols.div_ceil(col_tile) as u32,
            y_blocks as u32,
            groups as u32,
        ),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The kernel of `[n64, square]` whose tile fits `cols` columns per group
/// (256 x 64 where cols <= 64: a 128-wide tile would leave half its columns
/// idle; 128 x 128 otherwise) and its grid over `rows`.
fn pick_tile(
    kernels: [&'static str; 2],
    rows: usize,
    cols: usize,
    groups: usize,
) -> (&'static str, LaunchConfig) {
    if cols <= NARROW {
        (
            kernels[0],
            config(rows.div_ceil(WIDE), cols, NARROW, groups),
        )
    } else {
        (kernels[1], config(rows.div_ceil(TILE), cols, TILE, groups))
    }
}

/// Resident blocks per SM of the conv kernels (`__launch_bounds__(256, 2)`).
const BLOCKS_PER_SM: usize = 2;
/// Split-K keeps at least this many K steps of 8 per split.
const MIN_SPLIT_STEPS: usize = 16;

/// K splits for a grid of `tiles` blocks summing over `len` indices: where
/// the grid leaves SMs without a block (a 512-channel conv on 4x4 images has
/// 32 tiles for 132 SMs), as many splits as fill two rounds of resident
/// blocks (rounded down: a few blocks of a third round would double the
/// tail), keeping at least [`MIN_SPLIT_STEPS`] steps per split. Grids of at
/// least one block per SM stay whole: there the split's pre-fill and atomic
/// adds cost about what the better balance gains.
fn k_splits(dev: &CudaDevice, tiles: usize, len: usize) -> usize {
    let sms = dev.sm_count() as usize;
    if tiles >= sms {
        return 1;
    }
    (2 * BLOCKS_PER_SM * sms / tiles)
        .min(len.div_ceil(8 * MIN_SPLIT_STEPS))
        .max(1)
}

/// Pixel splits of a wgrad grid of `tiles` blocks over `pixels` pixels: the
/// (n, p, q) sum is split until every SM has `blocks_per_sm` blocks (the
/// kernel's residency), keeping at least 256 pixels per split.
pub(super) fn wgrad_splits(
    dev: &CudaDevice,
    tiles: usize,
    pixels: usize,
    blocks_per_sm: usize,
) -> usize {
    (blocks_per_sm * dev.sm_count() as usize)
        .div_ceil(tiles)
        .min(pixels.div_ceil(256))
        .clamp(1, 4096)
}

/// Fills `out` (the fprop output of `p`) with the bias or zeros: the start
/// of the atomic sums of split-K and scatter dgrad.
fn fill_bias(dev: &Arc<CudaDevice>, p: &ConvParams, bias: u64, out: u64) -> Result<()> {
    let n = (p.n * p.p * p.q * p.k) as usize;
    // SAFETY: ConvParams mirrors the kernel's struct; out holds N*P*Q*K
    // values and bias (read only where has_bias) K.
    unsafe { dev.launch("conv_fill_bias", dev.elementwise_config(n), p, &[bias, out]) }
}

/// Launches the fprop kernel whose tile fits `p` (see [`pick_tile`]), split
/// over K (see [`k_splits`]) when its grid is small. `ptrs`: x, w, bias (or
/// 0), y.
fn launch_fprop(dev: &Arc<CudaDevice>, p: &ConvParams, ptrs: &[u64; 4]) -> Result<()> {
    let (rows, cols) = ((p.n * p.p * p.q) as usize, (p.k / p.groups) as usize);
    let (kernel, mut cfg) = pick_tile(
        ["conv_fprop_n64", "conv_fprop"],
        rows,
        cols,
        p.groups as usize,
    );
    let (gx, gy, gz) = cfg.grid_dim;
    let len = (p.r * p.s * (p.c / p.groups)) as usize;
    let splits = k_splits(dev, (gx * gy * gz) as usize, len);
    let p = ConvParams {
        splits: splits as i32,
        ..*p
    };
    if splits > 1 {
        // The splits add into y, which starts as the bias.
        fill_bias(dev, &p, ptrs[2], ptrs[3])?;
        cfg.grid_dim.1 = gy * splits as u32;
    }
    // SAFETY: ConvParams mirrors the kernel's struct; the caller's pointers
    // are x, w, bias (or 0) and y of the geometry `p` describes.
    unsafe { dev.launch(kernel, cfg, &p, ptrs) }
}

/// y [N, P, Q, K] = conv(x, w) (+ bias).
pub(super) fn fprop(
    dev: &Arc<CudaDevice>,
    g: &Conv2dGeom,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let p = params(OP, g, bias.is_some())?;
    let y = empty(dev, g.out_dims())?;
    let ptrs = [ptr(x, OP)?, ptr(w, OP)?, opt_ptr(bias, OP)?, ptr(&y, OP)?];
    launch_fprop(dev, &p, &ptrs)?;
    Ok(y)
}

/// The stride-1 dgrad as an fprop: input dy (K channels), output dx (C
/// channels), the weights flipped in (r, s) with K and C swapped, and the
/// padding that puts tap (R-1-r) of output pixel h on dy row h + ph - r dh
/// (negative where ph > dh: the fprop's bounds checks cover it).
fn flipped(p: &ConvParams) -> ConvParams {
    ConvParams {
        h: p.p,
        w: p.q,
        c: p.k,
        k: p.c,
        p: p.h,
        q: p.w,
        ph: p.dh * (p.r - 1) - p.ph,
        pw: p.dw * (p.s - 1) - p.pw,
        ..*p
    }
}

/// The weights of the stride-1 dgrad as an fprop (see [`flipped`]):
/// wf[c, r, s, k] = w[k, R-1-r, S-1-s, c] per group.
fn flipped_weights(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    g: &Conv2dGeom,
    w: &Tensor,
) -> Result<Tensor> {
    let p = params(op, g, false)?;
    let cg = g.c / g.prm.groups;
    let wf = empty(dev, [g.prm.groups * cg, g.r, g.s, g.k / g.prm.groups])?;
    let flip_ptrs = [ptr(w, op)?, ptr(&wf, op)?];
    // SAFETY: ConvParams mirrors the kernel's struct; w and wf hold K*R*S*C/groups values.
    unsafe {
        dev.launch(
            "conv_flip_weights",
            dev.elementwise_config(w.numel()),
            &p,
            &flip_ptrs,
        )?
    };
    Ok(wf)
}

/// Input channels per group up to which dgrad scatters (`conv_dgrad_scatter`):
/// a tile with so few columns would stay mostly idle (the 3-channel stem
/// fills 3 of 64), while the scatter's R*S*C/groups columns fill them.
pub(super) const SCATTER_MAX_CHANNELS: usize = 16;

/// dx [N, H, W, C] from dy [N, P, Q, K] (+ bias: conv_transpose2d's forward).
/// Few input channels scatter (see [`SCATTER_MAX_CHANNELS`]); otherwise
/// stride 1 runs the fprop kernels on flipped weights, other strides one
/// dense GEMM per stride phase (`conv_dgrad` / `conv_dgrad_n64`).
pub(super) fn dgrad(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    g: &Conv2dGeom,
    dy: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let p = params(op, g, bias.is_some())?;
    let dx = empty(dev, g.in_dims())?;
    let bias_ptr = opt_ptr(bias, op)?;
    let cg = g.c / g.prm.groups;
    if cg <= SCATTER_MAX_CHANNELS {
        // dx starts as the bias (the fill of the flipped geometry: [N, H, W, C]).
        fill_bias(dev, &flipped(&p), bias_ptr, ptr(&dx, op)?)?;
        let cfg = config(
            (g.n * g.p * g.q).div_ceil(WIDE),
            g.r * g.s * cg,
            NARROW,
            g.prm.groups,
        );
        let ptrs = [ptr(dy, op)?, ptr(w, op)?, ptr(&dx, op)?];
        // SAFETY: ConvParams mirrors the kernel's struct and describes dy, w and dx.
        unsafe { dev.launch("conv_dgrad_scatter", cfg, &p, &ptrs)? };
        return Ok(dx);
    }
    if g.prm.stride == [1, 1] {
        let wf = flipped_weights(dev, op, g, w)?;
        let ptrs = [ptr(dy, op)?, ptr(&wf, op)?, bias_ptr, ptr(&dx, op)?];
        launch_fprop(dev, &flipped(&p), &ptrs)?;
        return Ok(dx);
    }
    // One z per (group, stride phase); rows enough for the largest phase (0, 0).
    let [sh, sw] = g.prm.stride;
    let phase_rows = g.n * g.h.div_ceil(sh) * g.w.div_ceil(sw);
    let (kernel, cfg) = pick_tile(
        ["conv_dgrad_n64", "conv_dgrad"],
        phase_rows,
        cg,
        g.prm.groups * sh * sw,
    );
    if cfg.grid_dim.2 > u16::MAX as u32 {
        return Err(Error::shape(
            op,
            format!("the CUDA dgrad runs one block layer per group and stride phase, at most 65535; {g:?} has {}", cfg.grid_dim.2),
        ));
    }
    let ptrs = [ptr(dy, op)?, ptr(w, op)?, bias_ptr, ptr(&dx, op)?];
    // SAFETY: ConvParams mirrors the kernel's struct and describes dy, w, bias and dx.
    unsafe { dev.launch(kernel, cfg, &p, &ptrs)? };
    Ok(dx)
}

/// dw [K, R, S, C/groups] from x [N, H, W, C] and dy [N, P, Q, K].
///
/// With `tf32` the products run on tensor cores from TF32-rounded x and dy
/// (`conv_wgrad*_tf32`: train.precision = bf16), otherwise in f32 FMAs.
pub(super) fn wgrad(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    g: &Conv2dGeom,
    (x, dy): (&Tensor, &Tensor),
    w_shape: &crate::Shape,
    tf32: bool,
) -> Result<Tensor> {
    let mut p = params(op, g, false)?;
    let (rows, cols) = (g.k / g.prm.groups, g.r * g.s * (g.c / g.prm.groups));
    // 64 output channels x 256 (r, s, c) columns where K/groups <= 64.
    let (kernel, row_tile, col_tile) = match (rows <= NARROW, tf32) {
        (true, false) => ("conv_wgrad_m64", NARROW, WIDE),
        (true, true) => ("conv_wgrad_m64_tf32", NARROW, WIDE),
        (false, false) => ("conv_wgrad", TILE, TILE),
        (false, true) => ("conv_wgrad_tf32", TILE, TILE),
    };
    let tiles = rows.div_ceil(row_tile) * cols.div_ceil(col_tile) * g.prm.groups;
    let splits = wgrad_splits(dev, tiles, g.n * g.p * g.q, BLOCKS_PER_SM);
    p.splits = splits as i32;
    let dw = zeros(dev, w_shape.clone())?;
    let cfg = config(
        rows.div_ceil(row_tile) * splits,
        cols,
        col_tile,
        g.prm.groups,
    );
    let ptrs = [ptr(x, op)?, ptr(dy, op)?, ptr(&dw, op)?];
    // SAFETY: as in fprop; dw is zeroed for the split-K atomics.
    unsafe { dev.launch(kernel, cfg, &p, &ptrs)? };
    Ok(dw)
}
