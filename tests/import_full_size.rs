//! Output parity of a full-size PyTorch model, run by hand (its weights are
//! too large to commit): write the model with random weights, e.g.
//!   python3 scripts/torch_resnet.py resnet50 /tmp/r50.safetensors --width 1 --size 112
//! then
//!   MTAFFECT_PARITY=resnet50:/tmp/r50.safetensors:112 \
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
use import_fixture::{fixture_f32, forward_stored_batch, parity};
use mtaffect::import;
use safetensors::tensor::SafeTensors;
use std::path::Path;

#[test]
#[ignore = "run by hand on a full-size model: MTAFFECT_PARITY=arch:file:side"]
fn a_full_size_model_reproduces_pytorchs_outputs() {
    let spec = std::env::var("MTAFFECT_PARITY").expect("MTAFFECT_PARITY=arch:file:side");
    let [arch, file, side] = spec.splitn(3, ':').collect::<Vec<_>>()[..] else {
        panic!("MTAFFECT_PARITY={spec}: expected arch:file:side")
    };
    let path = Path::new(file);
    let side: usize = side.parse().expect("side in pixels");
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
    let got = forward_stored_batch(&mut imported, path, side);
    let (_, normwise) = parity(arch, &got, &fixture_f32(path, output));
    assert!(
        normwise <= 1e-5,
        "{arch}: worst |err| / max |ref| {normwise:.2e}"
    );
}
