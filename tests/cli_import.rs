//! `mtaffect import` end to end: the reduced IResNet fixture (written by
//! scripts/torch_iresnet.py) becomes a checkpoint that `train --init-from`
//! fine-tunes on the synthetic set; a timm SE-ResNet-50 prints the table
//! its fine-tuning config needs; an unknown architecture, a flag of another
//! architecture and a missing file are errors naming them.

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, temp, text};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/iresnet18_w0125_32px.safetensors"
);
const SERESNET50: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/seresnet50_w00625_48px.safetensors"
);
const RESNET18: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/resnet18_w00625_48px.safetensors"
);

#[test]
fn import_then_fine_tune_from_it() {
    let dir = temp("cli-import");
    let (data, ckpt, runs) = (
        dir.join("data"),
        dir.join("iresnet.safetensors"),
        dir.join("runs"),
    );
    let o = mtaffect(&[
        "import",
        "--arch",
        "iresnet18",
        "--from",
        FIXTURE,
        "--out",
        ckpt.to_str().unwrap(),
        "--width-mult",
        "0.125",
        "--embedding",
        "32",
        "--image-size",
        "32",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("mapped")
            && out.contains("layer1.0.bn1.num_batches_tracked")
            && out.contains("IResNet-18 x0.125"),
        "{out}"
    );
    assert!(out.contains("kind = \"iresnet\""), "{out}");
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
    let cfg = dir.join("finetune.toml");
    std::fs::write(
        &cfg,
        "[data]\nimage_size = 32\nbatch_size = 6\n\n[train]\nsteps = 2\neval_every = 2\n\n\
         [model.backbone]\nkind = \"iresnet\"\ndepth = 18\nwidth_mult = 0.125\nembedding = 32\nimage_size = 32\n",
    )
    .unwrap();
    let o = mtaffect(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--init-from",
        ckpt.to_str().unwrap(),
        "--quiet",
        "--set",
        &format!("run.runs_dir={:?}", runs.display().to_string()),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // The whole backbone loads; the neck's and heads' tensors start from the seed.
    assert!(
        out.contains(&format!("{mapped} tensors loaded,"))
            && out.contains("0 in the file ignored, 0 shape mismatches"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_architectures_and_missing_files_are_errors() {
    let dir = temp("cli-import-errors");
    let out = dir.join("x.safetensors");
    let o = mtaffect(&[
        "import",
        "--arch",
        "resnet9",
        "--from",
        FIXTURE,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("unknown architecture 'resnet9'")
            && text(&o).contains("iresnet50")
            && text(&o).contains("seresnet50"),
        "{}",
        text(&o)
    );
    // The IResNet's size flags mean nothing to a ResNet.
    let o = mtaffect(&[
        "import",
        "--arch",
        "resnet18",
        "--from",
        RESNET18,
        "--out",
        out.to_str().unwrap(),
        "--embedding",
        "32",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--width-mult only"), "{}", text(&o));
    let o = mtaffect(&[
        "import",
        "--arch",
        "iresnet50",
        "--from",
        "/nonexistent.safetensors",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("/nonexistent.safetensors"),
        "{}",
        text(&o)
    );
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_timm_seresnet50_imports_with_its_se_rounding() {
    let dir = temp("cli-import-seresnet");
    let ckpt = dir.join("se50.safetensors");
    let o = mtaffect(&[
        "import",
        "--arch",
        "seresnet50",
        "--from",
        SERESNET50,
        "--out",
        ckpt.to_str().unwrap(),
        "--width-mult",
        "0.0625",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("conv1.weight -> stem.conv.weight")
            && out.contains("SE-ResNet-50 x0.0625")
            && out.contains("kind = \"se_resnet\"")
            && out.contains("se_divisor = 8"),
        "{out}"
    );
    assert!(ckpt.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
