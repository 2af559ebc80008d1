//! `mtaffect import`: a PyTorch state dict (safetensors) to a checkpoint
//! that `train --init-from` starts from, with the report of what was mapped
//! and what went unused.

use mtaffect::import;
use mtaffect::model::BackboneConfig;
use mtaffect::Result;
use std::path::Path;

/// The architecture's keys that a reduced or non-standard model changes.
pub struct Sizes {
    pub width_mult: Option<f64>,
    pub embedding: Option<usize>,
    pub image_size: Option<usize>,
}

pub fn import_cmd(arch: &str, from: &Path, out: &Path, sizes: Sizes) -> Result<()> {
    let mut backbone = import::arch(arch)?;
    match &mut backbone {
        BackboneConfig::Iresnet(c) => {
            c.width_mult = sizes.width_mult.unwrap_or(c.width_mult);
            c.embedding = sizes.embedding.unwrap_or(c.embedding);
            c.image_size = sizes.image_size.unwrap_or(c.image_size);
        }
        BackboneConfig::SeResnet(_) | BackboneConfig::Vit(_) | BackboneConfig::Densenet(_) => {
            unreachable!("import::arch names IResNets only")
        }
    }
    backbone.validate("--arch")?;
    let imported = import::import(from, &backbone)?;
    import::write_checkpoint(out, &imported)?;
    print!("{}", imported.report);
    // The table a fine-tuning config needs for the names and shapes to match.
    let table = toml::to_string(&backbone).expect("every config value has a TOML form");
    println!(
        "{backbone} -> {}\nfine-tune it with `mtaffect train --init-from {}` and a config holding\n[model.backbone]\n{table}",
        out.display(),
        out.display()
    );
    Ok(())
}
