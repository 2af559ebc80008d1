//! Batch norm followed by ReLU as one op: `max(0, batch_norm2d(x))`.
//!
//! Every BN that feeds a ReLU in the SE-ResNet and the generator uses it. On
//! the GPU the ReLU costs nothing extra: the forward clamps in the same pass
//! that normalises, and the backward masks the incoming gradient inside the
//! batch-norm backward (recomputing `y > 0` from x and the saved statistics),
//! so neither the pre-activation nor a masked gradient is ever written. The
//! CPU reference is the batch-norm reference with the same mask; its f64
//! gradient check runs with batch norm's (ops/batch_norm.rs).

use super::batch_norm::{batch_norm_op, BatchNormParams};
use crate::{Result, Tape, Tensor, Var};

/// `max(0, weight·(x - mean)/sqrt(var + eps) + bias)` per channel (the last
/// axis), with running estimates as in [`super::batch_norm2d`].
pub fn batch_norm_relu(
    tape: &Tape,
    x: &Var,
    weight: &Var,
    bias: &Var,
    running_mean: &mut Tensor,
    running_var: &mut Tensor,
    prm: BatchNormParams,
) -> Result<Var> {
    let buffers = (running_mean, running_var);
    batch_norm_op(
        tape,
        "batch_norm_relu",
        x,
        [weight, bias],
        buffers,
        prm,
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{batch_norm2d, relu};
    use crate::{DType, Params, Rng};

    fn inputs(shape: &[usize], rng: &mut Rng) -> [Tensor; 5] {
        let c = *shape.last().unwrap();
        [
            Tensor::randn(shape, 1.0, DType::F64, rng),
            Tensor::uniform([c], 0.5, 1.5, DType::F64, rng),
            Tensor::randn([c], 0.5, DType::F64, rng),
            Tensor::randn([c], 0.5, DType::F64, rng),
            Tensor::uniform([c], 0.5, 2.0, DType::F64, rng),
        ]
    }

    /// A batch-norm variant under test: (tape, [x, w, b], running mean, running var).
    type BnFn<'a> = &'a dyn Fn(&Tape, &[Var], &mut Tensor, &mut Tensor) -> Result<Var>;

    /// Output, running estimates and every gradient of `f` on x, weight, bias.
    fn run(f: BnFn, t: &[Tensor; 5], dtype: DType) -> Vec<Vec<f64>> {
        let mut params = Params::new();
        let ids: Vec<_> = t[..3]
            .iter()
            .enumerate()
            .map(|(i, v)| params.add(format!("in{i}"), v.to_dtype(dtype)).unwrap())
            .collect();
        let (mut rm, mut rv) = (t[3].to_dtype(dtype), t[4].to_dtype(dtype));
        let tape = Tape::new();
        let v: Vec<Var> = ids.iter().map(|&id| tape.param(&params, id)).collect();
        let y = f(&tape, &v, &mut rm, &mut rv).unwrap();
        let seed = Tensor::randn(y.shape().clone(), 1.0, dtype, &mut Rng::new(3));
        let grads = tape.backward_with_seed(&y, seed).unwrap();
        let mut out = vec![y.value().to_f64_vec(), rm.to_f64_vec(), rv.to_f64_vec()];
        out.extend(ids.iter().map(|&id| grads.get(id).unwrap().to_f64_vec()));
        out
    }

    #[test]
    fn equals_relu_of_batch_norm_bit_for_bit_in_f32_and_f64() {
        let mut rng = Rng::new(5);
        let t = inputs(&[3, 4, 5, 6], &mut rng);
        for training in [true, false] {
            let prm = BatchNormParams {
                training,
                ..Default::default()
            };
            for dtype in [DType::F32, DType::F64] {
                let fused = run(
                    &|tp, v, rm, rv| batch_norm_relu(tp, &v[0], &v[1], &v[2], rm, rv, prm),
                    &t,
                    dtype,
                );
                let composed = run(
                    &|tp, v, rm, rv| relu(tp, &batch_norm2d(tp, &v[0], &v[1], &v[2], rm, rv, prm)?),
                    &t,
                    dtype,
                );
                assert_eq!(fused, composed, "training={training} {dtype:?}");
                // The ReLU did something: some outputs are clamped, some pass.
                assert!(fused[0].contains(&0.0) && fused[0].iter().any(|&v| v > 0.0));
            }
        }
    }

    #[test]
    fn errors_name_the_fused_op() {
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::zeros([1, 1, 1, 3], DType::F64));
        let v3 = tape.constant(Tensor::ones([3], DType::F64));
        let (mut bad, mut rv) = (
            Tensor::zeros([4], DType::F64),
            Tensor::ones([3], DType::F64),
        );
        let prm = BatchNormParams::eval();
        let e = batch_norm_relu(&tape, &x, &v3, &v3, &mut bad, &mut rv, prm)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("batch_norm_relu") && e.contains("running_mean [4]"),
            "{e}"
        );
    }
}
