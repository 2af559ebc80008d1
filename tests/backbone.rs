//! Pluggable backbones: the multi-task network built on a backbone that
//! only this test knows (feature map and vector outputs), the registry's
//! errors, and an SE-ResNet checkpoint written before `[model.backbone]`
//! existed (flat backbone keys in its stored `[model]`) loading with the
//! outputs it had then.

use mtaffect::model::{
    Backbone, BackboneConfig, Features, MtlNet, NeckKind, NetConfig, SeResNetConfig, Stem,
};
use mtaffect::nn::{Buffers, Conv2d, ConvSpec, Ctx, Scope};
use mtaffect::train::{checkpoint, ConfigFile, TrainConfig, Trainer};
use mtaffect::{ops, tensor_file, DType, Params, Result, Rng, Tape, Tensor, Var};
use std::path::Path;

/// A 1x1 convolution of the image, handed over as the map itself or as its
/// global average (a vector, as a ViT's class token would be).
#[derive(Debug)]
struct PixelBackbone {
    conv: Conv2d,
    form: Features,
}

const WIDTH: usize = 6;

impl Backbone for PixelBackbone {
    fn forward(&self, cx: &mut Ctx, images: &Var) -> Result<Var> {
        let h = ops::relu(cx.tape, &self.conv.forward(cx, images)?)?;
        match self.form {
            Features::Map => Ok(h),
            Features::Vector => ops::global_avg_pool(cx.tape, &h),
        }
    }

    fn out_features(&self) -> usize {
        WIDTH
    }

    fn output(&self) -> Features {
        self.form
    }
}

fn build_pixel(
    form: Features,
) -> impl FnOnce(&mut Params, &mut Buffers, &Scope, &mut Rng) -> Result<Box<dyn Backbone>> {
    move |p, _, s, rng| {
        let conv = Conv2d::new(p, &s.pp("pixel"), ConvSpec::new(3, WIDTH, 1).bias(), rng)?;
        Ok(Box::new(PixelBackbone { conv, form }))
    }
}

#[test]
fn the_multi_task_net_trains_on_a_backbone_registered_only_here() {
    for (form, neck) in [
        (Features::Map, NeckKind::Mtanet),
        (Features::Vector, NeckKind::Mtanet),
        (Features::Vector, NeckKind::Gap),
    ] {
        let cfg = NetConfig {
            neck,
            ..NetConfig::default()
        };
        let mut rng = Rng::new(3);
        let (mut p, mut b) = (Params::new(), Buffers::new());
        let net = MtlNet::with_backbone(&cfg, &mut p, &mut b, &mut rng, build_pixel(form)).unwrap();
        assert_eq!(p.name(p.ids().next().unwrap()), "pixel.weight");
        let tape = Tape::new();
        let x = tape.constant(Tensor::randn([3, 8, 8, 3], 1.0, DType::F32, &mut rng));
        let mut cx = Ctx {
            tape: &tape,
            params: &p,
            buffers: &mut b,
            training: true,
            rng: &mut rng,
            frozen: false,
        };
        let out = net.forward(&mut cx, &x).unwrap();
        assert_eq!(out.va.dims(), &[3, 2]);
        assert_eq!(out.expr.dims(), &[3, 8]);
        let f = if neck == NeckKind::Mtanet {
            2 * WIDTH
        } else {
            WIDTH
        };
        assert_eq!(out.features.dims(), &[3, f]);
        let sums = [&out.va, &out.au, &out.expr].map(|v| ops::sum(&tape, v, &[], false).unwrap());
        let total = ops::add(
            &tape,
            &ops::add(&tape, &sums[0], &sums[1]).unwrap(),
            &sums[2],
        )
        .unwrap();
        let grads = tape.backward(&total).unwrap();
        for id in p.ids() {
            let g = grads
                .get(id)
                .unwrap_or_else(|| panic!("{form:?}/{neck:?}: no gradient for {}", p.name(id)));
            assert!(g.to_f64_vec().iter().any(|v| *v != 0.0), "{}", p.name(id));
        }
    }
}

#[test]
fn an_unknown_backbone_kind_names_the_key_and_the_known_kinds() {
    let e = TrainConfig::from_toml("[model.backbone]\nkind = \"swin\"\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x.toml")
            && e.contains("model.backbone")
            && e.contains("swin")
            && e.contains("se_resnet")
            && e.contains("vit"),
        "{e}"
    );
}

#[test]
fn flat_backbone_keys_beside_a_backbone_table_are_refused() {
    let text = "[model]\ndepth = 18\n\n[model.backbone]\nkind = \"se_resnet\"\n";
    let e = TrainConfig::from_toml(text, "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("[model.backbone]") && e.contains("depth"), "{e}");
}

const FLAT: &str = "tests/fixtures/seresnet10_flat_config.safetensors";
const FLAT_OUTPUTS: &str = "tests/fixtures/seresnet10_flat_config_outputs.safetensors";

/// The fixture pair was written by the code before `[model.backbone]`: a
/// fresh SE-ResNet-10 x0.0625 (32 px, seed 7) after three Adam steps, and
/// its eval-mode outputs on a seeded input.
#[test]
fn a_checkpoint_with_the_flat_backbone_keys_loads_with_its_outputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = checkpoint::read_config(root.join(FLAT)).unwrap();
    assert!(
        !text.contains("[model.backbone]"),
        "the fixture has the old form"
    );
    let mut cfg = TrainConfig::from_toml(&text, "fixture").unwrap();
    assert_eq!(
        cfg.model.backbone,
        BackboneConfig::SeResnet(SeResNetConfig {
            depth: 10,
            width_mult: 0.0625,
            se_reduction: 4,
            se_divisor: 1,
            stem: Stem::Imagenet,
        })
    );
    // Written back in the new form only, and read back the same.
    let new = cfg.to_toml();
    assert!(
        new.contains("[model.backbone]") && new.contains("kind = \"se_resnet\""),
        "{new}"
    );
    assert_eq!(TrainConfig::from_toml(&new, "rewritten").unwrap(), cfg);

    cfg.train.device = "cpu".into();
    let mut t = Trainer::new(&cfg).unwrap();
    t.load_checkpoint(&root.join(FLAT)).unwrap();
    assert_eq!(t.progress.step, 3);
    let (expected, _) = tensor_file::read(&root.join(FLAT_OUTPUTS), "outputs").unwrap();
    let (va, expr, au) = t.infer(&expected["input"]).unwrap();
    // Equal up to f32 rounding: the weights load exactly, but a GEMM may sum
    // in another order than the one that wrote the fixture (1e-5 is far below
    // what a wrong or missing tensor would change).
    for (name, got) in [("va", va), ("expr", expr), ("au", au)] {
        let want: Vec<f32> = expected[name].to_vec().unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{name}[{i}]: {g} vs {w}"
            );
        }
    }
}
