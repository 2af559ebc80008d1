//! The step arithmetic the tape counts (`Tape::product_flops`), which the
//! benches turn into model FLOP utilisation: the rule on single products,
//! recurrent layers and attention, then whole SE-ResNet multi-task models
//! against PyTorch's own count, and the trainer's report of its step.

#[path = "common/gan_fixtures.rs"]
mod gan_fixtures;

use mtaffect::autograd::ProductFlops;
use mtaffect::model::{MtlNet, NetConfig, SeResNetConfig};
use mtaffect::nn::{Buffers, Ctx};
use mtaffect::ops::conv::Conv2dParams;
use mtaffect::train::{TrainConfig, Trainer};
use mtaffect::{ops, DType, Params, Rng, Tape, Tensor};

#[test]
fn a_product_counts_a_backward_pass_per_operand_that_needs_a_gradient() {
    let mut rng = Rng::new(1);
    let mut params = Params::new();
    let w = params
        .add("w", Tensor::randn([4, 3, 3, 2], 1.0, DType::F64, &mut rng))
        .unwrap();
    let fc = params
        .add("fc", Tensor::randn([5, 4], 1.0, DType::F64, &mut rng))
        .unwrap();
    let x = Tensor::randn([2, 6, 6, 2], 1.0, DType::F64, &mut rng);
    let prm = Conv2dParams {
        stride: [2, 2],
        padding: [1, 1, 1, 1],
        ..Conv2dParams::default()
    };
    // Output 2 x 3 x 3 x 4, each a sum over 3 x 3 x 2 taps.
    let conv_macs = 2 * 3 * 3 * 4 * (3 * 3 * 2);
    // The pooled [2, 4] features times the [5, 4] weight.
    let fc_macs = 2 * 4 * 5;

    let tape = Tape::new();
    let xv = tape.constant(x.clone());
    let y = ops::conv2d(&tape, &xv, &tape.param(&params, w), None, prm).unwrap();
    // A constant input: the wgrad only.
    assert_eq!(tape.product_flops().forward, 2 * conv_macs);
    assert_eq!(tape.product_flops().backward, 2 * conv_macs);
    let f = ops::global_avg_pool(&tape, &y).unwrap();
    ops::linear(&tape, &f, &tape.param(&params, fc), None).unwrap();
    // Both factors of the linear need a gradient: dx and dW.
    let c = tape.product_flops();
    assert_eq!(c.forward, 2 * (conv_macs + fc_macs));
    assert_eq!(c.backward, 2 * conv_macs + 4 * fc_macs);
    assert_eq!(c.total(), c.forward + c.backward);

    // Eval: the same forward, no backward.
    let eval = Tape::no_grad();
    let xv = eval.constant(x);
    let y = ops::conv2d(&eval, &xv, &eval.param(&params, w), None, prm).unwrap();
    let f = ops::global_avg_pool(&eval, &y).unwrap();
    ops::linear(&eval, &f, &eval.param(&params, fc), None).unwrap();
    assert_eq!(eval.product_flops().forward, 2 * (conv_macs + fc_macs));
    assert_eq!(eval.product_flops().backward, 0);
}

#[test]
fn matrix_products_and_transposed_convolutions_count_their_multiply_adds() {
    let mut rng = Rng::new(2);
    let mut params = Params::new();
    let mut param = |name: &str, dims: &[usize]| {
        let t = Tensor::randn(dims.to_vec(), 1.0, DType::F64, &mut rng);
        params.add(name, t).unwrap()
    };
    let ids = [
        param("a", &[3, 4]),
        param("at", &[2, 4, 6]),
        param("b", &[2, 5, 4]),
        param("wt", &[4, 3, 3, 2]),
    ];
    let tape = Tape::new();
    let [a, at, b, wt] = ids.map(|id| tape.param(&params, id));
    let mut r = Rng::new(5);
    let constant = |dims: &[usize], r: &mut Rng| {
        tape.constant(Tensor::randn(dims.to_vec(), 1.0, DType::F64, r))
    };
    let mut expect = ProductFlops::default();
    let mut check = |macs: u64, passes: u64| {
        expect.forward += 2 * macs;
        expect.backward += 2 * macs * passes;
        assert_eq!(tape.product_flops(), expect);
    };
    // [3, 4] x [4, 6], the right factor constant: dA only.
    ops::matmul(&tape, &a, &constant(&[4, 6], &mut r)).unwrap();
    check(3 * 4 * 6, 1);
    // 2 x ([6, 4] stored as [4, 6]) x ([4, 5] stored as [5, 4]): both factors.
    ops::bmm(&tape, &at, &b, ops::Transposes { a: true, b: true }).unwrap();
    check(2 * 6 * 4 * 5, 2);
    // A stride-2 transposed conv of a constant [1, 3, 3, 4] to 2 channels:
    // each input pixel scatters 3 x 3 x 2 products (its adjoint conv's count).
    let x = constant(&[1, 3, 3, 4], &mut r);
    let prm = Conv2dParams {
        stride: [2, 2],
        padding: [1, 1, 1, 1],
        ..Conv2dParams::default()
    };
    ops::conv_transpose2d(&tape, &x, &wt, None, prm, [1, 1]).unwrap();
    check(3 * 3 * 4 * (3 * 3 * 2), 1);
}

/// A recurrent layer's four weights for `gates` gates, F = 3 inputs and H = 4 units.
fn rnn_weights(
    tape: &Tape,
    params: &mut Params,
    gates: usize,
    rng: &mut Rng,
) -> [mtaffect::Var; 4] {
    let (f, h) = (3, 4);
    let dims = [
        vec![gates * h, f],
        vec![gates * h, h],
        vec![gates * h],
        vec![gates * h],
    ];
    let ids = dims.map(|d| {
        let name = format!("w{}", params.len());
        params
            .add(name, Tensor::randn(d, 0.5, DType::F64, rng))
            .unwrap()
    });
    ids.map(|id| tape.param(params, id))
}

#[test]
fn recurrent_layers_and_attention_count_their_inner_products() {
    let mut rng = Rng::new(4);
    // N = 2 sequences of T = 5 frames, F = 3 inputs, H = 4 units.
    let x = Tensor::randn([2, 5, 3], 1.0, DType::F64, &mut rng);
    // (gates, whether x needs a gradient, forward, backward). The GRU's
    // figures are torch.utils.flop_counter's for nn.GRU(3, 4) on the same
    // shapes (`python3 scripts/torch_flops.py`; the counter does not see
    // PyTorch's fused CPU LSTM): the state's gradient is not carried into
    // the detached initial state.
    for (gates, x_grad, forward, backward) in [
        (3, true, 1680, 3168),
        (3, false, 1680, 2448),
        // By hand: 2·N·T·4H·F = 960 and 2·N·T·4H·H = 1280 forward; backward
        // twice the input product (dx, dW_ih), twice the state product
        // (dh, dW_hh) less the first frame's dh (2·N·4H·H = 256).
        (4, true, 2240, 4224),
    ] {
        let tape = Tape::new();
        let mut params = Params::new();
        let xv = match x_grad {
            true => {
                let id = params.add("x", x.clone()).unwrap();
                tape.param(&params, id)
            }
            false => tape.constant(x.clone()),
        };
        let w = rnn_weights(&tape, &mut params, gates, &mut rng);
        let rw = ops::RnnWeights::from_vars(&w);
        match gates {
            3 => drop(ops::gru(&tape, &xv, rw, None, None).unwrap()),
            _ => drop(ops::lstm(&tape, &xv, rw, None, None).unwrap()),
        }
        let c = tape.product_flops();
        assert_eq!(
            (c.forward, c.backward),
            (forward, backward),
            "{gates} gates, dx {x_grad}"
        );
    }

    // Attention, q [2, 5, 3, 4] against 6 keys: scores q·kᵀ and weights·v,
    // 2·3·5·6·4 = 720 multiply-adds each (the forward is PyTorch's count for
    // scaled_dot_product_attention; its backward counts flash attention's
    // recomputed scores as well, which ours does not compute).
    let tape = Tape::new();
    let mut params = Params::new();
    let q = params.add("q", Tensor::randn([2, 5, 3, 4], 1.0, DType::F64, &mut rng));
    let k = params.add("k", Tensor::randn([2, 6, 3, 4], 1.0, DType::F64, &mut rng));
    let (q, k) = (
        tape.param(&params, q.unwrap()),
        tape.param(&params, k.unwrap()),
    );
    let v = tape.constant(Tensor::randn([2, 6, 3, 4], 1.0, DType::F64, &mut rng));
    ops::attention(&tape, &q, &k, &v, None).unwrap();
    // A constant v: dq and dk through the scores, the weights' gradient, no dv.
    assert_eq!(
        tape.product_flops(),
        ProductFlops {
            forward: 2880,
            backward: 3 * 1440
        }
    );
}

/// SE-ResNet-`depth` as scripts/torch_bench.py's `model_config` builds it
/// (width 1, SE reduction 16, ImageNet stem, MTANet neck, dropout 0.2):
/// NetConfig's default but for the depth.
fn bench_model(depth: usize) -> NetConfig {
    NetConfig {
        backbone: SeResNetConfig {
            depth,
            ..SeResNetConfig::default()
        }
        .into(),
        ..NetConfig::default()
    }
}

/// The counts of a training step's forward of `depth` at `batch` x `size` x `size`.
fn step_flops(depth: usize, batch: usize, size: usize) -> (u64, u64) {
    let mut rng = Rng::new(0);
    let (mut params, mut buffers) = (Params::new(), Buffers::new());
    let net = MtlNet::new(&bench_model(depth), &mut params, &mut buffers, &mut rng).unwrap();
    let tape = Tape::new();
    let x = tape.constant(Tensor::uniform(
        [batch, size, size, 3],
        -1.0,
        1.0,
        DType::F32,
        &mut rng,
    ));
    let mut cx = Ctx {
        tape: &tape,
        params: &params,
        buffers: &mut buffers,
        training: true,
        rng: &mut rng,
        frozen: false,
    };
    net.forward(&mut cx, &x).unwrap();
    let c = tape.product_flops();
    (c.forward, c.backward)
}

#[test]
fn se_resnet_steps_count_what_pytorch_counts() {
    // (depth, batch, size, forward, backward) from `python3
    // scripts/torch_flops.py` (torch 2.15, FlopCounterMode over forward + loss,
    // then over backward). The loss has no products, so our forward's count
    // is the step's.
    for (depth, batch, size, forward, backward) in [
        (18, 2, 32, 150_581_248, 291_528_704),
        (50, 1, 48, 498_130_944, 985_423_872),
    ] {
        assert_eq!(
            step_flops(depth, batch, size),
            (forward, backward),
            "SE-ResNet-{depth} b{batch} {size}x{size}"
        );
    }
}

#[test]
fn the_trainer_reports_its_steps_count() {
    use gan_fixtures::{batch, N, SIZE};
    let mut cfg = TrainConfig {
        model: bench_model(18),
        ..TrainConfig::default()
    };
    cfg.data.image_size = SIZE;
    cfg.data.batch_size = N;
    let mut t = Trainer::new(&cfg).unwrap();
    t.step(&batch(&mut Rng::new(3))).unwrap();
    let c = t.last_flops;
    assert_eq!((c.forward, c.backward), step_flops(18, N, SIZE));
}
