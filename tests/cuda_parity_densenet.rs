//! CUDA parity of a whole tiny DenseNet (two dense blocks with a transition,
//! dropout after each dense layer, batch statistics) in training mode: its
//! feature map and every parameter gradient on poisoned buffers against
//! the f64 CPU reference (see tests/cuda_parity.rs for the method). The
//! channel concatenation and its gradient's narrowing are copies
//! (kernels/copy.cu) the other suites already run; this checks the backbone
//! wires them. Without a GPU the test is reported as ignored, never as
//! passed.

mod common;

use common::{check_backbone, gpu, randn, Report, Tol};
use mtaffect::model::{DenseNet, DenseNetConfig};
use mtaffect::nn::{Buffers, Scope};
use mtaffect::{Params, Rng};

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_tiny_densenet_forward_and_backward_match_the_cpu() {
    let dev = gpu();
    // Thirteen batch norms in sequence over small batches, each of whose
    // backward divides by the batch deviation: looser than the SE-ResNet
    // block's two (5e-4).
    let tol = Tol {
        atol: 1e-3,
        rtol: 1e-3,
    };
    let mut rep = Report::default();
    let cfg = DenseNetConfig {
        block_config: Some(vec![3, 2]),
        growth_rate: 5,
        init_features: 7,
        bn_size: 3,
        dropout: 0.2,
        ..DenseNetConfig::default()
    };
    let mut rng = Rng::new(41);
    let (mut p, mut b) = (Params::new(), Buffers::new());
    let net = DenseNet::new(&mut p, &mut b, &Scope::root(), &cfg, &mut rng).unwrap();
    // Odd, non-square images: a 5 x 7 map after the stem, 2 x 3 after the
    // transition (both floors).
    let x = randn(&[3, 18, 27, 3], &mut rng);
    check_backbone(&dev, &mut rep, "DenseNet", &net, &p, &b, &x, tol);
    rep.print("DenseNet forward and backward");
}
