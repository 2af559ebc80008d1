//! `mtaffect import`: a PyTorch state dict (safetensors) to a checkpoint
//! that `train --init-from` starts from, with the report of what was mapped
//! and what went unused.

use mtaffect::import;
use mtaffect::model::BackboneConfig;
use mtaffect::{Error, Result};
use std::path::Path;

/// The architecture's keys that a reduced or non-standard model changes;
/// each applies to one family of architectures.
pub struct Sizes {
    pub width_mult: Option<f64>,
    pub embedding: Option<usize>,
    pub image_size: Option<usize>,
    pub growth_rate: Option<usize>,
    pub init_features: Option<usize>,
    pub bn_size: Option<usize>,
    pub block_config: Option<Vec<usize>>,
}

impl Sizes {
    /// The flags given on the command line.
    fn given(&self) -> Vec<&'static str> {
        [
            ("--width-mult", self.width_mult.is_some()),
            ("--embedding", self.embedding.is_some()),
            ("--image-size", self.image_size.is_some()),
            ("--growth-rate", self.growth_rate.is_some()),
            ("--init-features", self.init_features.is_some()),
            ("--bn-size", self.bn_size.is_some()),
            ("--block-config", self.block_config.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect()
    }

    /// An error naming the first flag given that `arch` does not take
    /// (rather than ignoring it).
    fn only(&self, arch: &str, takes: &[&str]) -> Result<()> {
        match self.given().into_iter().find(|f| !takes.contains(f)) {
            None => Ok(()),
            Some(flag) => Err(Error::Config(format!(
                "{flag} does not apply to --arch {arch} (its size flags: {})",
                if takes.is_empty() {
                    "none".to_string()
                } else {
                    takes.join(", ")
                }
            ))),
        }
    }
}

pub fn import_cmd(arch: &str, from: &Path, out: &Path, sizes: Sizes) -> Result<()> {
    let mut backbone = import::arch(arch)?;
    match &mut backbone {
        BackboneConfig::Iresnet(c) => {
            sizes.only(arch, &["--width-mult", "--embedding", "--image-size"])?;
            c.width_mult = sizes.width_mult.unwrap_or(c.width_mult);
            c.embedding = sizes.embedding.unwrap_or(c.embedding);
            c.image_size = sizes.image_size.unwrap_or(c.image_size);
        }
        BackboneConfig::SeResnet(c) => {
            // Any input size works: the feature map is pooled by the neck.
            sizes.only(arch, &["--width-mult"])?;
            c.width_mult = sizes.width_mult.unwrap_or(c.width_mult);
        }
        BackboneConfig::Vit(_) => {
            // The preset fixes width and depth; the run's image size sets
            // the grid (the position table follows it).
            sizes.only(arch, &[])?;
        }
        BackboneConfig::Densenet(c) => {
            sizes.only(
                arch,
                &[
                    "--growth-rate",
                    "--init-features",
                    "--bn-size",
                    "--block-config",
                ],
            )?;
            c.growth_rate = sizes.growth_rate.unwrap_or(c.growth_rate);
            c.init_features = sizes.init_features.unwrap_or(c.init_features);
            c.bn_size = sizes.bn_size.unwrap_or(c.bn_size);
            c.block_config = sizes.block_config.or(c.block_config.take());
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
