//! `mtaffect export --onnx` on small models of every backbone kind (seeded
//! init, batch-norm statistics set away from their initial values): the file
//! decodes with the exporter's own protobuf structs; the input and outputs
//! are named and shaped as documented; every node reads only the input,
//! initializers and earlier nodes; every parameter and buffer of the model
//! is an initializer in ONNX's layout (convolutions OIHW, PReLU slopes
//! [C, 1, 1], the IResNet FC's columns in (c, h, w) order, the ViT's fused
//! qkv as three transposed projections), checked element-wise. Numerical
//! parity with ONNX Runtime is scripts/check_onnx.py's (Python, not here).

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, temp, text};

#[path = "common/tiny_vit.rs"]
mod tiny_vit;
use tiny_vit::tiny_vit;

use mtaffect::export::onnx::proto::{DimValue, ModelProto, TensorProto, ValueInfoProto};
use mtaffect::export::onnx::{self, layout};
use mtaffect::model::{
    BackboneConfig, DenseNetConfig, IResNetConfig, NeckKind, NetConfig, Pooling, SeResNetConfig,
    Stem,
};
use mtaffect::train::{TrainConfig, Trainer};
use mtaffect::{DType, Rng, Tensor};
use std::collections::{HashMap, HashSet};
use std::path::Path;

const SIZE: usize = 32;

fn config(backbone: BackboneConfig, neck: NeckKind) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.data.image_size = SIZE;
    c.model = NetConfig {
        backbone,
        neck,
        ..NetConfig::default()
    };
    c.train.device = "cpu".into();
    c
}

fn se_resnet(depth: usize, stem: Stem) -> BackboneConfig {
    SeResNetConfig {
        depth,
        width_mult: 0.125,
        se_reduction: 4,
        se_divisor: 1,
        stem,
    }
    .into()
}

fn iresnet() -> BackboneConfig {
    IResNetConfig {
        depth: 18,
        width_mult: 0.125,
        embedding: 16,
        dropout: 0.0,
        image_size: SIZE,
    }
    .into()
}

/// A fresh trainer of `cfg` whose running statistics are random (mean
/// around 0, variance in [0.5, 1.5]), saved to `dir/ckpt.safetensors`.
fn checkpoint(cfg: &TrainConfig, dir: &Path) -> Trainer {
    let mut t = Trainer::new(cfg).unwrap();
    let mut rng = Rng::new(5);
    let ids: Vec<_> = t.buffers.ids().collect();
    for id in ids {
        let name = t.buffers.name(id).to_string();
        let dims = t.buffers.get(id).dims().to_vec();
        let n = dims.iter().product::<usize>();
        let v: Vec<f64> = if name.ends_with("running_var") {
            (0..n).map(|_| rng.uniform(0.5, 1.5)).collect()
        } else {
            (0..n).map(|_| rng.uniform(-0.3, 0.3)).collect()
        };
        t.buffers
            .set(
                id,
                Tensor::from_f64s(&v, dims.as_slice(), DType::F32).unwrap(),
            )
            .unwrap();
    }
    t.save_checkpoint(&dir.join("ckpt.safetensors")).unwrap();
    t
}

/// Runs `export --onnx` with `extra` arguments and decodes the file.
fn export(dir: &Path, extra: &[&str]) -> ModelProto {
    let (ckpt, out) = (dir.join("ckpt.safetensors"), dir.join("model.onnx"));
    let mut args = vec![
        "export".to_string(),
        "--checkpoint".into(),
        ckpt.display().to_string(),
        "--onnx".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = mtaffect(&args);
    assert!(o.status.success(), "{}", text(&o));
    onnx::read(&out).unwrap()
}

fn dims(v: &ValueInfoProto) -> Vec<String> {
    let t = v.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            DimValue::DimValue(n) => n.to_string(),
            DimValue::DimParam(s) => s.clone(),
        })
        .collect()
}

fn values(t: &TensorProto) -> Vec<f32> {
    assert_eq!(t.data_type, 1, "{} is not f32", t.name);
    t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn host(t: &Trainer, name: &str) -> (Vec<usize>, Vec<f32>) {
    let (reg, id) = match t.params.find(name) {
        Some(id) => (&t.params, id),
        None => (&t.buffers, t.buffers.find(name).expect(name)),
    };
    let v = reg.get(id);
    (v.dims().to_vec(), v.to_vec::<f32>().unwrap())
}

/// The checks every export shares; returns the initializers by name.
fn check_structure<'m>(
    m: &'m ModelProto,
    t: &Trainer,
    batch: &str,
) -> HashMap<&'m str, &'m TensorProto> {
    assert_eq!(m.ir_version, 8);
    assert_eq!(m.opset_import.len(), 1);
    let g = m.graph.as_ref().unwrap();
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name, "images");
    let s = SIZE.to_string();
    assert_eq!(dims(&g.input[0]), [batch, "3", &s, &s]);
    let outs: Vec<(&str, Vec<String>)> = g
        .output
        .iter()
        .map(|o| (o.name.as_str(), dims(o)))
        .collect();
    let want = |w: usize| vec![batch.to_string(), w.to_string()];
    assert_eq!(
        outs,
        [
            ("valence_arousal", want(2)),
            ("au_logits", want(12)),
            ("expr_logits", want(8)),
        ]
    );
    // Every node reads only what exists before it; names are unique.
    let inits: HashMap<&str, &TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    assert_eq!(
        inits.len(),
        g.initializer.len(),
        "duplicate initializer names"
    );
    let mut known: HashSet<&str> = inits.keys().copied().collect();
    known.insert("images");
    for n in &g.node {
        for i in &n.input {
            assert!(
                known.contains(i.as_str()),
                "{} ({}) reads unknown {i}",
                n.name,
                n.op_type
            );
        }
        for o in &n.output {
            assert!(known.insert(o.as_str()), "{o} is written twice");
        }
    }
    for o in ["valence_arousal", "au_logits", "expr_logits"] {
        assert!(known.contains(o), "no node writes {o}");
    }
    // Every parameter and buffer is there, with its number of elements;
    // the ViT's fused qkv as its three thirds.
    for (reg, kind) in [(&t.params, "parameter"), (&t.buffers, "buffer")] {
        for id in reg.ids() {
            let name = reg.name(id);
            let numel = reg.get(id).dims().iter().product::<usize>();
            let found: usize = match name
                .strip_suffix(".qkv.weight")
                .or(name.strip_suffix(".qkv.bias"))
            {
                Some(attn) => {
                    let last = name.rsplit('.').next().unwrap();
                    ["q", "k", "v"]
                        .iter()
                        .map(|p| values(inits[format!("{attn}.{p}.{last}").as_str()]).len())
                        .sum()
                }
                None => {
                    let init = inits
                        .get(name)
                        .unwrap_or_else(|| panic!("{kind} {name} not exported"));
                    values(init).len()
                }
            };
            assert_eq!(found, numel, "{kind} {name}");
        }
    }
    inits
}

/// The conv weight `name` [K, R, S, C] is the initializer in OIHW, element by element.
fn check_conv(inits: &HashMap<&str, &TensorProto>, t: &Trainer, name: &str) {
    let (d, w) = host(t, name);
    let init = inits[name];
    assert_eq!(
        init.dims,
        [d[0], d[3], d[1], d[2]].map(|v| v as i64),
        "{name}"
    );
    let got = values(init);
    for k in 0..d[0] {
        for r in 0..d[1] {
            for s in 0..d[2] {
                for c in 0..d[3] {
                    let ours = w[((k * d[1] + r) * d[2] + s) * d[3] + c];
                    let theirs = got[((k * d[3] + c) * d[1] + r) * d[2] + s];
                    assert_eq!(ours, theirs, "{name} at ({k}, {r}, {s}, {c})");
                }
            }
        }
    }
}

/// The initializer `name` holds the model's values unchanged (dims included).
fn check_same(inits: &HashMap<&str, &TensorProto>, t: &Trainer, name: &str) {
    let (d, w) = host(t, name);
    assert_eq!(
        inits[name].dims,
        d.iter().map(|&v| v as i64).collect::<Vec<_>>(),
        "{name}"
    );
    assert_eq!(values(inits[name]), w, "{name}");
}

fn ops(m: &ModelProto) -> HashSet<&str> {
    m.graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect()
}

#[test]
fn se_resnets_export_with_oihw_convolutions_and_running_statistics() {
    for (depth, stem, neck, batch) in [
        (10, Stem::Imagenet, NeckKind::Mtanet, None),
        (50, Stem::Small, NeckKind::Gap, Some(4)),
    ] {
        let dir = temp(&format!("onnx-se{depth}"));
        let t = checkpoint(&config(se_resnet(depth, stem), neck), &dir);
        let m = match batch {
            Some(n) => export(&dir, &["--batch", &n.to_string()]),
            None => export(&dir, &[]),
        };
        let inits = check_structure(&m, &t, &batch.map_or("N".into(), |n: usize| n.to_string()));
        check_conv(&inits, &t, "stem.conv.weight");
        check_conv(&inits, &t, "layer2.0.conv2.weight");
        check_conv(&inits, &t, "layer2.0.downsample.0.weight");
        check_same(&inits, &t, "layer1.0.bn1.running_var");
        check_same(&inits, &t, "head.expr.weight");
        // SE FCs as 1x1 convolutions: [out, in] with two unit axes.
        let (d, w) = host(&t, "layer1.0.se.fc1.weight");
        assert_eq!(
            inits["layer1.0.se.fc1.weight"].dims,
            [d[0] as i64, d[1] as i64, 1, 1]
        );
        assert_eq!(values(inits["layer1.0.se.fc1.weight"]), w);
        let o = ops(&m);
        assert_eq!(o.contains("MaxPool"), stem == Stem::Imagenet);
        assert_eq!(o.contains("GlobalMaxPool"), neck == NeckKind::Mtanet);
        if neck == NeckKind::Mtanet {
            check_conv(&inits, &t, "neck.avg_branch.weight");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn iresnet_exports_prelu_slopes_and_a_reordered_fc() {
    let dir = temp("onnx-iresnet");
    let t = checkpoint(&config(iresnet(), NeckKind::Mtanet), &dir);
    let m = export(&dir, &[]);
    let inits = check_structure(&m, &t, "N");
    check_conv(&inits, &t, "conv1.weight");
    check_conv(&inits, &t, "layer3.0.downsample.0.weight");
    check_same(&inits, &t, "features.running_mean");
    let (d, slopes) = host(&t, "layer1.1.prelu.weight");
    assert_eq!(inits["layer1.1.prelu.weight"].dims, [d[0] as i64, 1, 1]);
    assert_eq!(values(inits["layer1.1.prelu.weight"]), slopes);
    // The FC reads a 2x2 map of 64 channels: (h, w, c) columns -> (c, h, w).
    let (d, fc) = host(&t, "fc.weight");
    let got = values(inits["fc.weight"]);
    assert_eq!(got, layout::hwc_columns_to_chw(&fc, d[0], [2, 2, 64]));
    for (o, h, w, c) in [(0, 0, 0, 0), (3, 1, 0, 5), (15, 1, 1, 63)] {
        assert_eq!(
            got[o * 256 + (c * 2 + h) * 2 + w],
            fc[o * 256 + (h * 2 + w) * 64 + c]
        );
    }
    assert!(ops(&m).contains("PRelu"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn densenets_export_concatenations_and_average_pools() {
    let dir = temp("onnx-densenet");
    let backbone = DenseNetConfig {
        block_config: Some(vec![2, 2]),
        growth_rate: 4,
        init_features: 8,
        bn_size: 2,
        ..DenseNetConfig::default()
    };
    let t = checkpoint(&config(backbone.into(), NeckKind::Mtanet), &dir);
    let m = export(&dir, &[]);
    let inits = check_structure(&m, &t, "N");
    check_conv(&inits, &t, "features.conv0.weight");
    check_conv(&inits, &t, "features.denseblock2.denselayer2.conv2.weight");
    check_conv(&inits, &t, "features.transition1.conv.weight");
    check_same(&inits, &t, "features.norm5.running_var");
    let in_blocks = |op: &str| {
        let nodes = &m.graph.as_ref().unwrap().node;
        let named = |n: &&_| {
            let n: &mtaffect::export::onnx::proto::NodeProto = n;
            n.op_type == op && n.name.starts_with("features.")
        };
        nodes.iter().filter(named).count()
    };
    // One concatenation per dense layer, one average pool per transition
    // (the MTANet neck has a Concat of its own).
    assert_eq!((in_blocks("Concat"), in_blocks("AveragePool")), (4, 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vits_export_attention_as_standard_operators() {
    for (pooling, neck, opset) in [
        (Pooling::Cls, NeckKind::Mtanet, "17"),
        (Pooling::Mean, NeckKind::Gap, "18"),
    ] {
        let dir = temp(&format!("onnx-vit-{pooling:?}"));
        let t = checkpoint(&config(tiny_vit(pooling).into(), neck), &dir);
        let m = export(&dir, &["--opset", opset]);
        assert_eq!(m.opset_import[0].version.to_string(), opset);
        let inits = check_structure(&m, &t, "N");
        check_conv(&inits, &t, "patch_embed.proj.weight");
        check_same(&inits, &t, "cls_token");
        // q is the first third of the fused [3·D, D] qkv, transposed to [D, D] for MatMul.
        let (_, qkv) = host(&t, "blocks.1.attn.qkv.weight");
        let q = values(inits["blocks.1.attn.q.weight"]);
        assert_eq!(q, layout::transpose(&qkv[..32 * 32], 32, 32));
        let (_, b) = host(&t, "blocks.1.attn.qkv.bias");
        assert_eq!(values(inits["blocks.1.attn.v.bias"]), b[64..]);
        let o = ops(&m);
        for op in ["MatMul", "Softmax", "LayerNormalization", "Erf", "Expand"] {
            assert!(o.contains(op), "{op} missing: {o:?}");
        }
        assert_eq!(o.contains("ReduceMean"), pooling == Pooling::Mean);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn bad_options_are_refused_with_the_flag_named() {
    let dir = temp("onnx-refusals");
    checkpoint(&config(se_resnet(10, Stem::Small), NeckKind::Gap), &dir);
    let ckpt = dir.join("ckpt.safetensors").display().to_string();
    let out = dir.join("m.onnx").display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["export", "--checkpoint", &ckpt, "--onnx", &out];
        args.extend_from_slice(extra);
        let o = mtaffect(&args);
        assert!(!o.status.success());
        text(&o)
    };
    let e = run(&["--opset", "16"]);
    assert!(e.contains("--opset 16") && e.contains("17 to 21"), "{e}");
    let e = run(&["--batch", "0"]);
    assert!(e.contains("dynamic"), "{e}");
    assert!(!Path::new(&out).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
