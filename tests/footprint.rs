//! The memory checks of a run's settings rest on parameter counts read from
//! the configs (`model::Footprint`). They must be lower bounds of what the
//! built models hold, so a refusal is never wrong, and close enough (within
//! a factor of two) to catch a setting that cannot fit: checked here against
//! the real models of every backbone depth and stem, both generator
//! up-samplers and every temporal encoder.

use mtaffect::model::temporal::{EncoderKind, TemporalNet, TemporalNetConfig};
use mtaffect::model::{
    BackboneConfig, Generator, GeneratorConfig, SeResNet, SeResNetConfig, Stem, Upsample,
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
                c.footprint(48, 16).params,
                p.numel(),
                &format!("{encoder:?} task_layers {task_layers}"),
            );
        }
    }
}
