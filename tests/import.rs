//! PyTorch weights in: a reduced face-recognition IResNet with random
//! weights and batch-norm statistics (scripts/torch_iresnet.py wrote the
//! fixture: its state dict, an input batch and PyTorch's embeddings) is
//! imported, reproduces PyTorch's outputs on CPU in f32, and becomes a
//! checkpoint that `--init-from` loads into the multi-task network; missing
//! tensors, shape mismatches and unknown architectures are errors naming
//! what is wrong.

#[path = "common/import_fixture.rs"]
mod import_fixture;
use import_fixture::{
    assert_checkpoint_starts_the_multi_task_network, edited, reproduce, unused_besides_counters,
};
use mtaffect::import;
use mtaffect::model::{BackboneConfig, IResNetConfig};
use std::path::PathBuf;

fn fixture() -> PathBuf {
    import_fixture::fixture("tests/fixtures/iresnet18_w0125_32px.safetensors")
}

/// The architecture scripts/torch_iresnet.py builds by default.
fn reduced() -> BackboneConfig {
    IResNetConfig {
        depth: 18,
        width_mult: 0.125,
        embedding: 32,
        dropout: 0.0,
        image_size: 32,
    }
    .into()
}

#[test]
fn the_imported_iresnet_reproduces_pytorchs_embeddings() {
    let mut imported = import::import(&fixture(), &reduced()).unwrap();
    // Left over besides the batch-norm counters: the fixture's input and output.
    assert_eq!(
        unused_besides_counters(&imported),
        ["input.images_nhwc", "output.embedding"]
    );
    // f32 against f32 with other summation orders through 19 layers
    // (docs/architecture.md records the measured worst error).
    let (worst, _) = reproduce(&mut imported, &fixture(), "output.embedding", 1e-4);
    println!("iresnet import parity: worst |err| / (1 + |ref|) {worst:.2e}");
}

#[test]
fn an_imported_checkpoint_starts_the_multi_task_network() {
    assert_checkpoint_starts_the_multi_task_network(&fixture(), reduced());
}

#[test]
fn a_missing_tensor_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(&fixture(), dir.path(), "layer3.1.prelu.weight", None);
    let e = import::import(&path, &reduced()).err().unwrap().to_string();
    assert!(
        e.contains("layer3.1.prelu.weight") && e.contains("missing") && e.contains("[32]"),
        "{e}"
    );
}

#[test]
fn a_shape_mismatch_is_an_error_naming_the_tensor_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(
        &fixture(),
        dir.path(),
        "layer2.0.conv1.weight",
        Some(("layer2.0.conv1.weight", vec![16, 8, 1, 3], vec![0.0; 384])),
    );
    let e = import::import(&path, &reduced()).err().unwrap().to_string();
    assert!(
        e.contains("layer2.0.conv1.weight")
            && e.contains("[16, 8, 1, 3]")
            && e.contains("[16, 8, 3, 3]"),
        "{e}"
    );
    // A whole architecture of another width: the first tensor names it.
    let wide: BackboneConfig = IResNetConfig {
        width_mult: 0.25,
        ..IResNetConfig::default()
    }
    .into();
    let e = import::import(&fixture(), &wide).err().unwrap().to_string();
    assert!(
        e.contains("conv1.weight") && e.contains("[8, 3, 3, 3]"),
        "{e}"
    );
}

#[test]
fn unknown_architectures_and_files_are_errors() {
    let e = import::arch("alexnet").unwrap_err().to_string();
    assert!(e.contains("alexnet") && e.contains("iresnet50"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a state dict").unwrap();
    let e = import::import(&junk, &reduced()).err().unwrap().to_string();
    assert!(
        e.contains("junk.safetensors") && e.contains("safetensors"),
        "{e}"
    );
}
