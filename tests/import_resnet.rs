//! PyTorch weights in for the ResNets: a reduced torchvision-layout
//! ResNet-18 and a reduced timm SE-ResNet-50 with random weights and
//! batch-norm statistics (scripts/torch_resnet.py wrote the fixtures) are
//! imported onto the `se_resnet` backbone and reproduce PyTorch's feature
//! maps on CPU in f32; the stem's renamed tensors are named in errors by
//! their PyTorch names. The plain ResNet (no SE gates) learns on the
//! synthetic faces like the SE-ResNet does.

#[path = "common/import_fixture.rs"]
mod import_fixture;
#[path = "common/synth_loader.rs"]
mod synth_loader;
use import_fixture::{edited, fixture, reproduce};
use mtaffect::import;
use mtaffect::model::{BackboneConfig, NeckKind};
use synth_loader::learns_the_synthetic_faces;

/// `--arch name --width-mult 0.0625`: stage widths 8, 8, 16, 32 as the
/// fixtures were built.
fn reduced(name: &str) -> BackboneConfig {
    let mut b = import::arch(name).unwrap();
    let BackboneConfig::SeResnet(c) = &mut b else {
        panic!("{name} maps onto se_resnet")
    };
    c.width_mult = 0.0625;
    b
}

fn reproduces(arch: &str, file: &str) {
    let path = fixture(&format!("tests/fixtures/{file}"));
    let mut imported = import::import(&path, &reduced(arch)).unwrap();
    let r = &imported.report;
    assert_eq!(
        r.mapped.len(),
        imported.params.len() + imported.buffers.len()
    );
    // Left over: the batch-norm counters, the classifier, input and output.
    let counters = r
        .unused
        .iter()
        .filter(|n| n.ends_with("num_batches_tracked"));
    assert_eq!(counters.count(), imported.buffers.len() / 2);
    assert_eq!(
        r.unused.len(),
        imported.buffers.len() / 2 + 4,
        "{:?}",
        r.unused
    );
    assert!(r
        .mapped
        .contains(&("conv1.weight".into(), "stem.conv.weight".into())));
    let (worst, _) = reproduce(&mut imported, &path, "output.features", 1e-4);
    println!("{arch} import parity: worst |err| / (1 + |ref|) {worst:.2e}");
}

#[test]
fn the_imported_torchvision_resnet18_reproduces_pytorchs_features() {
    reproduces("resnet18", "resnet18_w00625_48px.safetensors");
}

#[test]
fn the_imported_timm_seresnet50_reproduces_pytorchs_features() {
    reproduces("seresnet50", "seresnet50_w00625_48px.safetensors");
}

#[test]
fn a_state_dict_of_another_layout_is_refused_by_tensor() {
    let e = import::import(
        &fixture("tests/fixtures/resnet18_w00625_48px.safetensors"),
        &reduced("seresnet50"),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("'layer1.0.conv1.weight' is [8, 8, 3, 3]") && e.contains("[8, 8, 1, 1]"),
        "{e}"
    );
}

/// The error of importing `file` without its tensor `drop` as `arch`.
fn without(file: &str, drop: &str, arch: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(
        &fixture(&format!("tests/fixtures/{file}")),
        dir.path(),
        drop,
        None,
    );
    import::import(&path, &reduced(arch))
        .err()
        .unwrap()
        .to_string()
}

#[test]
fn a_missing_tensor_is_named_by_its_pytorch_name_and_ours() {
    let e = without(
        "resnet18_w00625_48px.safetensors",
        "bn1.running_var",
        "resnet18",
    );
    assert!(
        e.contains("'bn1.running_var' is missing") && e.contains("stem.bn.running_var"),
        "{e}"
    );
    // An SE gate, 1x1 convolution in the file, linear weight here.
    let e = without(
        "seresnet50_w00625_48px.safetensors",
        "layer4.2.se.fc2.weight",
        "seresnet50",
    );
    assert!(
        e.contains("'layer4.2.se.fc2.weight' is missing") && e.contains("[128, 8, 1, 1]"),
        "{e}"
    );
}

#[test]
fn a_plain_resnet_learns_the_synthetic_faces_on_cpu() {
    let t = learns_the_synthetic_faces(reduced("resnet18"), NeckKind::Mtanet, 32);
    assert_eq!(t.config.model.backbone.to_string(), "ResNet-18 x0.0625");
    assert!(t.params.find("layer1.0.se.fc1.weight").is_none());
}
