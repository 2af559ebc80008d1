//! f64 gradient check of one whole SE-ResNet basic block, end to end:
//! conv-BN-ReLU-conv-BN-SE, plus the identity shortcut, then ReLU (the
//! last three fused, as the model runs them: `channel_scale_add_relu`).
//! Every op's backward is checked on its own in its module; this shows
//! they compose (shapes, tape wiring, gradients meeting at the shortcut).

use mtaffect::gradcheck::check_gradients;
use mtaffect::ops::{self, BatchNormParams, Conv2dParams};
use mtaffect::{DType, Result, Rng, Tape, Tensor, Var};

/// The block on x [N, H, W, C]; `p` holds the parameters in the order built in the test.
fn se_basic_block(tape: &Tape, x: &Var, p: &[Var]) -> Result<Var> {
    let c = x.dims()[3];
    let bn = |tape: &Tape, h: &Var, g: &Var, b: &Var| {
        // Fresh running buffers per call: the gradient check evaluates the
        // block many times and each pass must see the same state.
        let (mut rm, mut rv) = (
            Tensor::zeros([c], DType::F64),
            Tensor::ones([c], DType::F64),
        );
        ops::batch_norm2d(tape, h, g, b, &mut rm, &mut rv, BatchNormParams::default())
    };
    let conv = Conv2dParams::new().padding(1);
    let h = ops::conv2d(tape, x, &p[0], None, conv)?;
    let h = ops::relu(tape, &bn(tape, &h, &p[1], &p[2])?)?;
    let h = ops::conv2d(tape, &h, &p[3], None, conv)?;
    let h = bn(tape, &h, &p[4], &p[5])?;
    // Squeeze-and-excitation.
    let s = ops::global_avg_pool(tape, &h)?;
    let s = ops::relu(tape, &ops::linear(tape, &s, &p[6], Some(&p[7]))?)?;
    let s = ops::sigmoid(tape, &ops::linear(tape, &s, &p[8], Some(&p[9]))?)?;
    ops::channel_scale_add_relu(tape, &h, &s, x)
}

/// Input x [2, 5, 5, 4] and the block's parameters, in the order `se_basic_block` reads them.
fn block_inputs() -> Vec<Tensor> {
    let (n, hw, c, r) = (2, 5, 4, 2);
    let mut rng = Rng::new(2024);
    let mut randn = |s: &[usize], std: f64| Tensor::randn(s, std, DType::F64, &mut rng);
    let (x, w1, b1, w2, b2) = (
        randn(&[n, hw, hw, c], 1.0),
        randn(&[c, 3, 3, c], 0.3),
        randn(&[c], 0.2),
        randn(&[c, 3, 3, c], 0.3),
        randn(&[c], 0.2),
    );
    let (fc1, fc1b, fc2, fc2b) = (
        randn(&[r, c], 0.7),
        randn(&[r], 0.3),
        randn(&[c, r], 0.7),
        randn(&[c], 0.3),
    );
    // BN weights around 1, as initialised in training.
    let g1 = Tensor::uniform([c], 0.8, 1.2, DType::F64, &mut rng);
    let g2 = Tensor::uniform([c], 0.8, 1.2, DType::F64, &mut rng);
    vec![x, w1, g1, b1, w2, g2, b2, fc1, fc1b, fc2, fc2b]
}

#[test]
fn se_resnet_basic_block_gradients_match_central_differences() {
    let inputs = block_inputs();
    let report = check_gradients(&inputs, 1e-6, |tape, v| {
        se_basic_block(tape, &v[0], &v[1..])
    })
    .unwrap();
    assert!(report.max_rel_error <= 1e-6, "{report:?}");
}

#[test]
fn a_planted_wrong_gradient_in_the_block_is_caught() {
    // The block followed by an identity whose backward is 0.1% too large:
    // the harness must notice an error this small.
    let err = check_gradients(&block_inputs(), 1e-6, |tape, v| {
        let y = se_basic_block(tape, &v[0], &v[1..])?;
        let out = y.value().clone();
        tape.record("planted_identity", &[&y], out, |g, _| {
            let scaled: Vec<f64> = g.to_f64_vec().iter().map(|v| v * 1.001).collect();
            Ok(vec![Some(Tensor::from_vec(scaled, g.shape().clone())?)])
        })
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("gradient check failed"), "{err}");
}

#[test]
fn a_nan_gradient_fails_even_when_later_elements_agree() {
    // Identity whose backward puts NaN in the first element only; every later
    // element is exact, so the NaN must stay the reported worst.
    let x = Tensor::randn([6], 1.0, DType::F64, &mut Rng::new(7));
    let err = check_gradients(&[x], 1e-6, |tape, v| {
        let out = v[0].value().clone();
        tape.record("nan_identity", &[&v[0]], out, |g, _| {
            let mut d = g.to_f64_vec();
            d[0] = f64::NAN;
            Ok(vec![Some(Tensor::from_vec(d, g.shape().clone())?)])
        })
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("element 0") && err.contains("NaN"), "{err}");
}
