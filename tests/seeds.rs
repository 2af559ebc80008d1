//! Seed sets, ensembles and comparisons from the command line, on a tiny
//! synthetic set: `--seeds` trains one run per seed and summarises them
//! (checked against the runs' own logs by hand), a seed set resumes, an
//! ensemble of two identical checkpoints scores exactly as one, and two
//! seed sets of one config are "not distinguishable".

use std::path::Path;

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, temp, text};

/// A tiny frame-model run on `data` (generated on first use), runs under `runs`.
fn tiny(data: &Path, runs: &Path, extra: &[&str]) -> Vec<String> {
    if !data.join("training_set_annotations.txt").is_file() {
        let d = data.to_str().unwrap();
        let o = mtaffect(&[
            "synth", "--out", d, "--videos", "5", "--frames", "12", "--size", "32",
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let sets = [
        "data.image_size=32",
        "data.batch_size=8",
        "model.backbone.width_mult=0.125",
        "model.backbone.stem=small",
        "train.steps=4",
        "train.eval_every=2",
        "train.log_every=1",
    ];
    let mut args = vec![
        "train".to_string(),
        "--data".into(),
        data.display().to_string(),
    ];
    args.push("--quiet".into());
    for s in sets {
        args.extend(["--set".into(), s.into()]);
    }
    args.extend([
        "--set".into(),
        format!("run.runs_dir={:?}", runs.display().to_string()),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_ok(args: &[String]) -> String {
    let o = mtaffect(args);
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The last `val` record's P_MTL in a run's log.
fn final_p_mtl(run: &Path) -> f64 {
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|r| r["split"] == "val")
        .unwrap()["p_mtl"]
        .as_f64()
        .unwrap()
}

#[test]
fn a_seed_set_trains_summarises_resumes_and_ensembles() {
    let dir = temp("seeds");
    let (data, runs) = (dir.join("data"), dir.join("runs"));
    let out = run_ok(&tiny(
        &data,
        &runs,
        &["--seeds", "2", "--set", "run.name=\"a\""],
    ));
    let a = runs.join("a");
    assert!(
        out.contains("val.p_mtl") && out.contains("summary.json"),
        "{out}"
    );

    // One run per seed, each with its own seed and the set's shared data.
    for seed in [0, 1] {
        let cfg = std::fs::read_to_string(a.join(format!("seed-{seed}/config.toml"))).unwrap();
        assert!(cfg.contains(&format!("seed = {seed}\n")), "{cfg}");
        assert!(cfg.contains("synth_seed = 0\n"), "{cfg}");
    }
    let p: Vec<f64> = [0, 1]
        .iter()
        .map(|s| final_p_mtl(&a.join(format!("seed-{s}"))))
        .collect();
    assert_ne!(p[0], p[1], "the seed drives the run");

    // The summary, checked by hand against the runs' logs.
    let summary = json(&a.join("summary.json"));
    let m = &summary["metrics"]["val.p_mtl"]["final"];
    let mean = (p[0] + p[1]) / 2.0;
    let sd = (p[0] - p[1]).abs() / 2f64.sqrt();
    assert_eq!(m["values"], serde_json::json!(p));
    assert!((m["mean"].as_f64().unwrap() - mean).abs() < 1e-12, "{m}");
    assert!((m["sd"].as_f64().unwrap() - sd).abs() < 1e-12, "{m}");
    assert_eq!(m["min"].as_f64().unwrap(), p[0].min(p[1]));
    assert_eq!(m["max"].as_f64().unwrap(), p[0].max(p[1]));

    // Resume: a finished run is read as it is, a lost one trains again, and
    // the summary comes out the same.
    std::fs::remove_dir_all(a.join("seed-1")).unwrap();
    std::fs::remove_file(a.join("summary.json")).unwrap();
    let a_s = a.display().to_string();
    run_ok(&[
        "train".into(),
        "--quiet".into(),
        "--resume".into(),
        a_s.clone(),
    ]);
    assert_eq!(json(&a.join("summary.json")), summary);

    // An ensemble of a checkpoint with itself scores exactly as the one.
    let best = a.join("seed-0/best.safetensors");
    let best_s = best.display().to_string();
    run_ok(&["eval".into(), "--checkpoint".into(), best_s.clone()]);
    let one = json(&best.with_extension("eval.json"));
    let two_path = dir.join("two.json").display().to_string();
    let both = ["--checkpoint".to_string(), best_s.clone()];
    let mut args = vec!["eval".to_string()];
    args.extend(both.iter().cloned().chain(both.iter().cloned()));
    args.extend(["--out".into(), two_path.clone()]);
    let out = run_ok(&args);
    assert!(out.contains("ensemble of 2 checkpoints"), "{out}");
    let two = json(Path::new(&two_path));
    assert_eq!(two["checkpoints"].as_array().unwrap().len(), 2);
    let scores = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("checkpoints");
        v
    };
    assert_eq!(scores(two), scores(one));

    // A seed set named as the checkpoint is the ensemble of its runs' best.
    run_ok(&["eval".into(), "--checkpoint".into(), a_s.clone()]);
    let ens = json(&a.join("ensemble.eval.json"));
    assert_eq!(ens["checkpoints"].as_array().unwrap().len(), 2, "{ens}");
    assert!(ens["p_mtl"].is_number());
    let o = mtaffect(&[
        "eval",
        "--checkpoint",
        &best_s,
        "--checkpoint",
        &a.join("seed-1/best.safetensors").display().to_string(),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("--out"),
        "{}",
        text(&o)
    );

    // Predictions from the ensemble: one row per image.
    let preds = dir.join("preds.txt");
    run_ok(&[
        "predict".into(),
        "--checkpoint".into(),
        a_s.clone(),
        "--images".into(),
        data.join("cropped_aligned/synth0000").display().to_string(),
        "--out".into(),
        preds.display().to_string(),
    ]);
    let rows = std::fs::read_to_string(&preds).unwrap().lines().count();
    assert_eq!(rows, 1 + 12, "header and 12 frames");

    // Another seed set of the same config: not distinguishable from the first.
    run_ok(&tiny(
        &data,
        &runs,
        &["--seeds", "2,3", "--set", "run.name=\"b\""],
    ));
    let b_s = runs.join("b").display().to_string();
    let out = run_ok(&["compare".into(), a_s.clone(), b_s]);
    assert!(out.contains("not distinguishable"), "{out}");
    let o = mtaffect(&["compare", &a_s, &a_s, "--metric", "nope"]);
    assert!(
        !o.status.success() && text(&o).contains("val.p_mtl"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
