//! torchvision's DenseNet in: a reduced DenseNet with random weights and
//! batch-norm statistics (scripts/torch_densenet.py wrote the fixture from
//! torchvision's own definition: state dict, two 40x72 images and the
//! feature map after norm5 and ReLU, NHWC) is imported, reproduces
//! PyTorch's features on CPU in f32, and becomes a checkpoint that
//! `--init-from` loads into the multi-task network; missing tensors and
//! shape mismatches are errors naming the tensor. The full-size
//! DenseNet-121 is checked by hand with tests/import_full_size.rs.

#[path = "common/import_fixture.rs"]
mod import_fixture;
use import_fixture::{
    assert_checkpoint_starts_the_multi_task_network, edited, reproduce, unused_besides_counters,
};
use mtaffect::import;
use mtaffect::model::{BackboneConfig, DenseNetConfig};
use std::path::PathBuf;

fn fixture() -> PathBuf {
    import_fixture::fixture("tests/fixtures/densenet_b2222_k8_40x72.safetensors")
}

/// The architecture scripts/torch_densenet.py builds by default.
fn reduced() -> BackboneConfig {
    DenseNetConfig {
        block_config: Some(vec![2, 2, 2, 2]),
        growth_rate: 8,
        init_features: 16,
        bn_size: 2,
        ..DenseNetConfig::default()
    }
    .into()
}

#[test]
fn the_imported_densenet_reproduces_torchvisions_features() {
    let mut imported = import::import(&fixture(), &reduced()).unwrap();
    // Left over besides the batch-norm counters: the classifier and the
    // fixture's input and output.
    assert_eq!(
        unused_besides_counters(&imported),
        [
            "classifier.bias",
            "classifier.weight",
            "input.images_nhwc",
            "output.features"
        ]
    );
    // f32 against f32 with other summation orders through 21 layers and
    // three pools (docs/architecture.md records the measured worst error).
    let (rel, abs) = reproduce(&mut imported, &fixture(), "output.features", 1e-4);
    println!("densenet import parity: worst |err| / (1 + |ref|) {rel:.2e}, |err| {abs:.2e}");
}

#[test]
fn an_imported_checkpoint_starts_the_multi_task_network() {
    assert_checkpoint_starts_the_multi_task_network(&fixture(), reduced());
}

#[test]
fn a_missing_tensor_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let name = "features.denseblock3.denselayer2.norm1.running_var";
    let path = edited(&fixture(), dir.path(), name, None);
    let e = import::import(&path, &reduced()).err().unwrap().to_string();
    // Each block starts at 16 channels: its second layer reads 24.
    assert!(
        e.contains(name) && e.contains("missing") && e.contains("[24]"),
        "{e}"
    );
}

#[test]
fn a_shape_mismatch_is_an_error_naming_the_tensor_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let name = "features.transition2.conv.weight";
    let path = edited(
        &fixture(),
        dir.path(),
        name,
        Some((name, vec![16, 32, 3, 1], vec![0.0; 16 * 32 * 3])),
    );
    let e = import::import(&path, &reduced()).err().unwrap().to_string();
    assert!(
        e.contains(name) && e.contains("[16, 32, 3, 1]") && e.contains("[16, 32, 1, 1]"),
        "{e}"
    );
    // The full-size architecture against the reduced file: the first
    // tensor names the difference.
    let e = import::import(&fixture(), &import::arch("densenet121").unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("features.conv0.weight") && e.contains("[64, 3, 7, 7]"),
        "{e}"
    );
}
