//! add, sub, mul, div on plain tensors with NumPy broadcasting: the forward
//! that ops/elementwise.rs records on the tape, and the same-shaped sum the
//! tape adds gradients with. No tape here, so autograd can build on it.

pub(crate) mod cuda;

use super::strided::{broadcast_shapes, broadcast_strides, for_each_offset};
use crate::backend::cpu::Float;
use crate::tensor::{check_same_dtype, check_same_shape, same_device};
use crate::{with_dtype, Result, Shape, Tensor};

/// The four broadcasting binary ops (`BinOp` in kernels/elementwise.cu).
#[derive(Clone, Copy, Debug)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            BinOp::Mul => "mul",
            BinOp::Div => "div",
        }
    }

    fn apply<T: Float>(self, a: T, b: T) -> T {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
        }
    }
}

/// `a op b` on plain tensors, with broadcasting.
pub(crate) fn forward(op: BinOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_same_dtype(op.name(), a, b)?;
    let out = broadcast_shapes(op.name(), a.shape(), b.shape())?;
    if let Some(dev) = same_device(op.name(), &[a, b])? {
        return cuda::forward(&dev, op, a, b, &out);
    }
    with_dtype!(a.dtype(), T => {
        let (x, y) = (a.data::<T>()?, b.data::<T>()?);
        let n = out.numel();
        let data: Vec<T> = if a.shape() == &out && b.shape() == &out {
            x.iter().zip(y).map(|(&p, &q)| op.apply(p, q)).collect()
        } else if a.shape() == &out && is_suffix(b.shape(), &out) {
            // The common case: a per-channel (or per-feature) vector or a scalar.
            let m = y.len();
            x.iter().enumerate().map(|(i, &p)| op.apply(p, y[i % m])).collect()
        } else {
            let sa = broadcast_strides(a.shape(), out.rank());
            let sb = broadcast_strides(b.shape(), out.rank());
            let mut oa = Vec::with_capacity(n);
            for_each_offset(out.dims(), &sa, |_, o| oa.push(o));
            let mut v = Vec::with_capacity(n);
            for_each_offset(out.dims(), &sb, |i, o| v.push(op.apply(x[oa[i]], y[o])));
            v
        };
        Tensor::from_vec(data, out)
    })
}

/// True if `s` (ignoring leading 1s) equals the trailing dims of `out`, so
/// element i of `out` pairs with element `i % s.numel()`.
fn is_suffix(s: &Shape, out: &Shape) -> bool {
    let d = s.dims();
    let lead = d.iter().take_while(|&&x| x == 1).count();
    let rest = &d[lead..];
    rest.len() <= out.rank() && out.dims()[out.rank() - rest.len()..] == *rest
}

/// Plain sum of two same-shaped tensors (gradient accumulation; no tape).
pub fn add_same_shape(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_same_shape("add", a, b)?;
    forward(BinOp::Add, a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Rng};

    #[test]
    fn add_same_shape_adds_and_refuses_broadcasting() {
        let mut rng = Rng::new(3);
        let a = Tensor::randn([2, 3], 1.0, DType::F32, &mut rng);
        let b = Tensor::randn([2, 3], 1.0, DType::F32, &mut rng);
        let sum = add_same_shape(&a, &b).unwrap().to_vec::<f32>().unwrap();
        let (x, y) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        assert!(sum
            .iter()
            .zip(x.iter().zip(&y))
            .all(|(s, (p, q))| *s == p + q));
        let row = Tensor::zeros([3], DType::F32);
        let e = add_same_shape(&a, &row).unwrap_err().to_string();
        assert!(e.contains("[2, 3]") && e.contains("[3]"), "{e}");
    }
}
