//! CUDA parity of a whole tiny DenseNet (two dense blocks with a transition,
//! dropout after each dense layer, batch statistics) in training mode: its
//! feature map and every parameter gradient on poisoned buffers against
//! the f64 CPU reference (see tests/cuda_parity.rs for the method). The
//! channel concatenation and its gradient's narrowing are copies
//! (kernels/copy.cu) the other suites already run; this checks the backbone
//! wires them. Without a GPU the test is reported as ignored, never as
//! passed.

mod common;

use common::{gpu, randn, Report, Tol};
use mtaffect::model::{Backbone, DenseNet, DenseNetConfig};
use mtaffect::nn::{self, Buffers, Scope};
use mtaffect::{DType, Device, Params, Rng, Tape, Tensor};

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_tiny_densenet_forward_and_backward_match_the_cpu() {
    let dev = gpu();
    // Nine batch norms in sequence over small batches, each of whose
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
    let seed = |dims: &[usize]| randn(dims, &mut Rng::new(0x5eed));
    let run = |device: Device| -> (Tensor, Vec<Tensor>) {
        let c = common::Ctx { device };
        let on = |reg: &Params| {
            let mut out = Params::new();
            for id in reg.ids() {
                out.add(reg.name(id), c.put(reg.get(id))).unwrap();
            }
            out
        };
        let (params, mut buffers) = (on(&p), on(&b));
        let tape = Tape::new();
        let images = tape.constant(c.put(&x));
        let mut drop_rng = Rng::new(7);
        let mut cx = nn::Ctx {
            tape: &tape,
            params: &params,
            buffers: &mut buffers,
            training: true,
            rng: &mut drop_rng,
            frozen: false,
        };
        let y = net
            .forward(&mut cx, &images)
            .unwrap_or_else(|e| panic!("DenseNet on {}: {e}", c.device));
        let grads = tape.backward_with_seed(&y, c.put(&seed(y.dims()))).unwrap();
        let g = p
            .ids()
            .map(|id| {
                grads
                    .get(id)
                    .expect("every parameter gets a gradient")
                    .clone()
            })
            .collect();
        (y.into_value(), g)
    };
    let (y_ref, g_ref) = run(Device::Cpu);
    let (y_gpu, g_gpu) = run(Device::Cuda(dev.clone()));
    assert_eq!(y_ref.dtype(), DType::F64);
    assert_eq!(y_ref.dims(), [3, 2, 3, 21]);
    rep.compare("DenseNet forward", &y_gpu, &y_ref, tol);
    for ((id, g), r) in p.ids().zip(&g_gpu).zip(&g_ref) {
        rep.compare(&format!("DenseNet grad of {}", p.name(id)), g, r, tol);
    }
    rep.print("DenseNet forward and backward");
}
