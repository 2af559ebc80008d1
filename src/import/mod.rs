//! Weights from PyTorch in: a state dict saved as safetensors becomes the
//! parameters and buffers of one of our backbones, and a checkpoint that
//! `mtaffect train --init-from` starts from. Names are mapped and layouts
//! converted here, at the boundary, once: convolutions OIHW -> [K, R, S, C],
//! batch-norm running statistics to buffers, and whatever else an
//! architecture needs (the IResNet's FC columns, timm's 1x1-convolution SE
//! gates, names that differ). Each family's map is one file (`iresnet.rs`,
//! `resnet.rs`, `vit.rs`, `densenet.rs`); this file reads, checks, applies
//! and reports.
//!
//! Every tensor the backbone has must come from the file with the shape the
//! map expects: an error names the first that does not (missing, wrong
//! shape, or an unsupported dtype). Tensors of the file the map does not
//! use (`num_batches_tracked`, a classifier head) are listed in the report.

mod densenet;
mod iresnet;
mod resnet;
mod vit;

use crate::model::{Backbone, BackboneConfig};
use crate::nn::{Buffers, Scope};
use crate::train::checkpoint::{self, CheckpointRef, TrainProgress};
use crate::train::{ConfigFile, TrainConfig};
use crate::{tensor_file, DType, Error, Params, Result, Rng, Tensor};
use safetensors::tensor::SafeTensors;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// How a source tensor becomes ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Convert {
    /// Same layout (vectors, linear weights over a vector).
    Same,
    /// A convolution weight, OIHW -> [K, R, S, C].
    Oihw,
    /// A 1x1 convolution [O, I, 1, 1] used as a linear weight [O, I]
    /// (same values).
    Conv1x1AsLinear,
    /// A linear weight [out, C·P] over a flattened map: PyTorch's NCHW
    /// flatten orders the columns (c, p), ours of the NHWC map (p, c), with
    /// P the map's positions.
    FlattenedMap { positions: usize },
}

impl Convert {
    /// A tensor that keeps its name: convolution weights (the only 4-D
    /// tensors) change layout, everything else is taken as it is.
    fn by_rank(dims: &[usize]) -> Convert {
        if dims.len() == 4 {
            Convert::Oihw
        } else {
            Convert::Same
        }
    }

    /// The source's dims for a tensor of ours with `dims`.
    fn source_dims(self, dims: &[usize]) -> Vec<usize> {
        match (self, dims) {
            (Convert::Oihw, &[k, r, s, c]) => vec![k, c, r, s],
            (Convert::Conv1x1AsLinear, &[o, i]) => vec![o, i, 1, 1],
            _ => dims.to_vec(),
        }
    }

    /// Our values from the source's (row-major, `source_dims`).
    fn apply(self, src: &[f32], dims: &[usize]) -> Vec<f32> {
        let mut out = vec![0.0f32; src.len()];
        match (self, dims) {
            (Convert::Same | Convert::Conv1x1AsLinear, _) => out.copy_from_slice(src),
            (Convert::Oihw, &[_, r, s, c]) => {
                for (o, v) in out.iter_mut().enumerate() {
                    // ours [k][i][j][ch] <- source [k][ch][i][j]
                    let (ch, rest) = (o % c, o / c);
                    let (j, rest) = (rest % s, rest / s);
                    let (i, kk) = (rest % r, rest / r);
                    *v = src[((kk * c + ch) * r + i) * s + j];
                }
            }
            (Convert::FlattenedMap { positions }, &[_, cols]) => {
                let c = cols / positions;
                for (o, v) in out.iter_mut().enumerate() {
                    // ours [row][p·C + ch] <- source [row][ch·P + p]
                    let (row, col) = (o / cols, o % cols);
                    let (p, ch) = (col / c, col % c);
                    *v = src[row * cols + ch * positions + p];
                }
            }
            _ => unreachable!("conversions are chosen for their tensors' ranks"),
        }
        out
    }
}

/// What [`import`] did, by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ImportReport {
    pub source: String,
    /// (source name, our name) of every tensor taken.
    pub mapped: Vec<(String, String)>,
    /// The source's tensors the backbone has no use for.
    pub unused: Vec<String>,
    /// Tensors of the source checked against what the backbone computes
    /// instead of loading them, with what they were found to be.
    pub checked: Vec<String>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} tensors mapped, {} unused, none missing",
            self.source,
            self.mapped.len(),
            self.unused.len()
        )?;
        for (s, o) in &self.mapped {
            if s != o {
                writeln!(f, "  {s} -> {o}")?;
            }
        }
        for c in &self.checked {
            writeln!(f, "  checked {c}")?;
        }
        if !self.unused.is_empty() {
            writeln!(f, "  unused: {}", self.unused.join(", "))?;
        }
        Ok(())
    }
}

/// A backbone's weights taken from a PyTorch state dict.
pub struct Imported {
    pub backbone: BackboneConfig,
    /// The built backbone, whose ids index `params` and `buffers`.
    pub net: Box<dyn Backbone>,
    pub params: Params,
    pub buffers: Buffers,
    pub report: ImportReport,
}

/// Every name `--arch` takes.
pub fn known_archs() -> Vec<&'static str> {
    let iresnets = iresnet::ARCHS.iter().map(|(n, _)| *n);
    let resnets = resnet::ARCHS.iter().map(|(n, ..)| *n);
    let vits = vit::ARCHS.iter().map(|(n, _)| *n);
    let densenets = densenet::ARCHS.iter().map(|(n, _)| *n);
    iresnets
        .chain(resnets)
        .chain(vits)
        .chain(densenets)
        .collect()
}

/// The backbone a PyTorch architecture name stands for ("iresnet50"); an
/// error listing the known names otherwise.
pub fn arch(name: &str) -> Result<BackboneConfig> {
    let found = iresnet::arch(name)
        .or_else(|| resnet::arch(name))
        .or_else(|| vit::arch(name))
        .or_else(|| densenet::arch(name));
    found.ok_or_else(|| {
        Error::Config(format!(
            "unknown architecture '{name}': known: {}",
            known_archs().join(", ")
        ))
    })
}

/// Where our tensor (name, dims) comes from in a state dict: its source
/// name and conversion.
type SourceMap = Box<dyn Fn(&str, &[usize]) -> (String, Convert)>;

/// The map for `backbone`'s kind.
fn source_map(backbone: &BackboneConfig) -> SourceMap {
    match backbone {
        BackboneConfig::Iresnet(c) => {
            // The FC reads the (image_size / 16)² map.
            let positions = (c.image_size / 16).pow(2);
            Box::new(move |name, dims| (name.to_string(), iresnet::convert(name, dims, positions)))
        }
        BackboneConfig::SeResnet(_) => Box::new(resnet::source),
        // Same names: timm's ViT, torchvision's DenseNet.
        BackboneConfig::Vit(_) | BackboneConfig::Densenet(_) => {
            Box::new(|name, dims| (name.to_string(), Convert::by_rank(dims)))
        }
    }
}

/// Reads the state dict at `source` into a fresh `backbone` (its parameter
/// and buffer names as [`crate::model::MtlNet`] registers them).
pub fn import(source: &Path, backbone: &BackboneConfig) -> Result<Imported> {
    let map = source_map(backbone);
    let (mut params, mut buffers) = (Params::new(), Buffers::new());
    let net = backbone.build(&mut params, &mut buffers, &Scope::root(), &mut Rng::new(0))?;
    let bytes = std::fs::read(source).map_err(|e| Error::io(source, e))?;
    let bad = |msg: String| tensor_file::invalid(source, "PyTorch state dict", msg);
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    let mut unused: std::collections::BTreeSet<String> =
        st.names().into_iter().map(str::to_string).collect();
    let mut report = ImportReport {
        source: source.display().to_string(),
        ..ImportReport::default()
    };
    for reg in [&mut params, &mut buffers] {
        for id in reg.ids().collect::<Vec<_>>() {
            let name = reg.name(id).to_string();
            let dims = reg.get(id).dims().to_vec();
            let (src, conv) = map(&name, &dims);
            let want = conv.source_dims(&dims);
            let view = st.tensor(&src).map_err(|_| {
                bad(format!(
                    "tensor '{src}' is missing (the {backbone} backbone needs it as {want:?} for {name})"
                ))
            })?;
            if view.shape() != want.as_slice() {
                return Err(bad(format!(
                    "tensor '{src}' is {:?}, the {backbone} backbone needs {want:?} for {name}",
                    view.shape()
                )));
            }
            let t = tensor_file::to_tensor(&view)
                .map_err(|msg| bad(format!("tensor '{src}': {msg}")))?
                .to_dtype(DType::F32);
            let v = conv.apply(t.data::<f32>()?, &dims);
            reg.set(id, Tensor::from_vec(v, dims)?)?;
            unused.remove(&src);
            report.mapped.push((src, name));
        }
    }
    if let BackboneConfig::Vit(c) = backbone {
        if let Ok(view) = st.tensor("pos_embed") {
            let t = tensor_file::to_tensor(&view)
                .map_err(|msg| bad(format!("tensor 'pos_embed': {msg}")))?
                .to_dtype(DType::F32);
            vit::check_pos_embed(view.shape(), t.data::<f32>()?, c.stack_spec().width)
                .map_err(|why| bad(format!("tensor 'pos_embed' {why}")))?;
            unused.remove("pos_embed");
            report
                .checked
                .push("pos_embed: the fixed 2-D sin-cos table, computed for our grid".into());
        }
    }
    report.unused = unused.into_iter().collect();
    Ok(Imported {
        backbone: backbone.clone(),
        net,
        params,
        buffers,
        report,
    })
}

/// Writes `imported` as a checkpoint (backbone tensors only, no optimizer
/// state, step 0) whose config is the default run on that backbone, so
/// `model.init_from` / `--init-from` takes it and the run's neck and heads
/// start from their seed.
pub fn write_checkpoint(path: &Path, imported: &Imported) -> Result<()> {
    let mut cfg = TrainConfig::default();
    cfg.model.backbone = imported.backbone.clone();
    if let BackboneConfig::Iresnet(c) = &imported.backbone {
        cfg.data.image_size = c.image_size;
    }
    cfg.validate()?;
    let buffers: BTreeMap<String, Tensor> = imported
        .buffers
        .ids()
        .map(|id| {
            let b = &imported.buffers;
            (b.name(id).to_string(), b.get(id).clone())
        })
        .collect();
    checkpoint::save(
        path,
        &CheckpointRef {
            params: &imported.params,
            optimizer: &BTreeMap::new(),
            buffers: &buffers,
            progress: TrainProgress::start(),
            config_toml: &cfg.to_toml(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_move_each_value_where_ours_expects_it() {
        // OIHW [2, 3, 2, 2] value = 1000k + 100c + 10i + j.
        let (k, c, r, s) = (2, 3, 2, 2);
        let mut src = Vec::new();
        for kk in 0..k {
            for ch in 0..c {
                for i in 0..r {
                    for j in 0..s {
                        src.push((1000 * kk + 100 * ch + 10 * i + j) as f32);
                    }
                }
            }
        }
        let dims = [k, r, s, c];
        assert_eq!(Convert::Oihw.source_dims(&dims), [k, c, r, s]);
        let ours = Convert::Oihw.apply(&src, &dims);
        let at = |kk: usize, i: usize, j: usize, ch: usize| ours[((kk * r + i) * s + j) * c + ch];
        assert_eq!(
            (at(1, 0, 1, 2), at(1, 1, 1, 1), at(0, 1, 0, 2)),
            (1201.0, 1111.0, 210.0)
        );
        // A 2-row FC over 3 channels x 2 positions: source column ch·2 + p.
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let ours = Convert::FlattenedMap { positions: 2 }.apply(&src, &[2, 6]);
        // ours column p·3 + ch <- source column ch·2 + p
        assert_eq!(ours, [0., 2., 4., 1., 3., 5., 6., 8., 10., 7., 9., 11.]);
    }

    #[test]
    fn unknown_architectures_list_the_known_ones() {
        let e = arch("resnet9").unwrap_err().to_string();
        assert!(
            e.contains("resnet9") && e.contains("iresnet50") && e.contains("seresnet50"),
            "{e}"
        );
        assert_eq!(arch("iresnet50").unwrap().to_string(), "IResNet-50");
        assert!(arch("resnet18").is_ok() && arch("seresnet50").is_ok());
    }
}
