//! What the PyTorch import tests share: a fixture written by one of the
//! scripts/torch_*.py (a state dict, `input.images_nhwc` and the expected
//! outputs in one safetensors file), copies of it with a tensor removed or
//! replaced, the imported backbone run on the fixture's input against
//! PyTorch's outputs, the import report's checks, and the written
//! checkpoint loaded into the multi-task network.

// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use mtaffect::import::{self, Imported};
use mtaffect::model::{BackboneConfig, MtlNet, NetConfig};
use mtaffect::nn::{Buffers, Ctx};
use mtaffect::train::init_from::load_matching;
use mtaffect::{Device, Params, Rng, Tape, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::{Path, PathBuf};

/// `rel` under the crate root.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `fixture` without `drop`, and with `replace` (name, dims, f32 values)
/// in its place, written into `dir`.
pub fn edited(
    fixture: &Path,
    dir: &Path,
    drop: &str,
    replace: Option<(&str, Vec<usize>, Vec<f32>)>,
) -> PathBuf {
    let bytes = std::fs::read(fixture).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut views: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != drop)
        .collect();
    let raw: Vec<u8>;
    if let Some((name, dims, v)) = replace {
        raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        views.push((
            name.to_string(),
            TensorView::new(Dtype::F32, dims, &raw).unwrap(),
        ));
    }
    let out = dir.join(format!("edited-{drop}.safetensors"));
    safetensors::tensor::serialize_to_file(views, None, &out).unwrap();
    out
}

/// An f32 tensor of `fixture`, as stored, with its dims.
pub fn fixture_f32(fixture: &Path, name: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(fixture).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (v, t.shape().to_vec())
}

/// Asserts that every tensor of ours came from the file under its own name
/// and that every batch-norm counter went unused; returns the file's other
/// unused tensors.
pub fn unused_besides_counters(imported: &Imported) -> Vec<String> {
    let report = &imported.report;
    assert_eq!(
        report.mapped.len(),
        imported.params.len() + imported.buffers.len()
    );
    assert!(report.mapped.iter().all(|(s, o)| s == o));
    assert!(report.to_string().contains("none missing"));
    let (counters, rest): (Vec<&String>, Vec<&String>) = report
        .unused
        .iter()
        .partition(|n| n.ends_with(".num_batches_tracked"));
    // Running mean and variance per counter.
    assert_eq!(counters.len(), imported.buffers.len() / 2);
    rest.into_iter().cloned().collect()
}

/// The imported backbone's eval-mode output on `fixture`'s
/// `input.images_nhwc`, with its dims.
pub fn forward_stored_input(imported: &mut Imported, fixture: &Path) -> (Vec<f64>, Vec<usize>) {
    let (images, dims) = fixture_f32(fixture, "input.images_nhwc");
    let tape = Tape::no_grad();
    let x = tape.constant(Tensor::from_vec(images, dims).unwrap());
    let mut rng = Rng::new(0);
    let mut cx = Ctx {
        tape: &tape,
        params: &imported.params,
        buffers: &mut imported.buffers,
        training: false,
        rng: &mut rng,
        frozen: false,
    };
    let y = imported.net.forward(&mut cx, &x).unwrap();
    (y.value().to_f64_vec(), y.dims().to_vec())
}

/// Runs the imported backbone in eval mode on `fixture`'s
/// `input.images_nhwc` and asserts every value within
/// `tol · (1 + |ref|)` of the fixture's `output`, in the same layout;
/// returns the worst `|err| / (1 + |ref|)` and the worst absolute error.
pub fn reproduce(imported: &mut Imported, fixture: &Path, output: &str, tol: f64) -> (f64, f64) {
    let (got, dims) = forward_stored_input(imported, fixture);
    let (want, want_dims) = fixture_f32(fixture, output);
    assert_eq!(dims, want_dims);
    let (mut rel, mut abs) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(&want) {
        let w = *w as f64;
        rel = rel.max((g - w).abs() / (1.0 + w.abs()));
        abs = abs.max((g - w).abs());
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{g} vs {w}");
    }
    (rel, abs)
}

/// Imports `fixture` as `backbone`, writes the checkpoint and loads it into
/// a fresh multi-task network on that backbone: every backbone tensor
/// loads with the imported values, only the neck and heads start from the
/// seed.
pub fn assert_checkpoint_starts_the_multi_task_network(fixture: &Path, backbone: BackboneConfig) {
    let dir = tempfile::tempdir().unwrap();
    let imported = import::import(fixture, &backbone).unwrap();
    let ckpt = dir.path().join("imported.safetensors");
    import::write_checkpoint(&ckpt, &imported).unwrap();
    let cfg = NetConfig {
        backbone,
        ..NetConfig::default()
    };
    let (mut p, mut b) = (Params::new(), Buffers::new());
    MtlNet::new(&cfg, &mut p, &mut b, &mut Rng::new(1)).unwrap();
    let report = load_matching(&ckpt, false, &mut p, &mut b, &Device::Cpu).unwrap();
    assert_eq!(
        report.loaded.len(),
        imported.params.len() + imported.buffers.len()
    );
    assert!(report.ignored.is_empty() && report.mismatched.is_empty());
    assert!(report
        .initialised
        .iter()
        .all(|n| n.starts_with("neck.") || n.starts_with("head.")));
    for (ours, theirs) in [(&p, &imported.params), (&b, &imported.buffers)] {
        for id in theirs.ids() {
            let name = theirs.name(id);
            let loaded = ours.get(ours.find(name).unwrap());
            assert_eq!(loaded.to_f64_vec(), theirs.get(id).to_f64_vec(), "{name}");
        }
    }
}
