//! Index arithmetic shared by broadcasting and reductions: walk a shape in
//! row-major order while tracking the offset into an operand whose strides
//! may be zero (a broadcast or reduced axis).

use crate::{Error, Result, Shape};

pub(crate) mod cuda;

/// Strides of `shape` right-aligned to `rank` dims, zero wherever the
/// operand has size 1 (or is missing) and so repeats along that axis.
pub(crate) fn broadcast_strides(shape: &Shape, rank: usize) -> Vec<usize> {
    let own = shape.strides();
    let pad = rank - shape.rank();
    let mut s = vec![0; rank];
    for i in 0..shape.rank() {
        if shape.dim(i) != 1 {
            s[pad + i] = own[i];
        }
    }
    s
}

/// NumPy broadcasting of two shapes.
pub(crate) fn broadcast_shapes(op: &'static str, a: &Shape, b: &Shape) -> Result<Shape> {
    let rank = a.rank().max(b.rank());
    let mut dims = vec![0; rank];
    for (i, d) in dims.iter_mut().enumerate() {
        let da = if i + a.rank() >= rank {
            a.dim(i + a.rank() - rank)
        } else {
            1
        };
        let db = if i + b.rank() >= rank {
            b.dim(i + b.rank() - rank)
        } else {
            1
        };
        *d = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(op, format!("cannot broadcast {a} with {b}")));
        };
    }
    Ok(Shape::new(dims))
}

/// Calls `f(i, offset)` for every element `i` (row-major) of `dims`, with the
/// offset computed from `strides`.
pub(crate) fn for_each_offset(dims: &[usize], strides: &[usize], mut f: impl FnMut(usize, usize)) {
    let n: usize = dims.iter().product();
    if n == 0 {
        return;
    }
    let rank = dims.len();
    let mut idx = vec![0usize; rank];
    let mut off = 0usize;
    for i in 0..n {
        f(i, off);
        // Increment the multi-index, carrying into outer axes.
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            off += strides[ax];
            if idx[ax] < dims[ax] {
                break;
            }
            off -= strides[ax] * dims[ax];
            idx[ax] = 0;
        }
    }
}

/// Sums `src` (shaped `out_shape`) into a tensor of `shape`, which broadcasts
/// to `out_shape`: the adjoint of broadcasting.
pub(crate) fn sum_to_shape<T: crate::backend::cpu::Float>(
    src: &[T],
    out_shape: &Shape,
    shape: &Shape,
) -> Vec<T> {
    let mut dst = vec![T::ZERO; shape.numel()];
    if shape == out_shape {
        dst.copy_from_slice(src);
        return dst;
    }
    let strides = broadcast_strides(shape, out_shape.rank());
    for_each_offset(out_shape.dims(), &strides, |i, o| dst[o] += src[i]);
    dst
}
