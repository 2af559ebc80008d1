//! Output parity of a full-size PyTorch model, run by hand (its weights are
//! too large to commit): write the model with random weights, e.g.
//!   python3 scripts/torch_resnet.py resnet50 /tmp/r50.safetensors --width 1 --size 112
//! then
//!   MTAFFECT_PARITY=resnet50:/tmp/r50.safetensors \
//!     cargo test --release --test import_full_size -- --ignored --nocapture
//! The architecture is any name `mtaffect import --arch` takes, at its full
//! size; the file holds `input.images_nhwc` and `output.features` (or the
//! IResNet's `output.embedding`). Random weights let activations grow to
//! the hundreds in deep networks, where f32 rounding of large partial sums
//! lands on small outputs: the bound is on the worst error against the
//! largest output (1e-5), the elementwise figure is printed beside it.
//! BENCHMARKS.md records the results.

#[path = "common/import_fixture.rs"]
mod import_fixture;
use import_fixture::{fixture_f32, forward_stored_input};
use mtaffect::import;
use safetensors::tensor::SafeTensors;
use std::path::Path;

#[test]
#[ignore = "run by hand on a full-size model: MTAFFECT_PARITY=arch:file"]
fn a_full_size_model_reproduces_pytorchs_outputs() {
    let spec = std::env::var("MTAFFECT_PARITY").expect("MTAFFECT_PARITY=arch:file");
    let Some((arch, file)) = spec.split_once(':') else {
        panic!("MTAFFECT_PARITY={spec}: expected arch:file")
    };
    let path = Path::new(file);
    let bytes = std::fs::read(path).unwrap();
    let names = SafeTensors::deserialize(&bytes).unwrap().names().len();
    let output = ["output.features", "output.embedding"]
        .into_iter()
        .find(|n| SafeTensors::deserialize(&bytes).unwrap().tensor(n).is_ok())
        .expect("an output.features or output.embedding tensor");
    let t0 = std::time::Instant::now();
    let mut imported = import::import(path, &import::arch(arch).unwrap()).unwrap();
    println!(
        "{arch}: {names} tensors in the file, {} mapped, imported in {:.1} s",
        imported.report.mapped.len(),
        t0.elapsed().as_secs_f64()
    );
    let (got, dims) = forward_stored_input(&mut imported, path);
    let (want, want_dims) = fixture_f32(path, output);
    assert_eq!(dims, want_dims);
    let (mut elementwise, mut abs, mut scale) = (0.0f64, 0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(&want) {
        let w = *w as f64;
        elementwise = elementwise.max((g - w).abs() / (1.0 + w.abs()));
        abs = abs.max((g - w).abs());
        scale = scale.max(w.abs());
    }
    let normwise = abs / scale;
    println!(
        "{arch} import parity: {} values, worst |err| / max |ref| {normwise:.2e} \
         (max |ref| {scale:.3e}), worst |err| / (1 + |ref|) {elementwise:.2e}",
        got.len()
    );
    assert!(
        normwise <= 1e-5,
        "{arch}: worst |err| / max |ref| {normwise:.2e}"
    );
}
