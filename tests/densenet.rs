//! The DenseNet backbone in the multi-task network: a small one learns on
//! the synthetic face set on CPU through the MTANet neck, and its config
//! keys are checked (against the data too). tests/cli_import.rs runs the
//! shipped config from an imported checkpoint.

#[path = "common/synth_loader.rs"]
mod synth_loader;
use mtaffect::model::{DenseNetConfig, NeckKind};
use mtaffect::train::{ConfigFile, TrainConfig};
use synth_loader::learns_the_synthetic_faces;

#[test]
fn a_small_densenet_learns_the_synthetic_faces_on_cpu() {
    let backbone = DenseNetConfig {
        block_config: Some(vec![2, 2, 2, 2]),
        growth_rate: 8,
        init_features: 16,
        bn_size: 2,
        dropout: 0.1,
        ..DenseNetConfig::default()
    };
    let t = learns_the_synthetic_faces(backbone.into(), NeckKind::Mtanet, 32);
    assert_eq!(
        t.config.model.backbone.to_string(),
        "DenseNet-21 growth_rate 8 init_features 16 bn_size 2"
    );
}

#[test]
fn config_keys_are_checked_against_the_data() {
    let load = |data: &str, backbone: &str| {
        let text = format!("[data]\n{data}\n\n[model.backbone]\nkind = \"densenet\"\n{backbone}");
        TrainConfig::from_toml(&text, "x.toml")
    };
    let c = load("image_size = 112", "").unwrap();
    assert_eq!(c.model.backbone.to_string(), "DenseNet-121");
    let c = load("image_size = 112", "depth = 169\n").unwrap();
    assert_eq!(c.model.backbone.to_string(), "DenseNet-169");
    let e = load("image_size = 112", "depth = 161\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.backbone.depth = 161"), "{e}");
    let e = load("image_size = 112", "block_config = []\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.backbone.block_config = []"), "{e}");
    // Four blocks halve a 16 px image's 4 px stem map below one pool window.
    let e = load("image_size = 16", "").unwrap_err().to_string();
    assert!(
        e.contains("data.image_size = 16") && e.contains("at least 29"),
        "{e}"
    );
    // Two blocks have one transition: 16 px is enough.
    load("image_size = 16", "block_config = [2, 2]\n").unwrap();
}
