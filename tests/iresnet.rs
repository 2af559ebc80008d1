//! The IResNet backbone in the multi-task network: a small one learns on
//! the synthetic face set on CPU (the loss falls, the fixed embedding BN
//! weight stays at 1), and its config keys are checked against the data.

#[path = "common/synth_loader.rs"]
mod synth_loader;
use mtaffect::data::synth::SynthConfig;
use mtaffect::model::{IResNetConfig, NeckKind, NetConfig};
use mtaffect::optim::{AdamConfig, LrSchedule};
use mtaffect::train::{ConfigFile, OptimConfig, TrainConfig, Trainer};
use synth_loader::synthetic_train_loader;

const SIZE: usize = 32;

fn config() -> TrainConfig {
    let mut c = TrainConfig::default();
    c.data.image_size = SIZE;
    c.data.batch_size = 12;
    c.model = NetConfig {
        backbone: IResNetConfig {
            depth: 18,
            width_mult: 0.125,
            embedding: 32,
            dropout: 0.0,
            image_size: SIZE,
        }
        .into(),
        neck: NeckKind::Gap,
        dropout: 0.0,
        ..NetConfig::default()
    };
    c.optim = OptimConfig::Adam(AdamConfig::default());
    c.schedule = LrSchedule::constant(3e-3);
    c
}

#[test]
fn a_small_iresnet_learns_the_synthetic_faces_on_cpu() {
    let dir = std::env::temp_dir().join(format!("mtaffect-iresnet-{}", std::process::id()));
    let synth = SynthConfig {
        videos: 4,
        frames_per_video: 12,
        image_size: SIZE,
        seed: 5,
        val_fraction: 0.0,
        ..Default::default()
    };
    let cfg = config();
    let loader = synthetic_train_loader(&dir, &synth, cfg.data.batch_size, 3);
    let mut t = Trainer::new(&cfg).unwrap();
    assert_eq!(t.config.model.backbone.to_string(), "IResNet-18 x0.125");
    let mut losses = Vec::new();
    for epoch in 0..10 {
        for b in loader.epoch(epoch, 0) {
            losses.push(t.step(&b.unwrap()).unwrap().loss);
        }
    }
    let k = 4;
    let first: f64 = losses[..k].iter().sum::<f64>() / k as f64;
    let last: f64 = losses[losses.len() - k..].iter().sum::<f64>() / k as f64;
    assert!(
        losses.len() >= 30 && last < 0.8 * first,
        "loss did not fall enough over {} steps: {first:.3} -> {last:.3}",
        losses.len()
    );
    // The embedding BN's weight is fixed at 1, as in the original; its bias trains.
    let w = t.params.find("features.weight").unwrap();
    assert!(t.params.get(w).to_f64_vec().iter().all(|&v| v == 1.0));
    let b = t.params.find("features.bias").unwrap();
    assert!(t.params.get(b).to_f64_vec().iter().any(|&v| v != 0.0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_keys_are_checked_against_the_data() {
    let text = "[data]\nimage_size = 64\n\n[model.backbone]\nkind = \"iresnet\"\ndepth = 18\nimage_size = 112\n";
    let e = TrainConfig::from_toml(text, "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.backbone.image_size = 112") && e.contains("data.image_size = 64"),
        "{e}"
    );
    let text = "[data]\nimage_size = 112\n\n[model.backbone]\nkind = \"iresnet\"\ndepth = 101\n";
    let e = TrainConfig::from_toml(text, "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.backbone.depth = 101"), "{e}");
    let text = "[data]\nimage_size = 112\n\n[model.backbone]\nkind = \"iresnet\"\n";
    let c = TrainConfig::from_toml(text, "x.toml").unwrap();
    assert_eq!(c.model.backbone.to_string(), "IResNet-50");
}
