//! f64 gradient checks of the Vision Transformer as the `nn` layers build
//! it: a stack of pre-norm blocks with drop path active (layer norm, fused
//! q/k/v projection, attention, GELU MLP, residuals), and a whole tiny ViT
//! from pixels to the pooled vector with either pooling. Every op is
//! checked on its own in its module; this shows the layers wire them right
//! (weight slices of the fused projection, the class token's broadcast,
//! the position embedding, pooling).

use mtaffect::gradcheck::check_param_gradients;
use mtaffect::model::{Backbone, Pooling, Vit, VitConfig, VitPreset};
use mtaffect::nn::{Buffers, Ctx, Scope, VitStack, VitStackSpec};
use mtaffect::{DType, ParamId, Params, Result, Rng, Tape, Tensor, Var};

/// Runs `f` in training mode with a fixed drop-path seed, so every
/// evaluation of the check drops the same samples.
fn run(tape: &Tape, p: &Params, f: impl FnOnce(&mut Ctx) -> Result<Var>) -> Result<Var> {
    let (mut b, mut rng) = (Buffers::new(), Rng::new(7));
    f(&mut Ctx {
        tape,
        params: p,
        buffers: &mut b,
        training: true,
        rng: &mut rng,
        frozen: false,
    })
}

/// Adds N(0, 0.2) to every tensor, so no gradient is checked only at its
/// initial zeros or ones (biases, norms) and the class token is not tiny.
fn jitter(p: &mut Params, rng: &mut Rng) {
    for id in p.ids().collect::<Vec<_>>() {
        let t = p.get(id);
        let noise = Tensor::randn(t.dims(), 0.2, DType::F32, rng);
        let moved: Vec<f64> = t
            .to_f64_vec()
            .iter()
            .zip(noise.to_f64_vec())
            .map(|(a, b)| a + b)
            .collect();
        p.set(id, Tensor::from_f64s(&moved, t.dims(), DType::F32).unwrap())
            .unwrap();
    }
}

/// The registry with `x` registered last, in f64, and x's id.
fn with_input(mut p: Params, x: Tensor) -> (Params, ParamId) {
    let id = p.add("x", x).unwrap();
    (p.to_dtype(DType::F64), id)
}

#[test]
fn a_vit_block_stack_with_drop_path_matches_central_differences() {
    let spec = VitStackSpec {
        depth: 2,
        width: 8,
        heads: 2,
        mlp_ratio: 2.0,
        // Block 1 drops its branches with probability 0.5.
        drop_path: 0.5,
    };
    let mut rng = Rng::new(11);
    let mut p = Params::new();
    let stack = VitStack::new(&mut p, &Scope::root().pp("blocks"), spec, &mut rng).unwrap();
    jitter(&mut p, &mut rng);
    let x = Tensor::randn([4, 5, 8], 1.0, DType::F32, &mut rng);
    let (p, x) = with_input(p, x.to_dtype(DType::F64));
    let report = check_param_gradients(p, 1e-6, |tape, p| {
        run(tape, p, |cx| stack.forward(cx, &tape.param(p, x)))
    })
    .unwrap();
    assert!(report.max_rel_error <= 1e-6, "{report:?}");
}

#[test]
fn a_whole_tiny_vit_matches_central_differences() {
    for pooling in [Pooling::Cls, Pooling::Mean] {
        let cfg = VitConfig {
            preset: VitPreset::Tiny,
            depth: Some(2),
            width: Some(8),
            heads: Some(2),
            patch: 8,
            pooling,
            drop_path: 0.3,
            mlp_ratio: 2.0,
        };
        let mut rng = Rng::new(12);
        let mut p = Params::new();
        let vit = Vit::new(&mut p, &Scope::root(), &cfg, &mut rng).unwrap();
        jitter(&mut p, &mut rng);
        // 16 x 16 images: a 2 x 2 grid of patches.
        let x = Tensor::randn([3, 16, 16, 3], 1.0, DType::F64, &mut rng);
        let (p, x) = with_input(p, x);
        let report = check_param_gradients(p, 1e-6, |tape, p| {
            run(tape, p, |cx| vit.forward(cx, &tape.param(p, x)))
        })
        .unwrap_or_else(|e| panic!("{pooling:?}: {e}"));
        assert!(report.max_rel_error <= 1e-6, "{pooling:?}: {report:?}");
    }
}
