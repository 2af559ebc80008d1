//! `mtaffect import` end to end: each reduced fixture (scripts/torch_iresnet.py,
//! scripts/torch_densenet.py, scripts/torch_resnet.py) becomes a checkpoint
//! that `train --init-from` fine-tunes on the synthetic set (the DenseNet
//! through its shipped config; timm's SE-ResNet-50 with the table the
//! import prints); an unknown architecture, a size flag of another
//! architecture and a missing file are errors naming them.

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, sets, temp, text};

const IRESNET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/iresnet18_w0125_32px.safetensors"
);

const SERESNET50: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/seresnet50_w00625_48px.safetensors"
);
const DENSENET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/densenet_b2222_k8_40x72.safetensors"
);

/// Imports with `import` (`--arch`, `--from` and size flags), then trains
/// two steps from the checkpoint on 32 px synthetic faces with the config
/// `toml` and `--set`s `extra`: the whole backbone must load, and only the
/// neck's and heads' tensors start from the seed. Returns the import's
/// output.
fn import_then_fine_tune(tag: &str, import: &[&str], toml: &str, extra: &[&str]) -> String {
    let dir = temp(tag);
    let (data, ckpt, runs, cfg) = (
        dir.join("data"),
        dir.join("imported.safetensors"),
        dir.join("runs"),
        dir.join("finetune.toml"),
    );
    let mut args = vec!["import", "--out", ckpt.to_str().unwrap()];
    args.extend(import);
    let o = mtaffect(&args);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let mapped: String = out
        .split(" tensors mapped")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .unwrap()
        .to_string();

    let o = mtaffect(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--videos",
        "3",
        "--frames",
        "8",
        "--size",
        "32",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(&cfg, toml).unwrap();
    let mut args: Vec<String> = [
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--init-from",
        ckpt.to_str().unwrap(),
        "--quiet",
    ]
    .map(String::from)
    .to_vec();
    let mut kv: Vec<String> = [
        "data.image_size=32",
        "data.batch_size=6",
        "train.steps=2",
        "train.eval_every=2",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    kv.push(format!("run.runs_dir={:?}", runs.display().to_string()));
    args.extend(sets(&kv));
    let o = mtaffect(&args);
    let trained = text(&o);
    assert!(o.status.success(), "{trained}");
    assert!(
        trained.contains(&format!("{mapped} tensors loaded,"))
            && trained.contains("0 in the file ignored, 0 shape mismatches"),
        "{trained}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

#[test]
fn import_an_iresnet_then_fine_tune_from_it() {
    let out = import_then_fine_tune(
        "cli-import-iresnet",
        &[
            "--arch",
            "iresnet18",
            "--from",
            IRESNET,
            "--width-mult",
            "0.125",
            "--embedding",
            "32",
            "--image-size",
            "32",
        ],
        // The file must agree with itself before the `--set`s apply.
        "[data]\nimage_size = 32\n\n[model.backbone]\nkind = \"iresnet\"\ndepth = 18\n\
         width_mult = 0.125\nembedding = 32\nimage_size = 32\n",
        &[],
    );
    assert!(
        out.contains("mapped")
            && out.contains("layer1.0.bn1.num_batches_tracked")
            && out.contains("IResNet-18 x0.125")
            && out.contains("kind = \"iresnet\""),
        "{out}"
    );
}

#[test]
fn import_a_densenet_then_fine_tune_the_shipped_config_from_it() {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/densenet-synthetic-cpu.toml"
    );
    let out = import_then_fine_tune(
        "cli-import-densenet",
        &[
            "--arch",
            "densenet121",
            "--from",
            DENSENET,
            "--growth-rate",
            "8",
            "--init-features",
            "16",
            "--bn-size",
            "2",
            "--block-config",
            "2,2,2,2",
        ],
        &std::fs::read_to_string(shipped).unwrap(),
        &[
            "model.backbone.block_config=[2, 2, 2, 2]",
            "model.backbone.growth_rate=8",
            "model.backbone.init_features=16",
            "model.backbone.bn_size=2",
        ],
    );
    assert!(
        out.contains("classifier.weight")
            && out.contains("DenseNet-21 growth_rate 8")
            && out.contains("kind = \"densenet\"")
            && out.contains("block_config = [2, 2, 2, 2]"),
        "{out}"
    );
}

#[test]
fn import_a_timm_seresnet50_then_fine_tune_from_it() {
    let out = import_then_fine_tune(
        "cli-import-seresnet",
        &[
            "--arch",
            "seresnet50",
            "--from",
            SERESNET50,
            "--width-mult",
            "0.0625",
        ],
        "[model.backbone]\nkind = \"se_resnet\"\ndepth = 50\nwidth_mult = 0.0625\n\
         se_reduction = 16\nse_divisor = 8\nstem = \"imagenet\"\n",
        &[],
    );
    assert!(
        out.contains("conv1.weight -> stem.conv.weight")
            && out.contains("SE-ResNet-50 x0.0625")
            && out.contains("se_divisor = 8"),
        "{out}"
    );
}

#[test]
fn unknown_architectures_foreign_flags_and_missing_files_are_errors() {
    let dir = temp("cli-import-errors");
    let out = dir.join("x.safetensors");
    let import = |extra: &[&str]| {
        let mut args = vec!["import", "--out", out.to_str().unwrap()];
        args.extend(extra);
        let o = mtaffect(&args);
        assert!(!o.status.success());
        text(&o)
    };
    let e = import(&["--arch", "resnet9", "--from", IRESNET]);
    assert!(
        e.contains("unknown architecture 'resnet9'")
            && e.contains("iresnet50")
            && e.contains("seresnet50")
            && e.contains("vit_base_patch16")
            && e.contains("densenet121"),
        "{e}"
    );
    // A size flag of another family is refused, not ignored.
    let e = import(&[
        "--arch",
        "densenet121",
        "--from",
        DENSENET,
        "--width-mult",
        "0.5",
    ]);
    assert!(
        e.contains("--width-mult does not apply to --arch densenet121"),
        "{e}"
    );
    let e = import(&["--arch", "iresnet50", "--from", "/nonexistent.safetensors"]);
    assert!(e.contains("/nonexistent.safetensors"), "{e}");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
