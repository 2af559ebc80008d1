//! The memory checks of a run's settings rest on parameter counts read from
//! the configs (`model::Footprint`). They must be lower bounds of what the
//! built models hold, so a refusal is never wrong, and close enough (within
//! a factor of two) to catch a setting that cannot fit: checked here against
//! the real models of every backbone depth and stem, every ViT preset, every DenseNet
//! depth, both generator up-samplers and every temporal encoder.

use mtaffect::model::temporal::{EncoderKind, TemporalNet, TemporalNetConfig};
use mtaffect::model::{
    BackboneConfig, DenseNet, DenseNetConfig, Generator, GeneratorConfig, Pooling, SeResNet,
    SeResNetConfig, Stem, Upsample, Vit, VitConfig, VitPreset,
};
use mtaffect::nn::{Buffers, Scope};
use mtaffect::{Params, Rng};

fn within(estimate: u128, real: usize, what: &str) {
    let real = real as u128;
    assert!(
        estimate <= real && real <= 2 * estimate,
        "{what}: estimated {estimate} parameters, built {real}"
    );
}

#[test]
fn backbone_parameter_counts_are_close_lower_bounds() {
    for depth in [10, 18, 34, 50] {
        for stem in [Stem::Small, Stem::Imagenet] {
            let c = SeResNetConfig {
                depth,
                width_mult: 0.5,
                stem,
                ..SeResNetConfig::default()
            };
            let (mut p, mut b) = (Params::new(), Buffers::new());
            SeResNet::new(&mut p, &mut b, &Scope::root(), &c, &mut Rng::new(1)).unwrap();
            let fp = BackboneConfig::from(c).footprint(64).unwrap();
            within(fp.params, p.numel(), &format!("depth {depth} {stem:?}"));
            // Activations grow with the image area.
            let big = BackboneConfig::from(SeResNetConfig {
                depth,
                width_mult: 0.5,
                stem,
                ..SeResNetConfig::default()
            })
            .footprint(128)
            .unwrap();
            assert!(big.activations > 3 * fp.activations, "depth {depth}");
        }
    }
}

#[test]
fn vit_parameter_counts_are_close_lower_bounds() {
    for preset in [VitPreset::Tiny, VitPreset::Small, VitPreset::Base] {
        for (patch, pooling) in [(16, Pooling::Cls), (8, Pooling::Mean)] {
            let c = VitConfig {
                preset,
                patch,
                pooling,
                mlp_ratio: 2.0,
                ..VitConfig::default()
            };
            let mut p = Params::new();
            Vit::new(&mut p, &Scope::root(), &c, &mut Rng::new(1)).unwrap();
            let what = format!("{c}");
            let fp = BackboneConfig::from(c.clone()).footprint(64).unwrap();
            within(fp.params, p.numel(), &what);
            // Tokens grow with the image area, and so does every saved value
            // (attention keeps a log-sum-exp per token, not tokens² weights).
            let big = BackboneConfig::from(c).footprint(128).unwrap();
            assert!(big.activations > 3 * fp.activations, "{what}");
            assert!(big.activations < 5 * fp.activations, "{what}");
        }
    }
    // A side that is not a multiple of the patch has no footprint.
    let e = BackboneConfig::from(VitConfig::default())
        .footprint(100)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.backbone.patch = 16") && e.contains("100"),
        "{e}"
    );
}

#[test]
fn densenet_parameter_counts_are_close_lower_bounds() {
    for depth in [121, 169, 201] {
        let c = DenseNetConfig {
            depth,
            ..DenseNetConfig::default()
        };
        let (mut p, mut b) = (Params::new(), Buffers::new());
        DenseNet::new(&mut p, &mut b, &Scope::root(), &c, &mut Rng::new(1)).unwrap();
        let fp = BackboneConfig::from(c.clone()).footprint(64).unwrap();
        within(fp.params, p.numel(), &c.to_string());
        // Maps grow with the image area.
        let big = BackboneConfig::from(c.clone()).footprint(128).unwrap();
        assert!(big.activations > 3 * fp.activations, "{c}");
    }
    // DenseNet-121 without its classifier: 6,953,856 parameters in
    // torchvision; the lower bound leaves out only the batch norms'.
    let fp = BackboneConfig::from(DenseNetConfig::default())
        .footprint(112)
        .unwrap();
    assert!(
        fp.params > 6_850_000 && fp.params < 6_953_856,
        "{}",
        fp.params
    );
    // Each layer of a block keeps the concatenation so far: one block of
    // twice the layers keeps close to four times the maps.
    let block = |layers: usize| {
        BackboneConfig::from(DenseNetConfig {
            block_config: Some(vec![layers]),
            ..DenseNetConfig::default()
        })
        .footprint(64)
        .unwrap()
        .activations
    };
    let (short, long) = (block(32), block(64));
    assert!(long > 3 * short, "{short} -> {long}");
}

#[test]
fn generator_and_temporal_parameter_counts_are_close_lower_bounds() {
    for upsample in [Upsample::ConvTranspose, Upsample::NearestConv] {
        let c = GeneratorConfig {
            channels: 64,
            upsample,
            ..GeneratorConfig::default()
        };
        let (mut p, mut b) = (Params::new(), Buffers::new());
        Generator::new(&c, &mut p, &mut b, &mut Rng::new(1)).unwrap();
        within(
            c.footprint().unwrap().params,
            p.numel(),
            &format!("{upsample:?}"),
        );
    }
    for encoder in [
        EncoderKind::Gru,
        EncoderKind::Lstm,
        EncoderKind::Transformer,
    ] {
        for task_layers in [0, 1] {
            let c = TemporalNetConfig {
                encoder,
                task_layers,
                ..TemporalNetConfig::default()
            };
            let mut p = Params::new();
            TemporalNet::new(&c, 48, &mut p, &mut Rng::new(1)).unwrap();
            within(
                c.footprint(48).params,
                p.numel(),
                &format!("{encoder:?} task_layers {task_layers}"),
            );
        }
    }
}
