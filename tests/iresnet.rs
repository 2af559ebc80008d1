//! The IResNet backbone in the multi-task network: a small one learns on
//! the synthetic face set on CPU (the loss falls, the fixed embedding BN
//! weight stays at 1), and its config keys are checked against the data.

#[path = "common/synth_loader.rs"]
mod synth_loader;
use mtaffect::model::{IResNetConfig, NeckKind};
use mtaffect::train::{ConfigFile, TrainConfig};
use synth_loader::learns_the_synthetic_faces;

#[test]
fn a_small_iresnet_learns_the_synthetic_faces_on_cpu() {
    let backbone = IResNetConfig {
        depth: 18,
        width_mult: 0.125,
        embedding: 32,
        dropout: 0.0,
        image_size: 32,
    };
    let t = learns_the_synthetic_faces(backbone.into(), NeckKind::Gap, 32);
    assert_eq!(t.config.model.backbone.to_string(), "IResNet-18 x0.125");
    // The embedding BN's weight is fixed at 1, as in the original; its bias trains.
    let w = t.params.find("features.weight").unwrap();
    assert!(t.params.get(w).to_f64_vec().iter().all(|&v| v == 1.0));
    let b = t.params.find("features.bias").unwrap();
    assert!(t.params.get(b).to_f64_vec().iter().any(|&v| v != 0.0));
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
