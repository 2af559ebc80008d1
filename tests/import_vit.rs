//! PyTorch weights in for the ViT: a reduced timm VisionTransformer with
//! MAE's fixed sin-cos position table and random weights
//! (scripts/torch_vit.py wrote the fixture) is imported onto the `vit`
//! backbone and reproduces timm's class-token features on CPU in f32; a
//! learned position embedding is refused, naming the tensor.

#[path = "common/import_fixture.rs"]
mod import_fixture;
use import_fixture::{edited, fixture, fixture_f32, reproduce};
use mtaffect::import;
use mtaffect::model::{BackboneConfig, VitConfig};

const FIXTURE: &str = "tests/fixtures/vit_d32_p8_32px.safetensors";

/// The architecture scripts/torch_vit.py builds by default.
fn reduced() -> BackboneConfig {
    let mut b = import::arch("vit_tiny_patch16").unwrap();
    let BackboneConfig::Vit(c) = &mut b else {
        panic!("a ViT")
    };
    *c = VitConfig {
        depth: Some(2),
        width: Some(32),
        heads: Some(2),
        patch: 8,
        ..c.clone()
    };
    b
}

#[test]
fn the_imported_vit_reproduces_timms_features() {
    let path = fixture(FIXTURE);
    let mut imported = import::import(&path, &reduced()).unwrap();
    let r = &imported.report;
    assert_eq!(r.mapped.len(), imported.params.len());
    assert_eq!(r.unused, ["input.images_nhwc", "output.features"]);
    assert!(r.to_string().contains("checked pos_embed"), "{r}");
    let (worst, _) = reproduce(&mut imported, &path, "output.features", 1e-4);
    println!("vit import parity: worst |err| / (1 + |ref|) {worst:.2e}");
}

#[test]
fn a_learned_position_embedding_is_refused() {
    // The fixture's table with one value moved, as a trained embedding would be.
    let path = fixture(FIXTURE);
    let (mut table, _) = fixture_f32(&path, "pos_embed");
    table[40] += 0.25;
    let dir = tempfile::tempdir().unwrap();
    let learned = edited(
        &path,
        dir.path(),
        "pos_embed",
        Some(("pos_embed", vec![1, 17, 32], table)),
    );
    let e = import::import(&learned, &reduced())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("pos_embed") && e.contains("learned position embedding") && e.contains("4x4"),
        "{e}"
    );
}

#[test]
fn another_patch_size_is_a_shape_error() {
    let mut b = reduced();
    if let BackboneConfig::Vit(c) = &mut b {
        c.patch = 16;
    }
    let e = import::import(&fixture(FIXTURE), &b)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("patch_embed.proj.weight") && e.contains("[32, 3, 16, 16]"),
        "{e}"
    );
}
