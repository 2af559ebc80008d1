//! Layer normalisation over the last axis with an affine weight and bias
//! (token features before attention). Statistics per row use the biased
//! variance, as in PyTorch, and accumulate in f64.

mod cuda;

use crate::backend::cpu::Float;
use crate::tensor::check_same_dtype;
use crate::{with_dtype, Error, Result, Tape, Tensor, Var};

/// `y = weight·(x - mean)/sqrt(var + eps) + bias` over the last axis of x
/// [.., D]; weight and bias are [D].
pub fn layer_norm(tape: &Tape, x: &Var, weight: &Var, bias: &Var, eps: f64) -> Result<Var> {
    const OP: &str = "layer_norm";
    let d = match x.dims().last() {
        Some(&d) if d > 0 => d,
        _ => {
            return Err(Error::shape(
                OP,
                format!("input {} needs a non-empty last axis", x.shape()),
            ))
        }
    };
    for p in [weight, bias] {
        check_same_dtype(OP, x.value(), p.value())?;
        if p.dims() != [d] {
            return Err(Error::shape(
                OP,
                format!("weight/bias {} for input {}", p.shape(), x.shape()),
            ));
        }
    }
    if eps.is_nan() || eps <= 0.0 {
        return Err(Error::arg(OP, format!("eps = {eps} must be > 0")));
    }
    let gamma = weight.value().clone();
    if let Some(dev) = crate::tensor::same_device(OP, &[x.value(), &gamma, bias.value()])? {
        let p = cuda::LayerNormParams::new(&dev, x.value().numel() / d, d, eps);
        let xt = x.value().clone();
        let (y, stats) = cuda::forward(&dev, &p, &xt, &gamma, bias.value())?;
        return tape.record(OP, &[x, weight, bias], y, move |dy, needs| {
            let (dx, dw, db) = cuda::backward(&dev, &p, dy, &xt, &gamma, &stats)?;
            Ok(vec![
                needs[0].then_some(dx),
                needs[1].then_some(dw),
                needs[2].then_some(db),
            ])
        });
    }
    let (y, xhat, inv_std) = with_dtype!(x.value().dtype(), T => {
        let (gd, bd) = (gamma.data::<T>()?, bias.value().data::<T>()?);
        let xd = x.value().data::<T>()?;
        let (mut y, mut xhat) = (Vec::with_capacity(xd.len()), Vec::with_capacity(xd.len()));
        let mut inv_std = Vec::with_capacity(xd.len() / d);
        for row in xd.chunks_exact(d) {
            let mean = row.iter().map(|v| v.to_f64()).sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / d as f64;
            let is = 1.0 / (var + eps).sqrt();
            inv_std.push(is);
            for j in 0..d {
                let h = (row[j].to_f64() - mean) * is;
                xhat.push(T::from_f64(h));
                y.push(T::from_f64(gd[j].to_f64() * h + bd[j].to_f64()));
            }
        }
        (Tensor::from_vec(y, x.shape().clone())?, Tensor::from_vec(xhat, x.shape().clone())?, inv_std)
    });
    tape.record(OP, &[x, weight, bias], y, move |dy, needs| {
        with_dtype!(dy.dtype(), T => {
            let (g, h, gm) = (dy.data::<T>()?, xhat.data::<T>()?, gamma.data::<T>()?);
            let (mut dw, mut db) = (vec![0.0; d], vec![0.0; d]);
            let mut dx = Vec::with_capacity(if needs[0] { g.len() } else { 0 });
            for ((gr, hr), is) in g.chunks_exact(d).zip(h.chunks_exact(d)).zip(&inv_std) {
                // With u = dy·weight: dx = inv_std·(u - mean(u) - x̂·mean(u·x̂)).
                let (mut su, mut suh) = (0.0, 0.0);
                for j in 0..d {
                    let (gj, hj) = (gr[j].to_f64(), hr[j].to_f64());
                    dw[j] += gj * hj;
                    db[j] += gj;
                    let u = gj * gm[j].to_f64();
                    su += u;
                    suh += u * hj;
                }
                if needs[0] {
                    let (mu, muh) = (su / d as f64, suh / d as f64);
                    for j in 0..d {
                        let u = gr[j].to_f64() * gm[j].to_f64();
                        dx.push(T::from_f64(is * (u - mu - hr[j].to_f64() * muh)));
                    }
                }
            }
            let to_t = |v: &[f64]| Tensor::from_vec(v.iter().map(|&a| T::from_f64(a)).collect::<Vec<T>>(), [d]);
            Ok(vec![
                if needs[0] { Some(Tensor::from_vec(dx, dy.shape().clone())?) } else { None },
                if needs[1] { Some(to_t(&dw)?) } else { None },
                if needs[2] { Some(to_t(&db)?) } else { None },
            ])
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    #[test]
    fn values_by_hand() {
        // Row [1, 2, 3, 6]: mean 3, var 3.5.
        let tape = Tape::no_grad();
        let x = tape.constant(
            Tensor::from_f64s(&[1., 2., 3., 6., 5., 5., 5., 5.], [2, 4], DType::F64).unwrap(),
        );
        let w = tape.constant(Tensor::from_f64s(&[1., 2., 1., 1.], [4], DType::F64).unwrap());
        let b = tape.constant(Tensor::from_f64s(&[0., 0., 1., 0.], [4], DType::F64).unwrap());
        let y = layer_norm(&tape, &x, &w, &b, 1e-5)
            .unwrap()
            .into_value()
            .to_f64_vec();
        let s = (3.5f64 + 1e-5).sqrt();
        let want = [-2.0 / s, -2.0 / s, 1.0, 3.0 / s, 0.0, 0.0, 1.0, 0.0];
        assert!(
            y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{y:?}"
        );
        let e = layer_norm(
            &tape,
            &x,
            &b,
            &tape.constant(Tensor::zeros([3], DType::F64)),
            1e-5,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[3]") && e.contains("[2, 4]"), "{e}");
    }

    #[test]
    fn gradcheck_all_inputs() {
        let mut rng = Rng::new(81);
        let x = Tensor::randn([2, 3, 7], 1.0, DType::F64, &mut rng);
        let w = Tensor::randn([7], 1.0, DType::F64, &mut rng);
        let b = Tensor::randn([7], 1.0, DType::F64, &mut rng);
        check_gradients(&[x, w, b], 1e-6, |t, v| {
            layer_norm(t, &v[0], &v[1], &v[2], 1e-5)
        })
        .unwrap();
    }
}
