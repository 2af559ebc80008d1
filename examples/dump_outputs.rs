//! Writes a seeded input batch and the model's eval-mode outputs for a
//! checkpoint, as safetensors, for `scripts/torch_model.py` to compare with
//! PyTorch. `cargo run --release --example dump_outputs -- CKPT OUT [N]`.

use mtaffect::train::{checkpoint, ConfigFile, Trainer};
use mtaffect::{DType, Rng, Tensor};
use std::path::Path;

fn main() -> mtaffect::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: dump_outputs CHECKPOINT OUT.safetensors [BATCH]");
        std::process::exit(2);
    }
    let n: usize = args
        .get(3)
        .map_or(4, |s| s.parse().expect("BATCH is a number"));
    let mut t = Trainer::from_checkpoint(Path::new(&args[1]))?;
    let s = t.config.data.image_size;
    let x = Tensor::uniform([n, s, s, 3], -1.0, 1.0, DType::F32, &mut Rng::new(1234));
    let (va, expr, au) = t.infer(&x)?;
    let cols = |v: &[f32]| v.len() / n;
    let mut out = mtaffect::Params::new();
    out.add("input_nhwc", x.clone())?;
    out.add("va", Tensor::from_vec(va.clone(), [n, cols(&va)])?)?;
    out.add("expr", Tensor::from_vec(expr.clone(), [n, cols(&expr)])?)?;
    out.add("au", Tensor::from_vec(au.clone(), [n, cols(&au)])?)?;
    checkpoint::save(
        &args[2],
        &checkpoint::CheckpointRef {
            params: &out,
            optimizer: &Default::default(),
            buffers: &Default::default(),
            progress: t.progress,
            config_toml: &t.config.to_toml(),
        },
    )?;
    println!("wrote {} (batch {n}, {s}x{s})", args[2]);
    Ok(())
}
