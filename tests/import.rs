//! PyTorch weights in: a reduced face-recognition IResNet with random
//! weights and batch-norm statistics (scripts/torch_iresnet.py wrote the
//! fixture: its state dict, an input batch and PyTorch's embeddings) is
//! imported, reproduces PyTorch's outputs on CPU in f32, and becomes a
//! checkpoint that `--init-from` loads into the multi-task network; missing
//! tensors, shape mismatches and unknown architectures are errors naming
//! what is wrong.

#[path = "common/import_fixture.rs"]
mod import_fixture;
use import_fixture::{assert_reproduces, edited, fixture_f32, forward_stored_batch};
use mtaffect::import;
use mtaffect::model::{BackboneConfig, IResNetConfig, MtlNet, NetConfig};
use mtaffect::nn::Buffers;
use mtaffect::train::init_from::load_matching;
use mtaffect::{Device, Params, Rng};
use std::path::PathBuf;

fn fixture() -> PathBuf {
    import_fixture::fixture("iresnet18_w0125_32px.safetensors")
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
    let (params, buffers, report) = (&imported.params, &imported.buffers, &imported.report);
    // Every tensor of ours came from the file; what is left over is the
    // batch-norm counters and the fixture's input and output.
    assert_eq!(report.mapped.len(), params.len() + buffers.len());
    let counters = report
        .unused
        .iter()
        .filter(|n| n.ends_with(".num_batches_tracked"))
        .count();
    assert_eq!(counters, buffers.len() / 2);
    assert_eq!(report.unused.len(), counters + 2, "{:?}", report.unused);
    assert!(report.to_string().contains("none missing"));

    let got = forward_stored_batch(&mut imported, &fixture(), 32);
    assert_reproduces(
        "iresnet",
        &got,
        &fixture_f32(&fixture(), "output.embedding"),
    );
}

#[test]
fn an_imported_checkpoint_starts_the_multi_task_network() {
    let dir = tempfile::tempdir().unwrap();
    let imported = import::import(&fixture(), &reduced()).unwrap();
    let ckpt = dir.path().join("iresnet.safetensors");
    import::write_checkpoint(&ckpt, &imported).unwrap();
    let cfg = NetConfig {
        backbone: reduced(),
        ..NetConfig::default()
    };
    let (mut p, mut b) = (Params::new(), Buffers::new());
    MtlNet::new(&cfg, &mut p, &mut b, &mut Rng::new(1)).unwrap();
    let report = load_matching(&ckpt, false, &mut p, &mut b, &Device::Cpu).unwrap();
    // The whole backbone loads; only the neck and heads start from the seed.
    assert_eq!(
        report.loaded.len(),
        imported.params.len() + imported.buffers.len()
    );
    assert!(report.ignored.is_empty() && report.mismatched.is_empty());
    assert!(report
        .initialised
        .iter()
        .all(|n| n.starts_with("neck.") || n.starts_with("head.")));
    let fc = p.find("fc.weight").unwrap();
    let src = imported.params.find("fc.weight").unwrap();
    assert_eq!(
        p.get(fc).to_f64_vec(),
        imported.params.get(src).to_f64_vec()
    );
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
    let e = import::arch("densenet121").unwrap_err().to_string();
    assert!(e.contains("densenet121") && e.contains("iresnet50"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a state dict").unwrap();
    let e = import::import(&junk, &reduced()).err().unwrap().to_string();
    assert!(
        e.contains("junk.safetensors") && e.contains("safetensors"),
        "{e}"
    );
}
