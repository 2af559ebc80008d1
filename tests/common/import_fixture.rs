//! What the import parity tests share: the fixtures that scripts/torch_*.py
//! write (a PyTorch state dict beside `input.images_nhwc` and the model's
//! eval-mode outputs), an imported backbone's eval forward on the stored
//! batch, and the f32 comparison with its one-line report.

// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use mtaffect::import::Imported;
use mtaffect::nn::Ctx;
use mtaffect::{Rng, Tape, Tensor};
use safetensors::tensor::SafeTensors;
use std::path::{Path, PathBuf};

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// An f32 tensor of a fixture, as stored.
pub fn fixture_f32(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The imported backbone's eval-mode output on the fixture's square batch
/// `input.images_nhwc` of `side` pixels.
pub fn forward_stored_batch(imported: &mut Imported, path: &Path, side: usize) -> Vec<f64> {
    let images = fixture_f32(path, "input.images_nhwc");
    let n = images.len() / (side * side * 3);
    let tape = Tape::no_grad();
    let x = tape.constant(Tensor::from_vec(images, [n, side, side, 3]).unwrap());
    let mut rng = Rng::new(0);
    let mut cx = Ctx {
        tape: &tape,
        params: &imported.params,
        buffers: &mut imported.buffers,
        training: false,
        rng: &mut rng,
        frozen: false,
    };
    imported
        .net
        .forward(&mut cx, &x)
        .unwrap()
        .value()
        .to_f64_vec()
}

/// The worst error of `got` against PyTorch's `want`, as
/// (max |err| / (1 + |ref|), max |err| / max |ref|), printed on one line
/// (docs/architecture.md records the figures).
pub fn parity(label: &str, got: &[f64], want: &[f32]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let (mut elementwise, mut abs, mut scale) = (0.0f64, 0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        let w = *w as f64;
        elementwise = elementwise.max((g - w).abs() / (1.0 + w.abs()));
        abs = abs.max((g - w).abs());
        scale = scale.max(w.abs());
    }
    let normwise = abs / scale.max(f64::MIN_POSITIVE);
    println!(
        "{label} import parity: {} values, worst |err| / (1 + |ref|) {elementwise:.2e}, \
         worst |err| / max |ref| {normwise:.2e} (max |ref| {scale:.3e})",
        got.len()
    );
    (elementwise, normwise)
}

/// Asserts `got` is within `1e-4 * (1 + |want|)` of PyTorch's `want`
/// everywhere (f32 against f32 with other summation orders through a deep
/// network).
pub fn assert_reproduces(label: &str, got: &[f64], want: &[f32]) {
    let (elementwise, _) = parity(label, got, want);
    assert!(
        elementwise <= 1e-4,
        "{label}: worst |err| / (1 + |ref|) {elementwise:.2e}"
    );
}

/// A copy of the fixture at `src`, written into `dir`, without `drop` and
/// with `replace` (name, dims, f32 values) in its place.
pub fn edited(
    src: &Path,
    dir: &Path,
    drop: &str,
    replace: Option<(&str, Vec<usize>, Vec<f32>)>,
) -> PathBuf {
    let bytes = std::fs::read(src).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut views: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != drop)
        .collect();
    let raw: Vec<u8>;
    if let Some((name, dims, v)) = replace {
        raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view =
            safetensors::tensor::TensorView::new(safetensors::tensor::Dtype::F32, dims, &raw)
                .unwrap();
        views.push((name.to_string(), view));
    }
    let out = dir.join(format!("edited-{drop}.safetensors"));
    safetensors::tensor::serialize_to_file(views, None, &out).unwrap();
    out
}
