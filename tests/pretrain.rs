//! Masked-autoencoder pretraining end to end through the command line, on
//! a tiny ViT: a run on the synthetic set writes reconstruction grids, a
//! falling loss and checkpoints; a run on a plain folder of images needs
//! no annotation file; a fine-tuning run started from the pretraining
//! checkpoint loads the encoder under the ViT backbone's names and leaves
//! the decoder out; bad settings are refused naming the key.

use serde_json::Value;
use std::path::Path;

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, sets, temp, text};

/// A 1-block, 16-wide ViT on 8x8 patches of 32x32 images, a 1-block
/// decoder, `steps` steps, evaluated every 4.
fn tiny(runs: &Path, steps: u64) -> Vec<String> {
    vec![
        "data.image_size=32".into(),
        "data.batch_size=8".into(),
        "encoder.depth=1".into(),
        "encoder.width=16".into(),
        "encoder.heads=2".into(),
        "encoder.patch=8".into(),
        "mae.decoder_depth=1".into(),
        "mae.decoder_width=16".into(),
        "mae.decoder_heads=2".into(),
        "eval.images=8".into(),
        "eval.grid_rows=3".into(),
        "schedule.warmup_steps=0".into(),
        "schedule.decay={ kind = \"constant\" }".into(),
        format!("train.steps={steps}"),
        "train.eval_every=4".into(),
        "train.log_every=1".into(),
        format!("run.runs_dir={:?}", runs.display().to_string()),
        "run.name=\"r\"".into(),
    ]
}

/// The `split` records of a run's log, in order.
fn records(run: &Path, split: &str) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["split"] == split)
        .collect()
}

fn png_size(path: &Path) -> (u32, u32) {
    let d = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let r = d.read_info().unwrap();
    (r.info().width, r.info().height)
}

#[test]
fn pretraining_on_the_synthetic_set_then_fine_tuning_from_it() {
    let dir = temp("pretrain-synth");
    let runs = dir.join("runs");
    let mut args = vec!["pretrain".to_string(), "--quiet".into()];
    let mut kv = tiny(&runs, 12);
    kv.extend([
        format!("data.root={:?}", dir.join("data").display().to_string()),
        "data.synth_videos=5".into(),
        "data.synth_frames=12".into(),
        "schedule.base_lr=3e-3".into(),
    ]);
    args.extend(sets(&kv));
    let o = mtaffect(&args);
    assert!(o.status.success(), "{}", text(&o));
    let run = runs.join("r");
    for f in [
        "last.safetensors",
        "best.safetensors",
        "reconstruction-000012.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing: {}", text(&o));
    }
    // Three columns (original, masked, reconstruction) and three rows of
    // 32-pixel images with 2-pixel gutters.
    let side = |n: u32| n * (32 + 2) + 2;
    assert_eq!(
        png_size(&run.join("reconstruction-000004.png")),
        (side(3), side(3))
    );
    let train = records(&run, "train");
    let loss = |v: &Value| v["loss"].as_f64().unwrap();
    let (first, last) = (loss(&train[0]), loss(&train[train.len() - 1]));
    assert!(last < first, "the loss did not fall: {first} -> {last}");
    assert_eq!(records(&run, "val").len(), 3);
    assert!(
        text(&o).contains("held-out reconstruction loss"),
        "{}",
        text(&o)
    );

    // Fine-tuning: the same encoder keys under [model.backbone].
    let cfg = dir.join("finetune.toml");
    std::fs::write(
        &cfg,
        "[model]\nneck = \"gap\"\n[model.backbone]\nkind = \"vit\"\ndepth = 1\nwidth = 16\nheads = 2\npatch = 8\npooling = \"mean\"\n",
    )
    .unwrap();
    let mut args = vec![
        "train".to_string(),
        "--quiet".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--init-from".into(),
        run.join("best.safetensors").display().to_string(),
    ];
    args.extend(sets(&[
        format!("data.root={:?}", dir.join("data").display().to_string()),
        "data.synth_videos=5".into(),
        "data.synth_frames=12".into(),
        "data.image_size=32".into(),
        "data.batch_size=8".into(),
        "train.steps=2".into(),
        "train.eval_every=2".into(),
        format!("run.runs_dir={:?}", runs.display().to_string()),
        "run.name=\"ft\"".into(),
    ]));
    let o = mtaffect(&args);
    assert!(o.status.success(), "{}", text(&o));
    let init = &records(&runs.join("ft"), "init")[0];
    let has = |key: &str, name: &str| {
        init[key]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str() == Some(name))
    };
    for n in [
        "cls_token",
        "patch_embed.proj.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.mlp.fc2.bias",
    ] {
        assert!(has("loaded", n), "{n} not loaded: {init}");
    }
    for n in [
        "mask_token",
        "decoder_pred.weight",
        "decoder_blocks.0.norm1.weight",
        "norm.weight",
    ] {
        assert!(has("ignored", n), "{n} not reported unused: {init}");
    }
    // Mean pooling trains a fresh fc_norm, as MAE's fine-tuning does.
    assert!(has("initialised", "fc_norm.weight"), "{init}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pretraining_reads_any_folder_of_images() {
    let dir = temp("pretrain-folder");
    let images = dir.join("faces");
    let mut rng = 7u32;
    for (i, sub) in ["a", "a", "b/c", "b/c", "b/c", "d", "d", "d", "d"]
        .iter()
        .enumerate()
    {
        let folder = images.join(sub);
        std::fs::create_dir_all(&folder).unwrap();
        let img = image::RgbImage::from_fn(40, 40, |x, y| {
            rng = rng.wrapping_mul(1664525).wrapping_add(1013904223);
            image::Rgb([(x * 6) as u8, (y * 6) as u8, (rng >> 24) as u8])
        });
        let ext = if i % 2 == 0 { "png" } else { "jpg" };
        img.save(folder.join(format!("face{i}.{ext}"))).unwrap();
    }
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    let runs = dir.join("runs");
    let mut args = vec![
        "pretrain".to_string(),
        "--images".into(),
        images.display().to_string(),
    ];
    args.extend(sets(&tiny(&runs, 4)));
    let o = mtaffect(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("9 train / 5 eval images"), "{}", text(&o));
    assert!(runs.join("r/reconstruction-000004.png").is_file());

    // A folder without images is refused, naming it; nothing is generated.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut args = vec![
        "pretrain".to_string(),
        "--images".into(),
        empty.display().to_string(),
    ];
    args.extend(sets(&tiny(&dir.join("runs2"), 4)));
    let o = mtaffect(&args);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no .jpg, .jpeg or .png") && text(&o).contains("empty"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn supervised_training_refuses_a_folder_without_labels() {
    let dir = temp("pretrain-refuse");
    let o = mtaffect(&[
        "train",
        "--set",
        "data.source=\"folder\"",
        "--set",
        &format!("data.root={:?}", dir.display().to_string()),
        "--set",
        &format!("run.runs_dir={:?}", dir.join("runs").display().to_string()),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("mtaffect pretrain"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
