//! Nearest-neighbour upsampling of NHWC activations by an integer factor
//! (the generator's parameter-free alternative to transposed convolution).

mod cuda;

use crate::backend::cpu::Float;
use crate::{with_dtype, Error, Result, Tape, Tensor, Var};

/// [N, H, W, C] -> [N, f·H, f·W, C]: each input pixel becomes an f x f block
/// (`y[n, h, w, c] = x[n, h / f, w / f, c]`, PyTorch's `mode="nearest"` with
/// an integer scale). Backward sums each block's gradient.
pub fn upsample_nearest2d(tape: &Tape, x: &Var, factor: usize) -> Result<Var> {
    let [n, h, w, c] = match x.dims() {
        &[n, h, w, c] => [n, h, w, c],
        _ => {
            return Err(Error::shape(
                "upsample_nearest2d",
                format!("input {} must be NHWC", x.shape()),
            ))
        }
    };
    if factor == 0 {
        return Err(Error::arg("upsample_nearest2d", "factor must be >= 1"));
    }
    if let Some(dev) = x.value().cuda_device().cloned() {
        let as64 = |v: usize| v as u64;
        let p = cuda::UpsampleParams {
            n: as64(n),
            h: as64(h),
            w: as64(w),
            c: as64(c),
            f: as64(factor),
        };
        let y = cuda::forward(&dev, &p, x.value())?;
        let in_shape = x.shape().clone();
        return tape.record("upsample_nearest2d", &[x], y, move |dy, _| {
            Ok(vec![Some(cuda::backward(&dev, &p, dy, &in_shape)?)])
        });
    }
    let (ho, wo) = (h * factor, w * factor);
    // Output row (n, ho, wo) reads input row (n, ho / f, wo / f).
    let src_row = move |r: usize| {
        let (ni, hi, wi) = (r / (ho * wo), (r / wo) % ho, r % wo);
        (ni * h + hi / factor) * w + wi / factor
    };
    let y = with_dtype!(x.value().dtype(), T => {
        let xd = x.value().data::<T>()?;
        let mut y = vec![T::ZERO; n * ho * wo * c];
        for (r, row) in y.chunks_exact_mut(c.max(1)).enumerate() {
            let s = src_row(r) * c;
            row.copy_from_slice(&xd[s..s + c]);
        }
        Tensor::from_vec(y, [n, ho, wo, c])?
    });
    let in_shape = x.shape().clone();
    tape.record("upsample_nearest2d", &[x], y, move |dy, _| {
        let dx = with_dtype!(dy.dtype(), T => {
            let mut dx = vec![T::ZERO; in_shape.numel()];
            for (r, row) in dy.data::<T>()?.chunks_exact(c.max(1)).enumerate() {
                let s = src_row(r) * c;
                dx[s..s + c].iter_mut().zip(row).for_each(|(a, &v)| *a += v);
            }
            Tensor::from_vec(dx, in_shape.clone())?
        });
        Ok(vec![Some(dx)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    #[test]
    fn values_by_hand() {
        let tape = Tape::no_grad();
        // [1, 2, 2, 1] = [[1, 2], [3, 4]] -> 4x4 of 2x2 blocks.
        let x =
            tape.constant(Tensor::from_f64s(&[1., 2., 3., 4.], [1, 2, 2, 1], DType::F32).unwrap());
        let y = upsample_nearest2d(&tape, &x, 2).unwrap();
        assert_eq!(y.dims(), [1, 4, 4, 1]);
        assert_eq!(
            y.value().to_f64_vec(),
            [1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]
        );
        // Channels move together.
        let x = tape.constant(Tensor::from_f64s(&[1., -1.], [1, 1, 1, 2], DType::F32).unwrap());
        assert_eq!(
            upsample_nearest2d(&tape, &x, 3)
                .unwrap()
                .value()
                .to_f64_vec(),
            [1., -1.].repeat(9)
        );
        assert!(upsample_nearest2d(&tape, &x, 0).is_err());
        let flat = tape.constant(Tensor::zeros([2, 3], DType::F32));
        assert!(upsample_nearest2d(&tape, &flat, 2)
            .unwrap_err()
            .to_string()
            .contains("[2, 3]"));
    }

    #[test]
    fn gradcheck_odd_sizes() {
        let x = Tensor::randn([2, 3, 5, 3], 1.0, DType::F64, &mut Rng::new(61));
        check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| {
            upsample_nearest2d(t, &v[0], 2)
        })
        .unwrap();
        check_gradients(&[x], 1e-6, |t, v| upsample_nearest2d(t, &v[0], 3)).unwrap();
    }
}
