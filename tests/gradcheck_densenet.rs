//! f64 gradient check of a whole tiny DenseNet as the backbone builds it:
//! the stem (conv7x7/2, BN-ReLU, max pool), two dense blocks whose layers
//! read the growing channel concatenation (BN-ReLU, conv1x1, BN-ReLU,
//! conv3x3, dropout active), the transition between them (BN-ReLU,
//! conv1x1, average pool) and the final BN-ReLU, in training mode. Every
//! op is checked on its own in its module; this shows the backbone wires
//! them right, above all the concatenation's gradient reaching every
//! earlier layer of a block.

use mtaffect::gradcheck::check_param_gradients;
use mtaffect::model::{Backbone, DenseNet, DenseNetConfig};
use mtaffect::nn::{Buffers, Ctx, Scope};
use mtaffect::{DType, Params, Rng, Tensor};

#[test]
fn a_tiny_densenet_matches_central_differences() {
    let cfg = DenseNetConfig {
        block_config: Some(vec![2, 2]),
        growth_rate: 3,
        init_features: 4,
        bn_size: 2,
        dropout: 0.2,
        ..DenseNetConfig::default()
    };
    let mut rng = Rng::new(21);
    let (mut p, mut b) = (Params::new(), Buffers::new());
    let net = DenseNet::new(&mut p, &mut b, &Scope::root(), &cfg, &mut rng).unwrap();
    // BN weights and biases away from their initial ones and zeros.
    for id in p.ids().collect::<Vec<_>>() {
        let t = p.get(id);
        if t.dims().len() == 1 {
            let noise = Tensor::uniform(t.dims(), -0.2, 0.2, DType::F32, &mut rng);
            let moved: Vec<f64> = (t.to_f64_vec().iter())
                .zip(noise.to_f64_vec())
                .map(|(a, n)| a + n)
                .collect();
            p.set(id, Tensor::from_f64s(&moved, t.dims(), DType::F32).unwrap())
                .unwrap();
        }
    }
    // 16 x 16 images: an 8 x 8 stem map, 4 x 4 after the max pool, a 2 x 2
    // map after the transition.
    let x = p
        .add(
            "x",
            Tensor::randn([2, 16, 16, 3], 1.0, DType::F32, &mut rng),
        )
        .unwrap();
    let (p, b) = (p.to_dtype(DType::F64), b.to_dtype(DType::F64));
    let report = check_param_gradients(p, 1e-6, |tape, p| {
        // Fresh running statistics and the same dropout masks on every
        // evaluation of the check.
        let (mut b, mut rng) = (b.clone(), Rng::new(7));
        let mut cx = Ctx {
            tape,
            params: p,
            buffers: &mut b,
            training: true,
            rng: &mut rng,
            frozen: false,
        };
        net.forward(&mut cx, &tape.param(p, x))
    })
    .unwrap();
    assert!(report.max_rel_error <= 1e-6, "{report:?}");
}
