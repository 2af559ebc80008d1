//! Channel-wise scaling, the last step of a squeeze-and-excitation block:
//! `y[n, h, w, c] = x[n, h, w, c] · g[n, c]`, with SE = global_avg_pool ->
//! linear -> relu -> linear -> sigmoid -> channel_scale; and the same fused
//! with the residual add and ReLU that end an SE residual block
//! ([`channel_scale_add_relu`]).

mod cuda;

use crate::autograd::Precision;
use crate::backend::cpu::Float;
use crate::tensor::check_same_dtype;
use crate::{with_dtype, Error, Result, Tape, Tensor, Var};

/// Scales every channel of each sample of x [N, H, W, C] by g [N, C].
pub fn channel_scale(tape: &Tape, x: &Var, g: &Var) -> Result<Var> {
    scale_op(tape, "channel_scale", x, g, None)
}

/// `relu(channel_scale(x, g) + res)` in one op (one pass over memory on a
/// GPU instead of three): x and res [N, H, W, C], g [N, C]. Its gradients
/// are those of the composition, with ReLU's derivative 0 at 0.
pub fn channel_scale_add_relu(tape: &Tape, x: &Var, g: &Var, res: &Var) -> Result<Var> {
    check_same_dtype("channel_scale_add_relu", x.value(), res.value())?;
    if res.dims() != x.dims() {
        return Err(Error::shape(
            "channel_scale_add_relu",
            format!(
                "residual {} must have the input's shape {}",
                res.shape(),
                x.shape()
            ),
        ));
    }
    scale_op(tape, "channel_scale_add_relu", x, g, Some(res))
}

fn scale_op(tape: &Tape, op: &'static str, x: &Var, g: &Var, res: Option<&Var>) -> Result<Var> {
    check_same_dtype(op, x.value(), g.value())?;
    let ok = matches!((x.dims(), g.dims()), (&[n, _, _, c], &[gn, gc]) if n == gn && c == gc);
    if !ok {
        return Err(Error::shape(
            op,
            format!(
                "input {} must be [N, H, W, C] and scale {} [N, C]",
                x.shape(),
                g.shape()
            ),
        ));
    }
    let (n, c) = (x.dims()[0], x.dims()[3]);
    let mut inputs = vec![x, g];
    inputs.extend(res);
    let (xt, gt) = (x.value().clone(), g.value().clone());
    let values: Vec<&Tensor> = inputs.iter().map(|v| v.value()).collect();
    if let Some(dev) = crate::tensor::same_device(op, &values)? {
        // Under a bf16 tape the end of an SE block feeds the next block's
        // convs: its output gets a bf16 copy, written in the same pass.
        let bf16 = res.is_some() && tape.precision() == Precision::Bf16;
        let y = cuda::forward(&dev, &xt, &gt, res.map(|r| r.value()), bf16)?;
        let fused_y = res.map(|_| y.clone());
        return tape.record(op, &inputs, y, move |dy, needs| {
            cuda::backward(&dev, dy, &xt, &gt, fused_y.as_ref(), needs)
        });
    }
    let hw = x.value().numel() / (n * c).max(1);
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
    let mut y = scaled(&xt, &gt)?;
    if let Some(r) = res {
        y = with_dtype!(y.dtype(), T => {
            let v = y.data::<T>()?.iter().zip(r.value().data::<T>()?)
                .map(|(&a, &b)| (a + b).max(T::ZERO)).collect();
            Tensor::from_vec(v, y.shape().clone())?
        });
    }
    let fused_y = res.map(|_| y.clone());
    tape.record(op, &inputs, y, move |dy, needs| {
        // The gradient reaching x·g: dy, or after the ReLU dy where y > 0.
        let dz = match &fused_y {
            None => dy.clone(),
            Some(y) => with_dtype!(dy.dtype(), T => {
                let v = dy.data::<T>()?.iter().zip(y.data::<T>()?)
                    .map(|(&d, &o)| if o > T::ZERO { d } else { T::ZERO }).collect();
                Tensor::from_vec(v, dy.shape().clone())?
            }),
        };
        let dx = if needs[0] { Some(scaled(&dz, &gt)?) } else { None };
        let dg = if needs[1] {
            // dg[n, c] = Σ_{h,w} dz · x
            Some(with_dtype!(dz.dtype(), T => {
                let mut dg = vec![T::ZERO; n * c];
                let rows = dz.data::<T>()?.chunks_exact(c.max(1)).zip(xt.data::<T>()?.chunks_exact(c.max(1)));
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
        let mut grads = vec![dx, dg];
        if fused_y.is_some() {
            grads.push(needs[2].then_some(dz));
        }
        Ok(grads)
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
    fn the_fused_residual_form_equals_the_composition() {
        let mut rng = Rng::new(72);
        let x = Tensor::randn([2, 3, 5, 4], 1.0, DType::F64, &mut rng);
        let g = Tensor::randn([2, 4], 1.0, DType::F64, &mut rng);
        let r = Tensor::randn([2, 3, 5, 4], 1.0, DType::F64, &mut rng);
        let run = |fused: bool| {
            let mut p = crate::Params::new();
            let ids = [("x", &x), ("g", &g), ("r", &r)].map(|(k, t)| p.add(k, t.clone()).unwrap());
            let tape = Tape::new();
            let [xv, gv, rv] = ids.map(|id| tape.param(&p, id));
            let y = if fused {
                channel_scale_add_relu(&tape, &xv, &gv, &rv).unwrap()
            } else {
                let s = channel_scale(&tape, &xv, &gv).unwrap();
                crate::ops::relu(&tape, &crate::ops::add(&tape, &s, &rv).unwrap()).unwrap()
            };
            // A non-uniform output gradient: the loss is sum(y * y).
            let sq = crate::ops::mul(&tape, &y, &y).unwrap();
            let loss = crate::ops::sum(&tape, &sq, &[0, 1, 2, 3], false).unwrap();
            let grads = tape.backward(&loss).unwrap();
            let mut out = vec![y.value().to_f64_vec()];
            out.extend(ids.map(|id| grads.get(id).unwrap().to_f64_vec()));
            out
        };
        let (fused, composed) = (run(true), run(false));
        // Both sides of the ReLU occur.
        assert!(fused[0].contains(&0.0) && fused[0].iter().any(|&v| v > 0.0));
        for (a, b) in fused.iter().zip(&composed) {
            for (u, v) in a.iter().zip(b) {
                assert!((u - v).abs() <= 1e-12 * (1.0 + v.abs()), "{u} vs {v}");
            }
        }
    }

    #[test]
    fn gradcheck_the_fused_residual_form() {
        let mut rng = Rng::new(73);
        let x = Tensor::randn([2, 3, 5, 4], 1.0, DType::F64, &mut rng);
        let g = Tensor::randn([2, 4], 1.0, DType::F64, &mut rng);
        // Kept off ReLU's kink: |x g + r| >= 0.05 everywhere, by moving r.
        let (xv, gv) = (x.to_f64_vec(), g.to_f64_vec());
        let r: Vec<f64> = Tensor::randn([2, 3, 5, 4], 1.0, DType::F64, &mut rng)
            .to_f64_vec()
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                let z = xv[i] * gv[i / 60 * 4 + i % 4] + r;
                if z.abs() < 0.05 {
                    r + 0.1
                } else {
                    r
                }
            })
            .collect();
        let r = Tensor::from_f64s(&r, [2, 3, 5, 4], DType::F64).unwrap();
        check_gradients(&[x, g, r], 1e-6, |t, v| {
            channel_scale_add_relu(t, &v[0], &v[1], &v[2])
        })
        .unwrap();
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
        let g = tape.constant(Tensor::zeros([2, 4], DType::F32));
        let r = tape.constant(Tensor::zeros([2, 3, 4, 4], DType::F32));
        let e = channel_scale_add_relu(&tape, &x, &g, &r)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("channel_scale_add_relu") && e.contains("[2, 3, 4, 4]"),
            "{e}"
        );
    }
}
