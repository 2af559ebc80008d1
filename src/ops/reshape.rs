//! Shape changes on the tape: reshape (a view) and narrow (a slice along an axis).

use crate::{Error, Result, Shape, Tape, Tensor, Var};

/// Same elements in a new shape (row-major order is kept).
pub fn reshape(tape: &Tape, x: &Var, shape: impl Into<Shape>) -> Result<Var> {
    let y = x.value().reshape(shape)?;
    let old = x.shape().clone();
    tape.record("reshape", &[x], y, move |g, _| {
        Ok(vec![Some(g.reshape(old)?)])
    })
}

/// Elements `start..start+len` along `axis`; slicing a batch is axis 0.
pub fn narrow(tape: &Tape, x: &Var, axis: isize, start: usize, len: usize) -> Result<Var> {
    let ax = x.shape().axis("narrow", axis)?;
    let y = x.value().narrow(ax, start, len)?;
    let full = x.dims()[ax];
    tape.record("narrow", &[x], y, move |g, _| {
        // Scatter back between zero blocks.
        let mut parts = Vec::new();
        let zeros = |n: usize| -> Result<Tensor> {
            let mut d = g.dims().to_vec();
            d[ax] = n;
            Tensor::zeros_on(d, g.dtype(), &g.device())
        };
        let (before, after) = (zeros(start)?, zeros(full - start - len)?);
        if start > 0 {
            parts.push(&before);
        }
        parts.push(g);
        if start + len < full {
            parts.push(&after);
        }
        Ok(vec![Some(
            Tensor::concat(&parts, ax).map_err(|e| Error::Tape(e.to_string()))?,
        )])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_gradients;
    use crate::{DType, Rng};

    #[test]
    fn gradcheck_reshape_and_narrow() {
        let mut rng = Rng::new(6);
        let x = Tensor::randn([4, 3, 2], 1.0, DType::F64, &mut rng);
        check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| {
            reshape(t, &v[0], [6, 4])
        })
        .unwrap();
        check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| {
            narrow(t, &v[0], 0, 1, 2)
        })
        .unwrap();
        check_gradients(std::slice::from_ref(&x), 1e-6, |t, v| {
            narrow(t, &v[0], -1, 1, 1)
        })
        .unwrap();
        check_gradients(&[x], 1e-6, |t, v| narrow(t, &v[0], 1, 0, 3)).unwrap();
    }
}
