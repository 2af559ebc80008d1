//! Safe GEMM over slices with strides, so transposed operands need no copy.

use super::Float;

/// A read-only matrix view: `rows x cols`, element (i, j) at `data[i*rs + j*cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// Row-major, contiguous.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose, as a view over the same memory.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn span(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1
        }
    }
}

/// `c = alpha * a·b + beta * c`, with `c` row-major contiguous `a.rows x b.cols`.
///
/// Shapes are the caller's contract (ops check user shapes before calling);
/// a violation is a bug in mtaffect, hence the assertions.
pub fn gemm<T: Float>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T]) {
    gemm_strided(alpha, a, b, beta, c, b.cols)
}

/// Like [`gemm`], but row `i` of `c` starts at `c[i * ldc]`: `c` may be a
/// column block of a wider row-major matrix (one group's channels of an NHWC
/// activation), written in place without a copy.
pub fn gemm_strided<T: Float>(
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "gemm inner dimensions");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && c.len() >= (m - 1) * ldc + n,
        "gemm output too small"
    );
    assert!(
        a.data.len() >= a.span() && b.data.len() >= b.span(),
        "gemm operand views out of bounds"
    );
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            for v in &mut row[..n] {
                *v = if beta == T::ZERO { T::ZERO } else { *v * beta };
            }
        }
        return;
    }
    // SAFETY: the views were bounds-checked above, c is exclusively borrowed.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}
