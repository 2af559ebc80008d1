//! `mtaffect export --onnx`: a frame checkpoint as an ONNX model, and with
//! `--dump` a seeded input batch and this crate's own outputs for it, so
//! another runtime's results can be compared with ours
//! (scripts/check_onnx.py does it with ONNX Runtime).

use mtaffect::export::onnx::{self, Batch, OnnxOptions};
use mtaffect::train::seeds::expand_checkpoints;
use mtaffect::train::Trainer;
use mtaffect::{Error, Result, Rng, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Rows of the dumped batch when the export's batch is dynamic.
const DUMP_ROWS: usize = 3;
/// Seed of the dumped input.
const DUMP_SEED: u64 = 20;

pub fn export_onnx_cmd(
    checkpoint: &Path,
    out: &Path,
    opts: OnnxOptions,
    dump: Option<&Path>,
) -> Result<()> {
    let members = expand_checkpoints(&[checkpoint.to_path_buf()])?;
    let [path]: [PathBuf; 1] = members.try_into().map_err(|m: Vec<PathBuf>| {
        Error::Config(format!(
            "export: {} names {} checkpoints (a seed set); name one run or file",
            checkpoint.display(),
            m.len()
        ))
    })?;
    let mut t = Trainer::from_checkpoint(&path)?;
    let size = t.config.data.image_size;
    let model = onnx::export(&t.net, &t.params, &t.buffers, size, opts)?;
    onnx::write(out, &model)?;
    let batch = match opts.batch {
        Batch::Fixed(n) => n.to_string(),
        Batch::Dynamic => onnx::BATCH_DIM.to_string(),
    };
    println!(
        "{} ({}) -> {}: input {} [{batch}, 3, {size}, {size}], outputs {}, {}, {}; opset {}",
        path.display(),
        t.config.model.backbone,
        out.display(),
        onnx::INPUT,
        onnx::VA_OUTPUT,
        onnx::AU_OUTPUT,
        onnx::EXPR_OUTPUT,
        opts.opset
    );
    if let Some(d) = dump {
        let rows = match opts.batch {
            Batch::Fixed(n) => n,
            Batch::Dynamic => DUMP_ROWS,
        };
        dump_io(&mut t, size, rows, d)?;
        println!("input and outputs for parity checks -> {}", d.display());
    }
    Ok(())
}

/// Writes `rows` seeded images in [-1, 1] as the ONNX model takes them
/// (`images`, NCHW) and the model's eval-mode outputs for them (under the
/// ONNX output names) to a safetensors file.
fn dump_io(t: &mut Trainer, size: usize, rows: usize, path: &Path) -> Result<()> {
    let mut rng = Rng::new(DUMP_SEED);
    let nhwc: Vec<f32> = (0..rows * size * size * 3)
        .map(|_| rng.uniform(-1.0, 1.0) as f32)
        .collect();
    let (va, expr, au) = t.infer(&Tensor::from_vec(nhwc.clone(), [rows, size, size, 3])?)?;
    let plane = size * size;
    let mut nchw = vec![0.0; nhwc.len()];
    for (i, v) in nhwc.into_iter().enumerate() {
        let (n, p, c) = (i / (plane * 3), (i / 3) % plane, i % 3);
        nchw[(n * 3 + c) * plane + p] = v;
    }
    let width = |v: &[f32]| v.len() / rows;
    let tensors = [
        (onnx::INPUT, Tensor::from_vec(nchw, [rows, 3, size, size])?),
        (onnx::VA_OUTPUT, Tensor::from_vec(va.clone(), [rows, 2])?),
        (
            onnx::AU_OUTPUT,
            Tensor::from_vec(au.clone(), [rows, width(&au)])?,
        ),
        (
            onnx::EXPR_OUTPUT,
            Tensor::from_vec(expr.clone(), [rows, width(&expr)])?,
        ),
    ];
    mtaffect::tensor_file::write(
        path,
        "ONNX parity dump",
        tensors.iter().map(|(k, t)| (k.to_string(), t)).collect(),
        HashMap::new(),
    )
}
