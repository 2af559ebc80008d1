//! The operands and block tiles of kernels/conv_bf16.cu's convolutions:
//! [`Bf16Nhwc`], a bf16 tensor with its channels padded to
//! [`CHANNEL_ALIGN`], the fprop block tiles ([`FpropTile`]) and the checked
//! geometry the kernels run ([`kernel_geometry`]). The fprop and wgrad
//! (bf16.rs) and the phase-decomposed dgrad (bf16_dgrad.rs) are all built
//! on them.

use super::cuda::params;
use super::geom::{Conv2dGeom, Conv2dParams};
use crate::backend::cuda::launcher::{empty, ptr};
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::{Error, Result, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::{Arc, OnceLock};

/// The op name the bf16 convolutions' errors carry.
pub(super) const OP: &str = "conv2d_bf16";

/// Channels are padded to a multiple of this (8 bf16 = one 16-byte load).
pub const CHANNEL_ALIGN: usize = 8;

/// Block tile of kernels/conv_bf16.cu's narrow fprop: CB_BM output pixels
/// (rows) by 64 output channels (columns).
pub(super) const TILE_M: usize = 128;
pub(super) const TILE_N: usize = 64;

/// The fprop body's block tile (`conv_bf16_fprop_body<WN>`): 128 rows by
/// 64 columns with 4 warps of 64 x 32, or 128 by 128 with 8 such warps
/// (wide), whose im2col gather (A tile) serves twice the columns.
/// [`FpropTile::pick`] chooses; `MTAFFECT_CONV_TILE` (`narrow` or `wide`)
/// forces one for every bf16 fprop and dgrad launch, to measure a whole
/// training step on each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpropTile {
    /// Columns per block tile.
    pub cols: usize,
    /// Threads per block.
    pub threads: u32,
    /// The kernels' name suffix.
    pub suffix: &'static str,
}

impl FpropTile {
    pub const NARROW: FpropTile = FpropTile {
        cols: TILE_N,
        threads: 128,
        suffix: "",
    };
    pub const WIDE: FpropTile = FpropTile {
        cols: 128,
        threads: 256,
        suffix: "_wide",
    };
    /// Every tile, for the tests and benches that run them side by side.
    pub const ALL: [FpropTile; 2] = [FpropTile::NARROW, FpropTile::WIDE];

    /// The tile for a GEMM of `rows` x `cols` (output pixels x channels) on
    /// a GPU of `sms` SMs: the wide tile from 128 columns on, unless its
    /// grid leaves more than a tenth of the SMs without a block. The wide
    /// tile ran 5 to 26% faster than the narrow one on every layer whose
    /// grid fills the GPU (and on the 3x3 512>512 layer at 4x4, batch 256:
    /// 128 wide blocks on 132 SMs); on a small grid the narrow tile's twice
    /// as many blocks reach SMs the wide one leaves idle (that layer at
    /// batch 64, 32 wide blocks: 50 against 67 TFLOP/s). Measured on an
    /// H100 (benches/cuda_bf16.rs, figures in BENCHMARKS.md).
    pub fn pick(rows: usize, cols: usize, sms: usize) -> FpropTile {
        let wide = FpropTile::WIDE;
        let blocks = rows.div_ceil(TILE_M) * cols.div_ceil(wide.cols);
        match cols >= wide.cols && blocks * 10 >= sms * 9 {
            true => wide,
            false => FpropTile::NARROW,
        }
    }

    /// The tile of that name (`narrow`, `wide`), as `MTAFFECT_CONV_TILE` gives it.
    pub fn named(name: &str) -> Result<FpropTile> {
        FpropTile::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                Error::Config(format!(
                    "MTAFFECT_CONV_TILE = {name:?}: expected narrow or wide"
                ))
            })
    }

    /// [`FpropTile::pick`] on `dev`, unless `MTAFFECT_CONV_TILE` names a tile.
    pub(super) fn for_launch(dev: &CudaDevice, rows: usize, cols: usize) -> Result<FpropTile> {
        static FORCED: OnceLock<Option<String>> = OnceLock::new();
        match FORCED.get_or_init(|| std::env::var("MTAFFECT_CONV_TILE").ok()) {
            Some(name) => FpropTile::named(name),
            None => Ok(FpropTile::pick(rows, cols, dev.sm_count() as usize)),
        }
    }

    /// The name `MTAFFECT_CONV_TILE` and the benches use.
    pub fn name(&self) -> &'static str {
        match self.suffix {
            "" => "narrow",
            s => &s[1..],
        }
    }

    /// The launch over `rows` x `cols`: 3 stages of (128 + cols) rows of
    /// 40 bf16 in dynamic shared memory (46080 or 61440 bytes).
    pub(super) fn config(&self, rows: usize, cols: usize) -> LaunchConfig {
        const STAGES: usize = 3;
        const LD: usize = 40;
        LaunchConfig {
            grid_dim: (
                rows.div_ceil(TILE_M) as u32,
                cols.div_ceil(self.cols) as u32,
                1,
            ),
            block_dim: (self.threads, 1, 1),
            shared_mem_bytes: (STAGES * (TILE_M + self.cols) * LD * 2) as u32,
        }
    }
}

/// Mirrors `Bf16PadParams` in kernels/conv_bf16.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct Bf16PadParams {
    rows: u64,
    c: i32,
    cp: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for Bf16PadParams {}

/// A rank-4 bf16 tensor on the GPU, channels last ([N, H, W, C] activations
/// or [K, R, S, C] weights), with C padded to a multiple of [`CHANNEL_ALIGN`]
/// by zeros in memory.
pub struct Bf16Nhwc {
    /// bf16 bits, two per f32 slot of the pooled buffer (shared with the
    /// f32 tensor it is the copy of, when its producer wrote one).
    pub(super) storage: Arc<CudaStorage>,
    /// Logical dims; the last one before padding.
    pub(super) dims: [usize; 4],
    /// The padded channel count: the row length in memory.
    pub(super) padded: usize,
}

impl std::fmt::Debug for Bf16Nhwc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bf16Nhwc({:?}, padded to {})", self.dims, self.padded)
    }
}

impl Bf16Nhwc {
    /// Uninitialised (NaN while the device poisons) storage for `dims`.
    pub(super) fn alloc(
        dev: &Arc<CudaDevice>,
        dims: [usize; 4],
        padded: usize,
    ) -> Result<Bf16Nhwc> {
        let elems = dims[..3].iter().product::<usize>() * padded;
        Ok(Bf16Nhwc {
            storage: Arc::new(CudaStorage::alloc(dev, elems.div_ceil(2))?),
            dims,
            padded,
        })
    }

    /// The bf16 copy of a rank-4 f32 CUDA tensor that its producer attached
    /// ([`Tensor::with_bf16_copy`]: C a multiple of 8, so no padding), or
    /// else [`Bf16Nhwc::from_f32`]'s conversion: the same values either way.
    pub fn of(t: &Tensor) -> Result<Bf16Nhwc> {
        match (t.bf16_copy(), <[usize; 4]>::try_from(t.dims())) {
            (Some(copy), Ok(dims)) => Ok(Bf16Nhwc {
                storage: copy.clone(),
                dims,
                padded: dims[3],
            }),
            _ => Bf16Nhwc::from_f32(t),
        }
    }

    /// Rounds a rank-4 f32 CUDA tensor to bf16 (nearest even) on the device,
    /// padding its last dim with zeros to a multiple of [`CHANNEL_ALIGN`].
    pub fn from_f32(t: &Tensor) -> Result<Bf16Nhwc> {
        let dims: [usize; 4] = t.dims().try_into().map_err(|_| {
            Error::shape(
                OP,
                format!(
                    "expected a rank-4 channels-last tensor, found {}",
                    t.shape()
                ),
            )
        })?;
        let src = t.cuda(OP)?;
        let padded = dims[3].next_multiple_of(CHANNEL_ALIGN);
        let out = Bf16Nhwc::alloc(src.device(), dims, padded)?;
        let rows = dims[..3].iter().product::<usize>();
        out.convert(
            "f32_to_bf16_pad",
            rows,
            dims[3],
            src.ptr(),
            out.storage.ptr(),
        )?;
        Ok(out)
    }

    /// The values as an f32 tensor (exact), padding channels included: dims
    /// [.., padded channels].
    pub fn to_f32(&self) -> Result<Tensor> {
        let dev = self.storage.device();
        let mut dims = self.dims;
        dims[3] = self.padded;
        let out = empty(dev, dims)?;
        let rows = dims[..3].iter().product::<usize>();
        self.convert(
            "bf16_to_f32",
            rows,
            self.padded,
            self.storage.ptr(),
            ptr(&out, OP)?,
        )?;
        Ok(out)
    }

    /// Launches one of the conversion kernels over rows x padded elements.
    fn convert(&self, kernel: &str, rows: usize, c: usize, src: u64, dst: u64) -> Result<()> {
        let dev = self.storage.device();
        let p = Bf16PadParams {
            rows: rows as u64,
            c: c as i32,
            cp: self.padded as i32,
        };
        let cfg = dev.elementwise_config(rows * self.padded);
        // SAFETY: Bf16PadParams mirrors the kernel's struct; src holds rows x c
        // (f32) or rows x padded (bf16) elements, dst rows x padded.
        unsafe { dev.launch(kernel, cfg, &p, &[src, dst]) }
    }

    /// Logical dims (channels before padding).
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    /// Channels per row in memory.
    pub fn padded_channels(&self) -> usize {
        self.padded
    }

    pub fn device(&self) -> &Arc<CudaDevice> {
        self.storage.device()
    }

    /// The device address of the bf16 values.
    pub(super) fn ptr(&self) -> u64 {
        self.storage.ptr()
    }
}

/// The geometry the kernel runs: `x` [N, H, W, C] and `w` [K, R, S, C]
/// (logical dims) checked as conv2d checks them, groups = 1, and C replaced
/// by its padded count (the extra channels are zeros in both operands).
pub fn kernel_geometry(x: [usize; 4], w: [usize; 4], prm: Conv2dParams) -> Result<Conv2dGeom> {
    if prm.groups != 1 {
        return Err(Error::arg(
            OP,
            format!(
                "groups = {}: the bf16 tensor-core conv handles groups = 1 only (use conv2d)",
                prm.groups
            ),
        ));
    }
    let mut g = Conv2dGeom::new(OP, &x, &w, prm)?;
    g.c = g.c.next_multiple_of(CHANNEL_ALIGN);
    params(OP, &g, false)?; // the 32-bit indexing check
    if g.k.div_ceil(TILE_N) > 65_535 {
        return Err(Error::shape(
            OP,
            format!(
                "K = {} output channels: more than 65535 column tiles of {TILE_N}",
                g.k
            ),
        ));
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_pads_channels_and_keeps_the_output_shape() {
        let prm = Conv2dParams::new().stride(2).padding(3);
        let g = kernel_geometry([2, 23, 23, 3], [64, 7, 7, 3], prm).unwrap();
        assert_eq!((g.c, g.k, g.p, g.q), (8, 64, 12, 12));
        let g = kernel_geometry([1, 5, 5, 64], [16, 1, 1, 64], Conv2dParams::new()).unwrap();
        assert_eq!(g.c, 64, "already aligned: no padding");
    }

    #[test]
    fn the_wide_tile_needs_a_nearly_full_wave() {
        let (narrow, wide) = (FpropTile::NARROW, FpropTile::WIDE);
        assert_eq!(FpropTile::pick(1 << 20, 64, 132), narrow);
        assert_eq!(FpropTile::pick(1 << 20, 256, 132), wide);
        // 3x3 512>512 at 4x4: batch 256 is 32 x 4 wide blocks, batch 64 8 x 4.
        assert_eq!(FpropTile::pick(4096, 512, 132), wide);
        assert_eq!(FpropTile::pick(1024, 512, 132), narrow);
        // 118 of 132 SMs would get a block: more than a tenth idle.
        assert_eq!(FpropTile::pick(59 * 128, 256, 132), narrow);
        assert_eq!(FpropTile::pick(60 * 128, 256, 132), wide);
    }

    #[test]
    fn tiles_are_named_as_the_environment_names_them() {
        for tile in FpropTile::ALL {
            assert_eq!(FpropTile::named(tile.name()).unwrap(), tile);
        }
        assert_eq!(FpropTile::ALL.map(|t| t.name()), ["narrow", "wide"]);
        let e = FpropTile::named("w64").unwrap_err().to_string();
        assert!(
            e.contains("MTAFFECT_CONV_TILE") && e.contains("\"w64\""),
            "{e}"
        );
    }

    #[test]
    fn unsupported_or_mismatched_operands_are_clear_errors() {
        let cases = [
            (
                [1, 8, 8, 16],
                [16, 3, 3, 8],
                Conv2dParams::new().groups(2),
                "groups = 1 only",
            ),
            (
                [1, 8, 8, 16],
                [16, 3, 3, 8],
                Conv2dParams::new(),
                "[16, 3, 3, 8]",
            ),
            (
                [1, 2, 2, 8],
                [4, 3, 3, 8],
                Conv2dParams::new(),
                "larger than the padded input",
            ),
        ];
        for (x, w, prm, expected) in cases {
            let e = kernel_geometry(x, w, prm).unwrap_err().to_string();
            assert!(e.contains("conv2d_bf16") && e.contains(expected), "{e}");
        }
    }
}
