//! The sizes of a 2-D convolution: its parameters (stride, padding,
//! dilation, groups) and the checked geometry of one call, which the CPU
//! reference (cpu.rs), the CUDA launchers (cuda.rs, bf16*.rs) and the FLOP
//! count all read.

use crate::{Error, Result};

/// Elements of one patch buffer: 2^21 (8 MiB of f32, 16 MiB of f64).
pub const PATCH_BUDGET_ELEMS: usize = 1 << 21;

/// Elements of one forward or dgrad patch chunk: 2^16 (256 KiB of f32), so
/// a chunk is still in a core's L2 cache when the GEMM packs or col2im reads it.
pub const CACHE_PATCH_ELEMS: usize = 1 << 16;

/// Stride, padding, dilation and groups of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// (rows, cols).
    pub stride: [usize; 2],
    /// Zero padding (top, bottom, left, right).
    pub padding: [usize; 4],
    /// (rows, cols) spacing between kernel taps.
    pub dilation: [usize; 2],
    /// Input and output channels split into this many independent groups;
    /// groups = C = K is a depthwise convolution.
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: [1, 1],
            padding: [0; 4],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Stride 1, no padding, no dilation, one group.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stride(self, s: usize) -> Self {
        self.stride_hw(s, s)
    }

    pub fn stride_hw(mut self, sh: usize, sw: usize) -> Self {
        self.stride = [sh, sw];
        self
    }

    /// The same padding on all four sides.
    pub fn padding(self, p: usize) -> Self {
        self.padding_tblr(p, p, p, p)
    }

    pub fn padding_tblr(mut self, top: usize, bottom: usize, left: usize, right: usize) -> Self {
        self.padding = [top, bottom, left, right];
        self
    }

    pub fn dilation(self, d: usize) -> Self {
        self.dilation_hw(d, d)
    }

    pub fn dilation_hw(mut self, dh: usize, dw: usize) -> Self {
        self.dilation = [dh, dw];
        self
    }

    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

/// The sizes of one convolution, validated: input [n, h, w, c], weight
/// [k, r, s, c / groups], output [n, p, q, k].
#[derive(Clone, Copy, Debug)]
pub struct Conv2dGeom {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub k: usize,
    pub r: usize,
    pub s: usize,
    pub p: usize,
    pub q: usize,
    pub prm: Conv2dParams,
}

impl Conv2dGeom {
    /// Checks an input of dims `x` and a weight of dims `wt` against `prm`.
    pub fn new(op: &'static str, x: &[usize], wt: &[usize], prm: Conv2dParams) -> Result<Self> {
        let shapes = || format!("input {x:?}, weight {wt:?}, {prm:?}");
        if x.len() != 4 || wt.len() != 4 {
            return Err(Error::shape(
                op,
                format!(
                    "input must be NHWC and weight [K, R, S, C/groups]: {}",
                    shapes()
                ),
            ));
        }
        if x.contains(&0) || wt.contains(&0) {
            return Err(Error::shape(op, format!("empty dimension: {}", shapes())));
        }
        let [sh, sw] = prm.stride;
        let [dh, dw] = prm.dilation;
        if sh == 0 || sw == 0 || dh == 0 || dw == 0 || prm.groups == 0 {
            return Err(Error::arg(
                op,
                format!("stride, dilation and groups must be >= 1: {prm:?}"),
            ));
        }
        let (n, h, w, c) = (x[0], x[1], x[2], x[3]);
        let (k, r, s) = (wt[0], wt[1], wt[2]);
        let g = prm.groups;
        if c % g != 0 || k % g != 0 || wt[3] * g != c {
            return Err(Error::shape(
                op,
                format!("groups = {g} must divide C = {c} and K = {k}, and the weight's last dim must be C/groups: {}", shapes()),
            ));
        }
        let [pt, pb, pl, pr] = prm.padding;
        let (eh, ew) = (dh * (r - 1) + 1, dw * (s - 1) + 1);
        if eh > h + pt + pb || ew > w + pl + pr {
            return Err(Error::shape(
                op,
                format!(
                    "dilated kernel {eh}x{ew} is larger than the padded input: {}",
                    shapes()
                ),
            ));
        }
        let p = (h + pt + pb - eh) / sh + 1;
        let q = (w + pl + pr - ew) / sw + 1;
        Ok(Conv2dGeom {
            n,
            h,
            w,
            c,
            k,
            r,
            s,
            p,
            q,
            prm,
        })
    }

    pub(super) fn cg(&self) -> usize {
        self.c / self.prm.groups
    }

    pub(super) fn kg(&self) -> usize {
        self.k / self.prm.groups
    }

    /// Multiply-adds of the forward: N·P·Q·K·R·S·C/groups (a dgrad and a
    /// wgrad compute as many).
    pub fn macs(&self) -> u64 {
        (self.n * self.p * self.q * self.k) as u64 * self.patch_cols() as u64
    }

    /// Columns of one group's patch matrix: R·S·C/groups.
    pub(super) fn patch_cols(&self) -> usize {
        self.r * self.s * self.cg()
    }

    /// Output rows per patch buffer, so it holds at most
    /// `max(PATCH_BUDGET_ELEMS, patch_cols)` elements.
    pub fn chunk_rows(&self) -> usize {
        (PATCH_BUDGET_ELEMS / self.patch_cols()).max(1)
    }

    /// Output rows per forward or dgrad patch chunk: `CACHE_PATCH_ELEMS` elements,
    /// at least one row.
    pub fn cache_chunk_rows(&self) -> usize {
        (CACHE_PATCH_ELEMS / self.patch_cols()).max(1)
    }

    /// 1x1, stride 1, no padding: the input rows are the patches.
    pub(super) fn is_pointwise(&self) -> bool {
        self.r == 1 && self.s == 1 && self.prm.stride == [1, 1] && self.prm.padding == [0; 4]
    }

    pub fn out_dims(&self) -> [usize; 4] {
        [self.n, self.p, self.q, self.k]
    }

    pub fn in_dims(&self) -> [usize; 4] {
        [self.n, self.h, self.w, self.c]
    }
}
