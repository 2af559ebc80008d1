//! Channel-wise scaling, the last step of a squeeze-and-excitation block:
//! `y[n, h, w, c] = x[n, h, w, c] · g[n, c]`, with SE = global_avg_pool ->
//! linear -> relu -> linear -> sigmoid -> channel_scale.

mod cuda;

use crate::backend::cpu::Float;
use crate::tensor::check_same_dtype;
use crate::{with_dtype, Error, Result, Tape, Tensor, Var};

/// Scales every channel of each sample of x [N, H, W, C] by g [N, C].
pub fn channel_scale(tape: &Tape, x: &Var, g: &Var) -> Result<Var> {
    check_same_dtype("channel_scale", x.value(), g.value())?;
    let ok = matches!((x.dims(), g.dims()), (&[n, _, _, c], &[gn, gc]) if n == gn && c == gc);
    if !ok {
        return Err(Error::shape(
            "channel_scale",
            format!(
                "input {} must be [N, H, W, C] and scale {} [N, C]",
                x.shape(),
                g.shape()
            ),
        ));
    }
    let (n, c) = (x.dims()[0], x.dims()[3]);
    if let Some(dev) = crate::tensor::same_device("channel_scale", &[x.value(), g.value()])? {
        let (xt, gt) = (x.value().clone(), g.value().clone());
        let y = cuda::forward(&dev, &xt, &gt)?;
        return tape.record("channel_scale", &[x, g], y, move |dy, needs| {
            cuda::backward(&dev, dy, &xt, &gt, needs)
        });
    }
    let hw = x.value().numel() / (n * c).max(1);
    let (xt, gt) = (x.value().clone(), g.value().clone());
    // Row r (a pixel) of sample r / hw is scaled by g's row r / hw.
    let scaled = move |a: &Tensor, s: &Tensor| -> Result<Tensor> {
        with_dtype!(a.dtype(), T => {
            let sd = s.data::<T>()?;
            let mut out = a.data::<T>()?.to_vec();
            for (r, row) in out.chunks_exact_mut(c.max(1)).enumerate() {
                let gr = &sd[r / hw * c..][..c];
                row.iter_mut().zip(gr).for_each(|(v, &f)| *v *= f);
            }
            Tensor::from_vec(out, a.shape().clone())
        })
    };
    let y = scaled(&xt, &gt)?;
    tape.record("channel_scale", &[x, g], y, move |dy, needs| {
        let dx = if needs[0] { Some(scaled(dy, &gt)?) } else { None };
        let dg = if needs[1] {
            // dg[n, c] = Σ_{h,w} dy · x
            Some(with_dtype!(dy.dtype(), T => {
                let mut dg = vec![T::ZERO; n * c];
                let rows = dy.data::<T>()?.chunks_exact(c.max(1)).zip(xt.data::<T>()?.chunks_exact(c.max(1)));
                for (r, (gr, xr)) in rows.enumerate() {
                    let acc = &mut dg[r / hw * c..][..c];
                    for j in 0..c {
                        acc[j] += gr[j] * xr[j];
                    }
                }
                Tensor::from_vec(dg, [n, c])?
            }))
        } else {
            None
        };
        Ok(vec![dx, dg])
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
        let x = tape.constant(
            Tensor::from_f64s(&[1., 2., 3., 4., 5., 6., 7., 8.], [2, 2, 1, 2], DType::F64).unwrap(),
        );
        let g = tape.constant(Tensor::from_f64s(&[10., 0.5, -1., 2.], [2, 2], DType::F64).unwrap());
        let y = channel_scale(&tape, &x, &g).unwrap();
        assert_eq!(
            y.value().to_f64_vec(),
            [10., 1., 30., 2., -5., 12., -7., 16.]
        );
    }

    #[test]
    fn gradcheck_both_inputs() {
        let mut rng = Rng::new(71);
        let x = Tensor::randn([2, 3, 5, 4], 1.0, DType::F64, &mut rng);
        let g = Tensor::randn([2, 4], 1.0, DType::F64, &mut rng);
        check_gradients(&[x, g], 1e-6, |t, v| channel_scale(t, &v[0], &v[1])).unwrap();
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::zeros([2, 3, 3, 4], DType::F32));
        let g = tape.constant(Tensor::zeros([2, 3], DType::F32));
        let e = channel_scale(&tape, &x, &g).unwrap_err().to_string();
        assert!(
            e.contains("channel_scale") && e.contains("[2, 3, 3, 4]") && e.contains("[2, 3]"),
            "{e}"
        );
        let g = tape.constant(Tensor::zeros([1, 4], DType::F32));
        assert!(channel_scale(&tape, &x, &g).is_err());
    }
}
