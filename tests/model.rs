//! The SE-ResNet multi-task network: shapes for every depth and stem, every
//! parameter receives a gradient, eval records nothing and uses running stats.

use mtaffect::model::{MtlNet, NeckKind, NetConfig, SeResNetConfig, Stem};
use mtaffect::nn::{Buffers, Ctx};
use mtaffect::{ops, DType, Params, Rng, Tape, Tensor};

fn tiny(depth: usize, stem: Stem, neck: NeckKind) -> NetConfig {
    NetConfig {
        backbone: SeResNetConfig {
            depth,
            width_mult: 0.125,
            se_reduction: 4,
            se_divisor: 1,
            stem,
        }
        .into(),
        neck,
        dropout: 0.1,
        ..NetConfig::default()
    }
}

#[test]
fn output_shapes_for_every_depth_and_stem() {
    for (depth, stem, size) in [
        (10, Stem::Small, 16),
        (18, Stem::Imagenet, 32),
        (50, Stem::Small, 16),
    ] {
        let mut rng = Rng::new(depth as u64);
        let (mut p, mut b) = (Params::new(), Buffers::new());
        let net = MtlNet::new(
            &tiny(depth, stem, NeckKind::Mtanet),
            &mut p,
            &mut b,
            &mut rng,
        )
        .unwrap();
        let tape = Tape::no_grad();
        let x = tape.constant(Tensor::randn([2, size, size, 3], 1.0, DType::F32, &mut rng));
        let mut cx = Ctx {
            tape: &tape,
            params: &p,
            buffers: &mut b,
            training: false,
            rng: &mut rng,
            frozen: false,
        };
        let out = net.forward(&mut cx, &x).unwrap();
        assert_eq!(out.va.dims(), &[2, 2]);
        assert_eq!(out.au.dims(), &[2, 12]);
        assert_eq!(out.expr.dims(), &[2, 8]);
        assert!(out.va.value().to_f64_vec().iter().all(|v| v.abs() <= 1.0));
        assert!(tape.is_empty());
    }
}

#[test]
fn every_parameter_gets_a_gradient_and_bn_buffers_update_in_training() {
    let mut rng = Rng::new(7);
    let (mut p, mut b) = (Params::new(), Buffers::new());
    let net = MtlNet::new(
        &tiny(10, Stem::Small, NeckKind::Mtanet),
        &mut p,
        &mut b,
        &mut rng,
    )
    .unwrap();
    let before = b.clone();
    let tape = Tape::new();
    let x = tape.constant(Tensor::randn([3, 12, 12, 3], 1.0, DType::F32, &mut rng));
    let mut cx = Ctx {
        tape: &tape,
        params: &p,
        buffers: &mut b,
        training: true,
        rng: &mut rng,
        frozen: false,
    };
    let out = net.forward(&mut cx, &x).unwrap();
    let total = ops::add(
        &tape,
        &ops::add(
            &tape,
            &ops::sum(&tape, &out.va, &[], false).unwrap(),
            &ops::sum(&tape, &out.au, &[], false).unwrap(),
        )
        .unwrap(),
        &ops::sum(&tape, &out.expr, &[], false).unwrap(),
    )
    .unwrap();
    let grads = tape.backward(&total).unwrap();
    for id in p.ids() {
        let g = grads
            .get(id)
            .unwrap_or_else(|| panic!("no gradient for {}", p.name(id)));
        assert_eq!(g.shape(), p.get(id).shape());
    }
    let moved = b
        .ids()
        .filter(|&id| b.get(id).to_f64_vec() != before.get(id).to_f64_vec())
        .count();
    assert_eq!(
        moved,
        b.len(),
        "every running statistic must update in training mode"
    );
}

#[test]
fn unsupported_depth_names_the_allowed_values() {
    let (mut p, mut b) = (Params::new(), Buffers::new());
    let e = MtlNet::new(
        &tiny(20, Stem::Small, NeckKind::Gap),
        &mut p,
        &mut b,
        &mut Rng::new(0),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("model.backbone.depth") && e.contains("10, 18, 34, 50"),
        "{e}"
    );
}
