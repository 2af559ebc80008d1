//! Writes what `scripts/torch_parity_run.py` needs to train PyTorch on
//! exactly what `mtaffect train` trains on: the initial checkpoint of a run
//! config (the weights `Trainer::new` draws from its seed) and the first
//! `STEPS` training batches of its loader (same order, augmentation and epoch
//! roll-over as the trainer), one safetensors file per step.
//!
//! `cargo run --release --example dump_batches -- CONFIG.toml STEPS OUT_DIR`
//! with CONFIG a run's resolved `runs/<run>/config.toml`.

use mtaffect::train::{make_loader, prepare_data, ConfigFile, TrainConfig, Trainer};
use mtaffect::{tensor_file, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn main() -> mtaffect::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(config), Some(Ok(steps)), Some(out)) = (
        args.get(1),
        args.get(2).map(|s| s.parse::<usize>()),
        args.get(3),
    ) else {
        eprintln!("usage: dump_batches CONFIG.toml STEPS OUT_DIR");
        std::process::exit(2);
    };
    let cfg = TrainConfig::load(Path::new(config))?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).map_err(|e| mtaffect::Error::io(&out, e))?;
    Trainer::new(&cfg)?.save_checkpoint(&out.join("init.safetensors"))?;

    let root = prepare_data(&cfg.data, true)?;
    let loader = make_loader(&cfg, &root, &cfg.data.train_annotations, true)?;
    if loader.steps_per_epoch() == 0 {
        return Err(mtaffect::Error::Config(format!(
            "{config}: the training set is smaller than one batch"
        )));
    }
    let mut written = 0;
    'epochs: for epoch in 0.. {
        for batch in loader.epoch(epoch, 0) {
            if written == steps {
                break 'epochs;
            }
            let b = batch?;
            let tensors: Vec<(String, &Tensor)> = vec![
                ("images".into(), &b.images),
                ("va".into(), &b.va),
                ("aus".into(), &b.aus),
                ("expr".into(), &b.expr),
            ];
            let meta = HashMap::from([
                ("step".to_string(), written.to_string()),
                ("epoch".to_string(), epoch.to_string()),
            ]);
            let path = out.join(format!("batch_{written:05}.safetensors"));
            tensor_file::write(&path, "batch dump", tensors, meta)?;
            written += 1;
        }
    }
    println!(
        "wrote {}: init.safetensors and {written} batches of {}",
        out.display(),
        cfg.data.batch_size
    );
    Ok(())
}
