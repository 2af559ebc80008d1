//! The command line end to end on a tiny synthetic set: train writes a run
//! directory, eval and predict read its checkpoint, a diverging run stops
//! with the last good checkpoint intact, and bad configs name the key.

use std::path::Path;

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, only_run, temp, text};

/// Generates the tiny synthetic set (5 videos of 12 frames, 32 pixels) into
/// `data` unless it is there, and returns a tiny model and run on it, runs
/// under `runs`.
fn tiny_args<'a>(data: &'a str, runs: &'a str) -> Vec<String> {
    if !Path::new(data)
        .join("training_set_annotations.txt")
        .is_file()
    {
        let args = [
            "synth", "--out", data, "--videos", "5", "--frames", "12", "--size", "32",
        ];
        let o = mtaffect(&args);
        assert!(o.status.success(), "{}", text(&o));
    }
    [
        "train",
        "--data",
        data,
        "--quiet",
        "--set",
        "data.image_size=32",
        "--set",
        "data.batch_size=8",
        "--set",
        "model.backbone.width_mult=0.125",
        "--set",
        "model.backbone.stem=small",
        "--set",
        "train.eval_every=2",
        "--set",
        "train.log_every=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--set".to_string(), format!("run.runs_dir={runs:?}")])
    .collect()
}

#[test]
fn train_eval_predict_roundtrip() {
    let dir = temp("cli-roundtrip");
    let (data, runs) = (dir.join("data"), dir.join("runs"));
    let (data_s, runs_s) = (data.display().to_string(), runs.display().to_string());
    let mut args = tiny_args(&data_s, &runs_s);
    args.extend(["--set".into(), "train.steps=4".into()]);
    let o = mtaffect(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("P_MTL"), "{}", text(&o));

    let run = only_run(&runs);
    for f in [
        "config.toml",
        "metrics.jsonl",
        "last.safetensors",
        "best.safetensors",
        "loss.png",
        "val.png",
    ] {
        assert!(run.join(f).is_file(), "missing {f} in {}", run.display());
    }
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"split\":\"train\""))
            .count(),
        4
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"split\":\"val\""))
            .count(),
        2
    );

    let best = run.join("best.safetensors");
    let o = mtaffect(&["eval", "--checkpoint", best.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("P_MTL"));
    let json = std::fs::read_to_string(run.join("best.eval.json")).unwrap();
    assert!(json.contains("\"p_mtl\""), "{json}");

    let preds = dir.join("preds.csv");
    let images = data.join("cropped_aligned");
    let o = mtaffect(&[
        "predict",
        "--checkpoint",
        best.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--out",
        preds.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(&preds).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("image,valence,arousal,expression,aus"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 5 * 12, "one row per frame");
    assert!(
        rows.iter().all(|r| r.split(',').count() == 16),
        "{}",
        rows[0]
    );

    // Resuming a finished run trains nothing more and keeps its results.
    let o = mtaffect(&["train", "--resume", run.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("finished 4 steps"), "{}", text(&o));

    // A new run (pooled neck instead of MTANet's) starts from the best
    // checkpoint: the report is printed and logged as the "init" record.
    let tuned = dir.join("tuned");
    let tuned_s = tuned.display().to_string();
    let mut args = tiny_args(&data_s, &tuned_s);
    args.extend(
        [
            "--set",
            "train.steps=1",
            "--set",
            "model.neck=\"gap\"",
            "--init-from",
        ]
        .map(String::from),
    );
    args.push(best.display().to_string());
    let o = mtaffect(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("tensors loaded") && text(&o).contains("neck.avg_branch.weight"),
        "{}",
        text(&o)
    );
    let log = std::fs::read_to_string(only_run(&tuned).join("metrics.jsonl")).unwrap();
    let init: serde_json::Value = serde_json::from_str(
        log.lines()
            .find(|l| l.contains("\"split\":\"init\""))
            .expect("an init record"),
    )
    .unwrap();
    assert!(init["loaded"].as_array().unwrap().len() > 20, "{init}");
    assert!(
        init["ignored"].to_string().contains("neck.max_branch.bias"),
        "{init}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let dir = temp("cli-nan");
    let (data, runs) = (dir.join("data"), dir.join("runs"));
    let (data_s, runs_s) = (data.display().to_string(), runs.display().to_string());
    let mut args = tiny_args(&data_s, &runs_s);
    // A sane rate for two steps (checkpoint at step 2), then an absurd one.
    for s in [
        "train.steps=12",
        "train.grad_clip=0",
        "optim={kind=\"sgd\",momentum=0.0}",
        "schedule={base_lr=1e-3,decay={kind=\"step\",step_size=2,gamma=1e30}}",
    ] {
        args.extend(["--set".into(), s.into()]);
    }
    let o = mtaffect(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success(), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("non-finite")
            && msg.contains("last good checkpoint")
            && msg.contains("last.safetensors"),
        "{msg}"
    );
    let last = only_run(&runs).join("last.safetensors");
    let o = mtaffect(&["eval", "--checkpoint", last.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "the kept checkpoint must load: {}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configs_name_the_file_and_key() {
    let dir = temp("cli-badcfg");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[model]\nstem = \"huge\"\n").unwrap();
    let o = mtaffect(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("bad.toml") && msg.contains("imagenet"),
        "{msg}"
    );

    let o = mtaffect(&["train", "--set", "train.device=tpu"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("train.device"), "{}", text(&o));

    let o = mtaffect(&["train", "--device", "cuda:0", "--set", "train.steps=1"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--device cpu"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn features_then_temporal_train_and_eval() {
    let dir = temp("cli-temporal");
    let (data, runs) = (dir.join("data"), dir.join("runs"));
    let (data_s, runs_s) = (data.display().to_string(), runs.display().to_string());
    let mut args = tiny_args(&data_s, &runs_s);
    args.extend(["--set".into(), "train.steps=2".into()]);
    let o = mtaffect(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    let best = only_run(&runs).join("best.safetensors");

    let feats = dir.join("features");
    let o = mtaffect(&[
        "features",
        "--checkpoint",
        best.to_str().unwrap(),
        "--out",
        feats.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("5 videos, 60 frames"), "{}", text(&o));
    let files: Vec<_> = std::fs::read_dir(&feats)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files.len(),
        5 + 2,
        "five videos and two annotation files: {files:?}"
    );
    let f = mtaffect::data::sequence::VideoFeatures::load(&feats.join("synth0000.safetensors"))
        .unwrap();
    assert_eq!(f.frames, (1..=12).collect::<Vec<u32>>());
    assert_eq!(f.features.len(), 12 * f.dim);

    // The frame model's outputs stored with the features score exactly what
    // `mtaffect eval` scores on the validation split.
    let o = mtaffect(&["eval", "--checkpoint", best.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(best.with_extension("eval.json")).unwrap())
            .unwrap();
    let opts = mtaffect::data::ReadOptions::default();
    let (samples, _) =
        mtaffect::data::read_mtl_annotations(&feats.join("validation_set_annotations.txt"), &opts)
            .unwrap();
    let set = mtaffect::data::sequence::SequenceSet::load(&feats, &samples, 12).unwrap();
    let outs: Vec<_> = set
        .videos
        .iter()
        .map(|v| {
            let h = v.frame_heads.clone().unwrap();
            mtaffect::train::HeadOutputs {
                va: h.va,
                expr: h.expr,
                au: h.au,
            }
        })
        .collect();
    let m = mtaffect::train::temporal::score(&set, &outs, 8, [1; 3]).unwrap();
    let want = eval["p_mtl"].as_f64().unwrap();
    assert!((m.p_mtl - want).abs() < 1e-9, "{} vs {want}", m.p_mtl);
    assert_eq!(m.samples, eval["samples"].as_u64().unwrap());

    let truns = dir.join("truns");
    let sets = [
        format!("data.features={:?}", feats.display().to_string()),
        format!("run.runs_dir={:?}", truns.display().to_string()),
        "run.name=\"lstm\"".into(),
        "run.quiet=true".into(),
        "data.chunk=5".into(),
        "data.lanes=2".into(),
        "data.eval_lanes=2".into(),
        "model.encoder=\"lstm\"".into(),
        "model.d_model=4".into(),
        "model.head_hidden=3".into(),
        "train.steps=4".into(),
        "train.eval_every=2".into(),
    ];
    let mut targs = vec!["temporal".to_string(), "train".into()];
    for s in &sets {
        targs.extend(["--set".into(), s.clone()]);
    }
    let o = mtaffect(&targs.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("best P_MTL") && text(&o).contains("smoothed"),
        "{}",
        text(&o)
    );
    let run = truns.join("lstm");
    let trained: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();

    // Evaluating the best checkpoint again reproduces the run's final scores.
    let best = run.join("best.safetensors");
    let o = mtaffect(&["temporal", "eval", "--checkpoint", best.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let mut again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("best.eval.json")).unwrap())
            .unwrap();
    let scored = again
        .as_object_mut()
        .unwrap()
        .remove("checkpoints")
        .unwrap();
    assert_eq!(scored, serde_json::json!([best.display().to_string()]));
    assert_eq!(trained, again);
    assert!(trained["raw"]["p_mtl"].is_number(), "{trained}");

    // A temporal seed set, and the ensemble of its runs.
    let mut sargs = targs.clone();
    sargs.extend(["--set".into(), "run.name=\"set\"".into()]);
    sargs.extend(["--seeds".into(), "2".into()]);
    let o = mtaffect(&sargs.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    let set = truns.join("set");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(set.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["seeds"], serde_json::json!([0, 1]));
    assert!(
        summary["metrics"]["val.p_mtl"]["final"]["sd"].is_number(),
        "{summary}"
    );
    let o = mtaffect(&["temporal", "eval", "--checkpoint", set.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let ens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(set.join("ensemble.eval.json")).unwrap())
            .unwrap();
    assert_eq!(ens["checkpoints"].as_array().unwrap().len(), 2, "{ens}");
    assert!(ens["smoothed"]["p_mtl"].is_number(), "{ens}");

    // Mistakes name what is wrong.
    let frame_ckpt = only_run(&runs).join("best.safetensors");
    let o = mtaffect(&[
        "temporal",
        "eval",
        "--checkpoint",
        frame_ckpt.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("not a temporal checkpoint"),
        "{}",
        text(&o)
    );
    let missing = format!("data.features={:?}", dir.join("nope").display().to_string());
    let o = mtaffect(&["temporal", "train", "--set", &missing]);
    assert!(
        !o.status.success() && text(&o).contains("mtaffect features"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `gan train`, `sample`, `gan judge` and a plain run mixing in the GAN's
/// faces, end to end on the tiny set.
#[test]
fn gan_train_sample_judge_and_mix() {
    let dir = temp("cli-gan");
    let (data, runs) = (dir.join("data"), dir.join("runs"));
    let data_s = data.display().to_string();
    let set = |kv: &[&str]| -> Vec<String> {
        kv.iter()
            .flat_map(|s| ["--set".to_string(), s.to_string()])
            .collect()
    };
    let shared = [
        format!("data.root={data_s:?}"),
        "data.image_size=32".into(),
        "data.batch_size=8".into(),
        "data.synth_videos=5".into(),
        "data.synth_frames=12".into(),
        "train.steps=3".into(),
        "train.log_every=1".into(),
        "train.eval_every=2".into(),
    ];
    let shared: Vec<&str> = shared.iter().map(String::as_str).collect();
    let gan_runs = format!("run.runs_dir={:?}", runs.join("gan").display().to_string());
    let mut args = vec!["gan".to_string(), "train".into(), "--quiet".into()];
    args.extend(set(&shared));
    args.extend(set(&[
        "generator.image_size=32",
        "generator.channels=16",
        "discriminator.backbone.width_mult=0.125",
        "discriminator.backbone.stem=small",
        "gan.loss=hinge",
        &gan_runs,
    ]));
    let o = mtaffect(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    let gan_run = only_run(&runs.join("gan"));
    for f in [
        "last.safetensors",
        "best.safetensors",
        "grid-expr.png",
        "grid-au.png",
        "grid-va.png",
        "samples-000002.png",
        "loss.png",
    ] {
        assert!(gan_run.join(f).is_file(), "missing {f}");
    }
    let ckpt = gan_run.join("last.safetensors");
    let grid = dir.join("va.png");
    let o = mtaffect(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--grid",
        "va",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // 5 x 5 faces of 32 px with 2 px gutters.
    assert!(text(&o).contains("172x172"), "{}", text(&o));
    let o = mtaffect(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--grid",
        "pose",
        "--out",
        "x.png",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("expr, au, va"),
        "{}",
        text(&o)
    );

    // A plain run that mixes in the generator's faces, then judges them.
    let plain_runs = format!(
        "run.runs_dir={:?}",
        runs.join("plain").display().to_string()
    );
    let mix = format!("gan_mix.checkpoint={:?}", ckpt.display().to_string());
    let mut args = vec!["train".to_string(), "--quiet".into()];
    args.extend(set(&shared));
    args.extend(set(&[
        "model.backbone.width_mult=0.125",
        "model.backbone.stem=small",
        &plain_runs,
        &mix,
        "gan_mix.ratio=0.5",
    ]));
    let o = mtaffect(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    let judge = only_run(&runs.join("plain")).join("last.safetensors");
    let out = dir.join("judge.json");
    let o = mtaffect(&[
        "gan",
        "judge",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--judge",
        judge.to_str().unwrap(),
        "--per-class",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("/24 = "), "{}", text(&o));
    let json = std::fs::read_to_string(&out).unwrap();
    assert!(
        json.contains("\"confusion\"") && json.contains("\"rate\""),
        "{json}"
    );
    // A plain checkpoint is not a GAN checkpoint.
    let o = mtaffect(&[
        "sample",
        "--checkpoint",
        judge.to_str().unwrap(),
        "--out",
        "x.png",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("GAN checkpoint"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
