//! Concatenation along any axis (channels of NHWC activations: axis 3 or -1).

use crate::{Result, Tape, Tensor, Var};

/// Joins `parts` along `axis` (negative counts from the end).
pub fn concat(tape: &Tape, parts: &[&Var], axis: isize) -> Result<Var> {
    let first = parts
        .first()
        .ok_or_else(|| crate::Error::arg("concat", "no tensors given"))?;
    let ax = first.shape().axis("concat", axis)?;
    let values: Vec<&Tensor> = parts.iter().map(|v| v.value()).collect();
    let y = Tensor::concat(&values, ax)?;
    let sizes: Vec<usize> = values.iter().map(|t| t.dims()[ax]).collect();
    tape.record("concat", parts, y, move |g, needs| {
        let mut start = 0;
        let mut grads = Vec::with_capacity(sizes.len());
        for (&len, &need) in sizes.iter().zip(needs) {
            grads.push(if need {
                Some(g.narrow(ax, start, len)?)
            } else {
                None
            });
            start += len;
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
    fn gradcheck_channel_and_batch_concat() {
        let mut rng = Rng::new(4);
        let a = Tensor::randn([2, 3, 3, 2], 1.0, DType::F64, &mut rng);
        let b = Tensor::randn([2, 3, 3, 5], 1.0, DType::F64, &mut rng);
        check_gradients(&[a.clone(), b], 1e-6, |t, v| concat(t, &[&v[0], &v[1]], -1)).unwrap();
        let c = Tensor::randn([1, 3, 3, 2], 1.0, DType::F64, &mut rng);
        check_gradients(&[a, c], 1e-6, |t, v| concat(t, &[&v[0], &v[1], &v[0]], 0)).unwrap();
    }
}
