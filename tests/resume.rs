//! Every trainer resumes exactly: a run killed with SIGKILL once it has
//! written a checkpoint, then continued with `--resume`, logs the same
//! losses and validation scores, bit for bit, as the same run left alone.
//! The frame, GAN and temporal (stateful LSTM, checkpointed mid-epoch)
//! trainers, each on a tiny model through the command line.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, temp, text};
use std::time::{Duration, Instant};

const STEPS: u64 = 16;

/// `--set` pairs for each `key=value`.
fn sets(kv: &[String]) -> Vec<String> {
    kv.iter()
        .flat_map(|s| ["--set".to_string(), s.clone()])
        .collect()
}

/// The run settings every test shares: `STEPS` steps, a checkpoint every 3
/// (so the kill lands mid-epoch), a log line every step.
fn run_sets(runs: &Path) -> Vec<String> {
    vec![
        format!("train.steps={STEPS}"),
        "train.eval_every=3".into(),
        "train.log_every=1".into(),
        format!("run.runs_dir={:?}", runs.display().to_string()),
        "run.name=\"r\"".into(),
    ]
}

/// The tiny synthetic set and frame model of the frame and GAN runs.
fn data_sets(data: &Path) -> Vec<String> {
    vec![
        format!("data.root={:?}", data.display().to_string()),
        "data.image_size=32".into(),
        "data.batch_size=8".into(),
        "data.synth_videos=5".into(),
        "data.synth_frames=12".into(),
    ]
}

/// Each logged record but the timings, keyed by (split, step); a step logged
/// again after a resume replaces the earlier line.
fn records(run: &Path) -> BTreeMap<(String, u64), Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("images_per_s");
        let split = o["split"].as_str().unwrap().to_string();
        out.insert((split, o["step"].as_u64().unwrap()), v);
    }
    out
}

/// Runs `command` + `args` to the end in `<dir>/full`; runs it again in
/// `<dir>/killed`, killing it (SIGKILL) as soon as it has written a
/// checkpoint, then resumes it; both runs must log the same records.
fn killed_and_resumed_matches_uninterrupted(dir: &Path, command: &[&str], args: &[String]) {
    let cmd: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    let full_runs = dir.join("full");
    let mut full = cmd.clone();
    full.extend(sets(args));
    full.extend(sets(&run_sets(&full_runs)));
    let o = mtaffect(&full);
    assert!(o.status.success(), "{}", text(&o));

    let killed_runs = dir.join("killed");
    let run = killed_runs.join("r");
    let mut killed = cmd.clone();
    killed.extend(sets(args));
    killed.extend(sets(&run_sets(&killed_runs)));
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtaffect"))
        .args(&killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !run.join("last.safetensors").is_file() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before writing a checkpoint"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let mut resume = cmd;
    resume.extend(["--resume".into(), run.display().to_string()]);
    let o = mtaffect(&resume);
    assert!(o.status.success(), "{}", text(&o));
    let from: u64 = text(&o)
        .split("steps from step ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no start step in: {}", text(&o)));
    assert!(0 < from && from < STEPS, "resumed from step {from}");

    let (want, got) = (records(&full_runs.join("r")), records(&run));
    assert_eq!(want.len(), got.len(), "{:?}", got.keys());
    for (key, w) in &want {
        assert_eq!(Some(w), got.get(key), "{key:?}");
    }
    assert!(want.keys().any(|(s, _)| s == "val"));
}

#[test]
fn a_killed_frame_run_resumes_exactly() {
    let dir = temp("resume-frame");
    let mut args = data_sets(&dir.join("data"));
    args.extend([
        "model.width_mult=0.125".into(),
        "model.stem=\"small\"".into(),
    ]);
    killed_and_resumed_matches_uninterrupted(&dir, &["train"], &args);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_gan_run_resumes_exactly() {
    let dir = temp("resume-gan");
    let mut args = data_sets(&dir.join("data"));
    args.extend([
        "generator.image_size=32".into(),
        "generator.channels=16".into(),
        "discriminator.width_mult=0.125".into(),
        "discriminator.stem=\"small\"".into(),
        "gan.select_per_class=2".into(),
        "gan.d_steps_per_g_step=2".into(),
        "gan.instance_noise=0.1".into(),
    ]);
    killed_and_resumed_matches_uninterrupted(&dir, &["gan", "train"], &args);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_temporal_run_resumes_exactly() {
    let dir = temp("resume-temporal");
    // A frame model and its features to train on.
    let frame_runs = dir.join("frame");
    let mut args = vec!["train".to_string()];
    args.extend(sets(&data_sets(&dir.join("data"))));
    args.extend(sets(&[
        "model.width_mult=0.125".into(),
        "model.stem=\"small\"".into(),
        "train.steps=2".into(),
        format!("run.runs_dir={:?}", frame_runs.display().to_string()),
        "run.name=\"f\"".into(),
    ]));
    let o = mtaffect(&args);
    assert!(o.status.success(), "{}", text(&o));
    let feats = dir.join("features");
    let o = mtaffect(&[
        "features".into(),
        "--checkpoint".into(),
        frame_runs.join("f/last.safetensors").display().to_string(),
        "--out".into(),
        feats.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o));

    // A stateful LSTM: the state carried between chunks is checkpointed.
    let args = [
        format!("data.features={:?}", feats.display().to_string()),
        "data.chunk=3".into(),
        "data.lanes=2".into(),
        "data.eval_lanes=2".into(),
        "model.encoder=\"lstm\"".into(),
        "model.d_model=4".into(),
        "model.head_hidden=3".into(),
    ];
    killed_and_resumed_matches_uninterrupted(&dir, &["temporal", "train"], &args);
    std::fs::remove_dir_all(&dir).unwrap();
}
