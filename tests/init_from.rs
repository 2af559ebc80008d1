//! Starting a run from a checkpoint (`model.init_from`): a full load
//! reproduces the saved model's outputs before any step; a partial load
//! reports what it loaded, what is new, what it ignored and which names
//! matched with another shape; strict mode names what is missing.

#[path = "common/frame_fixtures.rs"]
mod frame_fixtures;
use frame_fixtures::{batches, config};
use mtaffect::model::{NeckKind, SeResNetConfig, Stem};
use mtaffect::train::{TrainConfig, Trainer};
use mtaffect::Tensor;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mtaffect-init-from-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A checkpoint of `cfg`'s model after two steps (so weights, BN running
/// statistics and optimizer state all differ from a fresh model's).
fn trained(cfg: &TrainConfig, file: &str) -> (Trainer, PathBuf) {
    let mut t = Trainer::new(cfg).unwrap();
    for b in &batches(2, 6, 24) {
        t.step(b).unwrap();
    }
    let path = scratch(file);
    t.save_checkpoint(&path).unwrap();
    (t, path)
}

fn value(t: &Trainer, name: &str) -> Vec<f64> {
    t.params.get(t.params.find(name).unwrap()).to_f64_vec()
}

#[test]
fn fine_tuning_from_a_saved_checkpoint_reproduces_its_outputs_before_the_first_step() {
    let (mut saved, path) = trained(&config("cpu"), "full.safetensors");
    let mut cfg = config("cpu");
    cfg.train.seed = 99;
    let mut fresh = Trainer::new(&cfg).unwrap();
    let report = fresh.init_from(&path, true).unwrap();
    assert!(
        report.initialised.is_empty() && report.mismatched.is_empty(),
        "{report}"
    );
    assert_eq!(
        report.loaded.len(),
        fresh.params.len() + fresh.buffers.len()
    );
    // The loss weighting's state is the old run's, not the model's.
    assert!(
        report
            .ignored
            .iter()
            .all(|n| n.starts_with("buffers.loss.")),
        "{report}"
    );
    assert_eq!(fresh.progress.step, 0);
    let images = &batches(1, 5, 24)[0].images;
    assert_eq!(fresh.infer(images).unwrap(), saved.infer(images).unwrap());
}

#[test]
fn a_partial_load_reports_new_ignored_and_mismatched_tensors() {
    // Saved with a pooled neck (heads read C features); the new model has
    // the MTANet neck (new 1x1 convs; heads read 2C features).
    let (saved, path) = trained(&config("cpu"), "gap.safetensors");
    let mut cfg = config("cpu");
    cfg.model.neck = NeckKind::Mtanet;
    let mut t = Trainer::new(&cfg).unwrap();
    let head_init = value(&t, "head.va.weight");
    let r = t.init_from(&path, false).unwrap();
    assert_eq!(
        r.initialised,
        [
            "neck.avg_branch.weight",
            "neck.avg_branch.bias",
            "neck.max_branch.weight",
            "neck.max_branch.bias"
        ]
    );
    let names: Vec<&str> = r.mismatched.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["head.va.weight", "head.au.weight", "head.expr.weight"]
    );
    let c = r.mismatched[0].file[1];
    assert_eq!(
        (r.mismatched[0].file.clone(), r.mismatched[0].model.clone()),
        (vec![2, c], vec![2, 2 * c])
    );
    assert!(r.loaded.contains(&"layer4.0.conv1.weight".to_string()));
    assert!(r
        .loaded
        .contains(&"buffers.stem.bn.running_mean".to_string()));
    assert!(r.loaded.contains(&"head.va.bias".to_string()));
    assert_eq!(
        value(&t, "layer4.0.conv1.weight"),
        value(&saved, "layer4.0.conv1.weight")
    );
    assert_eq!(
        value(&t, "head.va.weight"),
        head_init,
        "a mismatch keeps its initialisation"
    );
    let line = r.to_string();
    assert!(
        line.contains("4 newly initialised (neck.avg_branch.weight")
            && line.contains(&format!(
                "head.va.weight: file [2, {c}], model [2, {}]",
                2 * c
            )),
        "{line}"
    );

    // The other way round the file's neck convolutions go unused.
    let (_, path) = trained(&cfg, "mtanet.safetensors");
    let mut t = Trainer::new(&config("cpu")).unwrap();
    let r = t.init_from(&path, false).unwrap();
    assert!(r.initialised.is_empty());
    for n in ["neck.avg_branch.weight", "neck.max_branch.bias"] {
        assert!(r.ignored.contains(&n.to_string()), "{r}");
    }
}

#[test]
fn strict_mode_names_the_missing_tensor_or_the_shapes_and_changes_nothing() {
    let (_, path) = trained(&config("cpu"), "strict.safetensors");
    let mut cfg = config("cpu");
    cfg.model.neck = NeckKind::Mtanet;
    let mut t = Trainer::new(&cfg).unwrap();
    let before: Vec<Tensor> = t.params.ids().map(|id| t.params.get(id).clone()).collect();
    let e = t.init_from(&path, true).unwrap_err().to_string();
    assert!(
        e.contains("init_strict") && e.contains("'neck.avg_branch.weight' is not in the file"),
        "{e}"
    );
    for (id, b) in t.params.ids().zip(&before) {
        assert_eq!(
            t.params.get(id).to_f64_vec(),
            b.to_f64_vec(),
            "{}",
            t.params.name(id)
        );
    }

    // Same names, other widths: the first mismatch is named with both shapes.
    let mut cfg = config("cpu");
    cfg.model.backbone = SeResNetConfig {
        depth: 10,
        width_mult: 0.5,
        se_reduction: 4,
        se_divisor: 1,
        stem: Stem::Small,
    }
    .into();
    let mut t = Trainer::new(&cfg).unwrap();
    let e = t.init_from(&path, true).unwrap_err().to_string();
    assert!(
        e.contains("'stem.conv.weight' has shape [16, 3, 3, 3] in the file but [32, 3, 3, 3]"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_a_checkpoint_is_named() {
    let path = scratch("not-a-checkpoint.safetensors");
    std::fs::write(&path, b"hello").unwrap();
    let mut t = Trainer::new(&config("cpu")).unwrap();
    let e = t
        .init_from(Path::new(&path), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not-a-checkpoint.safetensors"), "{e}");
}
