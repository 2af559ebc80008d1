//! The step arithmetic the tape counts (`Tape::product_flops`), which the
//! benches turn into model FLOP utilisation: the rule on single products,
//! then whole SE-ResNet multi-task models against PyTorch's own count.

#[path = "common/gan_fixtures.rs"]
mod gan_fixtures;

use mtaffect::model::{MtlNet, NetConfig};
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
    let mut expect = mtaffect::autograd::ProductFlops::default();
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

/// SE-ResNet-`depth` as scripts/torch_bench.py's `model_config` builds it
/// (width 1, SE reduction 16, ImageNet stem, MTANet neck, dropout 0.2):
/// NetConfig's default but for the depth.
fn bench_model(depth: usize) -> NetConfig {
    NetConfig {
        depth,
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
