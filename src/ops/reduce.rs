//! sum and mean over any set of axes, with or without keeping them as size 1.

pub(crate) mod cuda;

use crate::backend::cpu::Float;
use crate::tensor_math::strided::{broadcast_strides, for_each_offset, sum_to_shape};
use crate::{with_dtype, Error, Result, Shape, Tape, Tensor, Var};

/// Resolves `axes` (negative counts from the end; empty = all axes) and
/// returns them sorted, plus the keep-dim output shape.
fn reduced_shape(op: &'static str, s: &Shape, axes: &[isize]) -> Result<(Vec<usize>, Shape)> {
    let mut ax: Vec<usize> = if axes.is_empty() {
        (0..s.rank()).collect()
    } else {
        axes.iter().map(|&a| s.axis(op, a)).collect::<Result<_>>()?
    };
    ax.sort_unstable();
    if ax.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::arg(op, format!("repeated axis in {axes:?}")));
    }
    let mut d = s.dims().to_vec();
    for &a in &ax {
        d[a] = 1;
    }
    Ok((ax, Shape::new(d)))
}

fn reduce(
    tape: &Tape,
    op: &'static str,
    x: &Var,
    axes: &[isize],
    keepdim: bool,
    mean: bool,
) -> Result<Var> {
    let xs = x.value().shape().clone();
    let (ax, kept) = reduced_shape(op, &xs, axes)?;
    let count = (xs.numel() / kept.numel().max(1)).max(1);
    let out_shape = if keepdim {
        kept.clone()
    } else {
        Shape::new(
            xs.dims()
                .iter()
                .enumerate()
                .filter(|(i, _)| !ax.contains(i))
                .map(|(_, &d)| d)
                .collect::<Vec<_>>(),
        )
    };
    let dev = x.value().cuda_device().cloned();
    let y = match &dev {
        Some(d) => {
            let scale = if mean { 1.0 / count as f32 } else { 1.0 };
            cuda::sum_to_shape(d, op, x.value(), &kept, scale)?.reshape(out_shape)?
        }
        None => with_dtype!(x.value().dtype(), T => {
            let mut v = sum_to_shape(x.value().data::<T>()?, &xs, &kept);
            if mean {
                let inv = T::ONE / T::from_f64(count as f64);
                v.iter_mut().for_each(|a| *a *= inv);
            }
            Tensor::from_vec(v, out_shape)?
        }),
    };
    tape.record(op, &[x], y, move |g, _| {
        if let Some(d) = &dev {
            let scale = if mean { 1.0 / count as f32 } else { 1.0 };
            let gk = g.reshape(kept.clone())?;
            return Ok(vec![Some(crate::ops::elementwise::cuda::broadcast_scale(
                d, op, &gk, &xs, scale,
            )?)]);
        }
        // Broadcast the gradient back over the reduced axes.
        let gx = with_dtype!(g.dtype(), T => {
            let gd = g.data::<T>()?;
            let scale = if mean { T::ONE / T::from_f64(count as f64) } else { T::ONE };
            let strides = broadcast_strides(&kept, xs.rank());
            let mut v = Vec::with_capacity(xs.numel());
            for_each_offset(xs.dims(), &strides, |_, o| v.push(gd[o] * scale));
            Tensor::from_vec(v, xs.clone())?
        });
        Ok(vec![Some(gx)])
    })
}

/// Sum over `axes` (empty = all axes).
pub fn sum(tape: &Tape, x: &Var, axes: &[isize], keepdim: bool) -> Result<Var> {
    reduce(tape, "sum", x, axes, keepdim, false)
}

/// Mean over `axes` (empty = all axes).
pub fn mean(tape: &Tape, x: &Var, axes: &[isize], keepdim: bool) -> Result<Var> {
    reduce(tape, "mean", x, axes, keepdim, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    #[test]
    fn values_and_shapes() {
        let tape = Tape::no_grad();
        let x = tape
            .constant(Tensor::from_f64s(&[1., 2., 3., 4., 5., 6.], [2, 3], DType::F64).unwrap());
        let s = sum(&tape, &x, &[0], false).unwrap();
        assert_eq!(s.dims(), &[3]);
        assert_eq!(s.value().to_f64_vec(), [5., 7., 9.]);
        let m = mean(&tape, &x, &[-1], true).unwrap();
        assert_eq!(m.dims(), &[2, 1]);
        assert_eq!(m.value().to_f64_vec(), [2., 5.]);
        let all = sum(&tape, &x, &[], false).unwrap();
        assert_eq!(all.dims(), &[] as &[usize]);
        assert_eq!(all.value().item().unwrap(), 21.0);
        assert!(sum(&tape, &x, &[2], false)
            .unwrap_err()
            .to_string()
            .contains("axis 2"));
        assert!(sum(&tape, &x, &[1, -1], false).is_err());
    }

    #[test]
    fn gradcheck_over_axis_sets() {
        let mut rng = Rng::new(3);
        let x = Tensor::randn([3, 4, 5, 2], 1.0, DType::F64, &mut rng);
        for axes in [&[][..], &[0], &[1, 2], &[0, 3], &[-1]] {
            for keep in [false, true] {
                check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| {
                    sum(t, &v[0], axes, keep)
                })
                .unwrap();
                check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| {
                    mean(t, &v[0], axes, keep)
                })
                .unwrap();
            }
        }
    }
}
