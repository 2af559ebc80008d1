//! The DenseNet backbone in the multi-task network: a small one learns on
//! the synthetic face set on CPU through the MTANet neck, its config keys
//! are checked (against the data too), and through the command line the
//! reduced torchvision fixture is imported and the shipped config
//! fine-tunes from it.

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, sets, temp, text};

#[path = "common/synth_loader.rs"]
mod synth_loader;
use mtaffect::data::synth::SynthConfig;
use mtaffect::model::{DenseNetConfig, NeckKind, NetConfig};
use mtaffect::optim::{AdamConfig, LrSchedule};
use mtaffect::train::{ConfigFile, OptimConfig, TrainConfig, Trainer};
use synth_loader::synthetic_train_loader;

const SIZE: usize = 32;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/densenet_b2222_k8_40x72.safetensors"
);

fn config() -> TrainConfig {
    let mut c = TrainConfig::default();
    c.data.image_size = SIZE;
    c.data.batch_size = 12;
    c.model = NetConfig {
        backbone: DenseNetConfig {
            block_config: Some(vec![2, 2, 2, 2]),
            growth_rate: 8,
            init_features: 16,
            bn_size: 2,
            dropout: 0.1,
            ..DenseNetConfig::default()
        }
        .into(),
        neck: NeckKind::Mtanet,
        dropout: 0.0,
        ..NetConfig::default()
    };
    c.optim = OptimConfig::Adam(AdamConfig::default());
    c.schedule = LrSchedule::constant(3e-3);
    c
}

#[test]
fn a_small_densenet_learns_the_synthetic_faces_on_cpu() {
    let dir = temp("densenet-learn");
    let synth = SynthConfig {
        videos: 4,
        frames_per_video: 12,
        image_size: SIZE,
        seed: 5,
        val_fraction: 0.0,
        ..Default::default()
    };
    let cfg = config();
    let loader = synthetic_train_loader(&dir, &synth, cfg.data.batch_size, 3);
    let mut t = Trainer::new(&cfg).unwrap();
    assert_eq!(
        t.config.model.backbone.to_string(),
        "DenseNet-21 growth_rate 8 init_features 16 bn_size 2"
    );
    let mut losses = Vec::new();
    for epoch in 0..10 {
        for b in loader.epoch(epoch, 0) {
            losses.push(t.step(&b.unwrap()).unwrap().loss);
        }
    }
    let k = 4;
    let first: f64 = losses[..k].iter().sum::<f64>() / k as f64;
    let last: f64 = losses[losses.len() - k..].iter().sum::<f64>() / k as f64;
    assert!(
        losses.len() >= 30 && last < 0.8 * first,
        "loss did not fall enough over {} steps: {first:.3} -> {last:.3}",
        losses.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_keys_are_checked_against_the_data() {
    let load = |data: &str, backbone: &str| {
        let text = format!("[data]\n{data}\n\n[model.backbone]\nkind = \"densenet\"\n{backbone}");
        TrainConfig::from_toml(&text, "x.toml")
    };
    let c = load("image_size = 112", "").unwrap();
    assert_eq!(c.model.backbone.to_string(), "DenseNet-121");
    let c = load("image_size = 112", "depth = 169\n").unwrap();
    assert_eq!(c.model.backbone.to_string(), "DenseNet-169");
    let e = load("image_size = 112", "depth = 161\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.backbone.depth = 161"), "{e}");
    let e = load("image_size = 112", "block_config = []\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.backbone.block_config = []"), "{e}");
    // Four blocks halve a 16 px image's 4 px stem map below one pool window.
    let e = load("image_size = 16", "").unwrap_err().to_string();
    assert!(
        e.contains("data.image_size = 16") && e.contains("at least 29"),
        "{e}"
    );
    // Two blocks have one transition: 16 px is enough.
    load("image_size = 16", "block_config = [2, 2]\n").unwrap();
}

#[test]
fn import_then_fine_tune_the_shipped_config_from_it() {
    let dir = temp("densenet-cli");
    let (data, ckpt, runs) = (
        dir.join("data"),
        dir.join("densenet.safetensors"),
        dir.join("runs"),
    );
    let sizes = [
        "--growth-rate",
        "8",
        "--init-features",
        "16",
        "--bn-size",
        "2",
        "--block-config",
        "2,2,2,2",
    ];
    let mut args = vec![
        "import",
        "--arch",
        "densenet121",
        "--from",
        FIXTURE,
        "--out",
        ckpt.to_str().unwrap(),
    ];
    args.extend(sizes);
    let o = mtaffect(&args);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("classifier.weight")
            && out.contains("DenseNet-21 growth_rate 8")
            && out.contains("kind = \"densenet\"")
            && out.contains("block_config = [2, 2, 2, 2]"),
        "{out}"
    );
    let mapped = out
        .split(" tensors mapped")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .unwrap()
        .to_string();

    // A size flag of another family is refused, not ignored.
    let o = mtaffect(&[
        "import",
        "--arch",
        "densenet121",
        "--from",
        FIXTURE,
        "--out",
        dir.join("x.safetensors").to_str().unwrap(),
        "--width-mult",
        "0.5",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--width-mult does not apply to --arch densenet121"),
        "{}",
        text(&o)
    );

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
    let mut args: Vec<String> = [
        "train",
        "--config",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/densenet-synthetic-cpu.toml"
        ),
        "--data",
        data.to_str().unwrap(),
        "--init-from",
        ckpt.to_str().unwrap(),
        "--quiet",
    ]
    .map(String::from)
    .to_vec();
    args.extend(sets(&[
        "data.image_size=32".into(),
        "data.batch_size=6".into(),
        "train.steps=2".into(),
        "train.eval_every=2".into(),
        "model.backbone.block_config=[2, 2, 2, 2]".into(),
        "model.backbone.growth_rate=8".into(),
        "model.backbone.init_features=16".into(),
        "model.backbone.bn_size=2".into(),
        format!("run.runs_dir={:?}", runs.display().to_string()),
    ]));
    let o = mtaffect(&args);
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
