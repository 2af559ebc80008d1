//! Kernel parameters for strided elementwise and reduction launches: the
//! shapes of `strided.rs`, with contiguous axes merged so that a kernel
//! usually sees rank 1 or 2 and spends few divisions per element.

use super::broadcast_strides;
use crate::{Error, Result, Shape};
use cudarc::driver::DeviceRepr;

/// `MT_MAX_RANK` in kernels/common.cuh.
pub(crate) const MAX_RANK: usize = 6;

/// Mirrors `BinaryParams` in kernels/elementwise.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BinaryParams {
    pub n: u64,
    pub rank: u64,
    pub dims: [u64; MAX_RANK],
    pub sa: [u64; MAX_RANK],
    pub sb: [u64; MAX_RANK],
    pub op: i32,
    pub alpha: f32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for BinaryParams {}

/// Mirrors `ReduceParams` in kernels/reduce.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReduceParams {
    pub out_n: u64,
    pub red_n: u64,
    pub rank: u64,
    pub kdims: [u64; MAX_RANK],
    pub rdims: [u64; MAX_RANK],
    pub strides: [u64; MAX_RANK],
    pub scale: f32,
    pub pad: i32,
}
// SAFETY: plain old data laid out as the C struct.
unsafe impl DeviceRepr for ReduceParams {}

fn too_deep(op: &'static str, shape: &Shape) -> Error {
    Error::shape(
        op,
        format!("{shape} has more than {MAX_RANK} non-mergeable axes, the CUDA kernels' limit"),
    )
}

/// Walking `out` row-major with operand strides `sa`, `sb`: drops size-1
/// axes and merges neighbours that both operands traverse contiguously.
pub(crate) fn binary_params(
    op_name: &'static str,
    out: &Shape,
    a: &Shape,
    b: &Shape,
) -> Result<BinaryParams> {
    let sa = broadcast_strides(a, out.rank());
    let sb = broadcast_strides(b, out.rank());
    let mut axes: Vec<(usize, usize, usize)> = Vec::new();
    for i in 0..out.rank() {
        let d = out.dim(i);
        if d == 1 {
            continue;
        }
        match axes.last_mut() {
            Some(last) if last.1 == sa[i] * d && last.2 == sb[i] * d => {
                *last = (last.0 * d, sa[i], sb[i]);
            }
            _ => axes.push((d, sa[i], sb[i])),
        }
    }
    if axes.len() > MAX_RANK {
        return Err(too_deep(op_name, out));
    }
    let mut p = BinaryParams {
        n: out.numel() as u64,
        rank: axes.len() as u64,
        ..Default::default()
    };
    for (i, &(d, x, y)) in axes.iter().enumerate() {
        p.dims[i] = d as u64;
        p.sa[i] = x as u64;
        p.sb[i] = y as u64;
    }
    Ok(p)
}

/// Summing a contiguous tensor of shape `full` down to `kept` (same rank,
/// 1 on the reduced axes), times `scale`.
pub(crate) fn reduce_params(
    op_name: &'static str,
    full: &Shape,
    kept: &Shape,
    scale: f32,
) -> Result<ReduceParams> {
    let strides = full.strides();
    // (dim, stride, reduced) per axis; neighbours of one kind merge (the input is contiguous).
    let mut axes: Vec<(usize, usize, bool)> = Vec::new();
    for (i, &stride) in strides.iter().enumerate() {
        let d = full.dim(i);
        if d == 1 {
            continue;
        }
        let reduced = kept.dim(i) == 1;
        match axes.last_mut() {
            Some(last) if last.2 == reduced => *last = (last.0 * d, stride, reduced),
            _ => axes.push((d, stride, reduced)),
        }
    }
    if axes.len() > MAX_RANK {
        return Err(too_deep(op_name, full));
    }
    let mut p = ReduceParams {
        out_n: kept.numel() as u64,
        red_n: (full.numel() / kept.numel().max(1)) as u64,
        rank: axes.len() as u64,
        scale,
        ..Default::default()
    };
    for (i, &(d, s, reduced)) in axes.iter().enumerate() {
        p.kdims[i] = if reduced { 1 } else { d as u64 };
        p.rdims[i] = if reduced { d as u64 } else { 1 };
        p.strides[i] = s as u64;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_axes_merge() {
        let s = Shape::new(vec![4, 5, 6, 7]);
        let p = binary_params("t", &s, &s, &s).unwrap();
        assert_eq!((p.rank, p.dims[0], p.sa[0], p.sb[0]), (1, 840, 1, 1));
        // NHWC plus a per-channel vector: [N*H*W, C] with b's row stride 0.
        let p = binary_params("t", &s, &s, &Shape::new(vec![7])).unwrap();
        assert_eq!(p.rank, 2);
        assert_eq!((p.dims[0], p.dims[1]), (120, 7));
        assert_eq!((p.sa[0], p.sa[1], p.sb[0], p.sb[1]), (7, 1, 0, 1));
    }

    #[test]
    fn reduction_axes_merge_by_kind() {
        let full = Shape::new(vec![4, 5, 6, 7]);
        let p = reduce_params("t", &full, &Shape::new(vec![1, 1, 1, 7]), 1.0).unwrap();
        assert_eq!((p.out_n, p.red_n, p.rank), (7, 120, 2));
        assert_eq!(
            (p.kdims[0], p.kdims[1], p.rdims[0], p.rdims[1]),
            (1, 7, 120, 1)
        );
        assert_eq!((p.strides[0], p.strides[1]), (7, 1));
        let p = reduce_params("t", &full, &Shape::new(vec![4, 1, 6, 1]), 0.5).unwrap();
        assert_eq!(p.rank, 4);
        assert_eq!((p.out_n, p.red_n), (24, 35));
    }

    #[test]
    fn too_many_axes_is_an_error() {
        let out = Shape::new(vec![2, 2, 2, 2, 2, 2, 2]);
        let b = Shape::new(vec![2, 1, 2, 1, 2, 1, 2]);
        let e = binary_params("add", &out, &b, &out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("add") && e.contains("CUDA"), "{e}");
    }
}
