//! The run loop through the command line, on tiny models. Every trainer
//! resumes exactly: a run killed with SIGKILL once it has written a
//! checkpoint, then continued with `--resume`, logs the same losses and
//! validation scores, bit for bit, as the same run left alone (frame, GAN,
//! temporal with a stateful LSTM checkpointed mid-epoch and teacher-forced
//! label feedback, and masked-autoencoder pretraining). Ctrl-C (SIGINT) or SIGTERM stops a run
//! after its step with a checkpoint there, which resumes exactly too, and a
//! second signal ends it at once (status 130) leaving the last whole
//! checkpoint; a resumed run removes the temporaries of a torn write and
//! logs no step twice; a run directory in use is refused; a run that fails
//! to start leaves no directory behind.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, sets, temp, text};
use std::time::{Duration, Instant};

const STEPS: u64 = 16;

/// The run settings every test shares: `STEPS` steps, a checkpoint every
/// `eval_every`, a log line every step.
fn run_sets(runs: &Path, eval_every: u64) -> Vec<String> {
    vec![
        format!("train.steps={STEPS}"),
        format!("train.eval_every={eval_every}"),
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

/// How the second run is stopped.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    /// SIGKILL as soon as it has written a checkpoint.
    Kill,
    /// This signal (SIGINT or SIGTERM) after its first logged step, in a
    /// run that checkpoints only at its end: the checkpoint it resumes from
    /// is the one the signal wrote.
    Signal(&'static str),
}

impl Stop {
    fn eval_every(self) -> u64 {
        match self {
            // Checkpoints every 3 steps, so the kill lands mid-epoch.
            Stop::Kill => 3,
            Stop::Signal(_) => STEPS,
        }
    }
}

/// The number of times each (split, step) is logged.
fn counts(run: &Path) -> BTreeMap<(String, u64), usize> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let key = (
            v["split"].as_str().unwrap().to_string(),
            v["step"].as_u64().unwrap(),
        );
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// Runs `command` + `args` to the end in `<dir>/full`; runs it again in
/// `<dir>/stopped`, stops it as `stop` says, then resumes it; both runs
/// must log the same records, each once.
fn stopped_and_resumed_matches_uninterrupted(
    dir: &Path,
    command: &[&str],
    args: &[String],
    stop: Stop,
) {
    let cmd: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    let full_runs = dir.join("full");
    let mut full = cmd.clone();
    full.extend(sets(args));
    full.extend(sets(&run_sets(&full_runs, stop.eval_every())));
    let o = mtaffect(&full);
    assert!(o.status.success(), "{}", text(&o));

    let stopped_runs = dir.join("stopped");
    let run = stopped_runs.join("r");
    let mut stopped = cmd.clone();
    stopped.extend(sets(args));
    stopped.extend(sets(&run_sets(&stopped_runs, stop.eval_every())));
    let child = Command::new(env!("CARGO_BIN_EXE_mtaffect"))
        .args(&stopped)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = |run: &Path| match stop {
        Stop::Kill => run.join("last.safetensors").is_file(),
        Stop::Signal(_) => std::fs::read_to_string(run.join("metrics.jsonl"))
            .is_ok_and(|t| t.contains("\"split\":\"train\"")),
    };
    let mut child = child;
    wait_until(&mut child, || ready(&run));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before it could be stopped"
    );
    let mut resume = cmd;
    resume.extend(["--resume".into(), run.display().to_string()]);
    match stop {
        Stop::Kill => {
            child.kill().unwrap();
            child.wait().unwrap();
            // What a kill during a checkpoint write leaves behind.
            std::fs::write(run.join("last.safetensors.tmp99999"), "torn").unwrap();
        }
        Stop::Signal(signal) => {
            // While it runs, a second process may not touch its directory.
            let o = mtaffect(&resume);
            let busy = format!("in use by process {}", child.id());
            assert!(
                !o.status.success() && text(&o).contains(&busy),
                "{}",
                text(&o)
            );
            self::signal(child.id(), signal);
            let o = child.wait_with_output().unwrap();
            assert!(!o.status.success(), "{}", text(&o));
            assert!(text(&o).contains("resume with --resume"), "{}", text(&o));
        }
    }

    let o = mtaffect(&resume);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!run.join("last.safetensors.tmp99999").exists());
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
    let twice: Vec<_> = counts(&run).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "logged again after the resume: {twice:?}");
}

/// The tiny synthetic set and the tiny frame model.
fn frame_sets(data: &Path) -> Vec<String> {
    let mut args = data_sets(data);
    args.extend([
        "model.backbone.width_mult=0.125".into(),
        "model.backbone.stem=\"small\"".into(),
    ]);
    args
}

/// A tiny frame run stopped as `stop` says resumes exactly.
fn frame_run_stopped_and_resumed(tag: &str, stop: Stop) {
    let dir = temp(tag);
    let args = frame_sets(&dir.join("data"));
    stopped_and_resumed_matches_uninterrupted(&dir, &["train"], &args, stop);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_frame_run_resumes_exactly() {
    frame_run_stopped_and_resumed("run-loop-frame", Stop::Kill);
}

#[test]
fn an_interrupted_frame_run_checkpoints_its_step_and_resumes_exactly() {
    frame_run_stopped_and_resumed("run-loop-interrupt", Stop::Signal("INT"));
}

#[test]
fn a_terminated_frame_run_checkpoints_its_step_and_resumes_exactly() {
    frame_run_stopped_and_resumed("run-loop-terminate", Stop::Signal("TERM"));
}

/// Sends `signal` ("INT", "TERM") to the process `pid`.
fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits (at most two minutes) until `ready`, while `child` runs.
fn wait_until(child: &mut Child, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be stopped"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "never ready");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_second_signal_exits_at_once_and_leaves_a_loadable_checkpoint() {
    let dir = temp("run-loop-second-signal");
    let run = dir.join("runs/r");
    let mut args = vec!["train".to_string()];
    let mut kv = frame_sets(&dir.join("data"));
    kv.extend(run_sets(&dir.join("runs"), 2));
    // Steps of about a second (images larger than the tiny set's), so both
    // signals land in the step after the first checkpoint.
    kv.extend(["data.image_size=160".into(), "train.steps=6".into()]);
    args.extend(sets(&kv));
    let stderr = dir.join("stderr.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtaffect"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let err = || std::fs::read_to_string(&stderr).unwrap();
    let last = run.join("last.safetensors");
    wait_until(&mut child, || last.is_file());
    std::thread::sleep(Duration::from_millis(100));
    signal(child.id(), "INT");
    wait_until(&mut child, || err().contains("stopping after this step"));
    let second = Instant::now();
    signal(child.id(), "INT");
    let status = child.wait().unwrap();
    // Exit status 130, without the first signal's checkpoint and message.
    assert_eq!(status.code(), Some(130), "{}", err());
    assert!(second.elapsed() < Duration::from_secs(10));
    assert!(
        err().contains("second signal") && !err().contains("stopped by a signal"),
        "{}",
        err()
    );
    // `last` is the whole checkpoint an evaluation wrote, and resumes.
    mtaffect::tensor_file::read(&last, "checkpoint").unwrap();
    let o = mtaffect(&["train", "--resume", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let temporaries: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(temporaries.is_empty(), "{temporaries:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_that_fails_to_start_leaves_no_directory() {
    let dir = temp("run-loop-failed-start");
    let runs = dir.join("runs");
    let mut args = vec!["train".to_string()];
    args.extend(sets(&data_sets(&dir.join("data"))));
    // More than the tiny set holds: the loader refuses it.
    args.extend(sets(&[
        "data.batch_size=1000".into(),
        format!("run.runs_dir={:?}", runs.display().to_string()),
    ]));
    let o = mtaffect(&args);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("batch_size 1000"), "{}", text(&o));
    let left = std::fs::read_dir(&runs).map_or(0, |d| d.count());
    assert_eq!(left, 0, "a failed start left a run directory");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_gan_run_resumes_exactly() {
    let dir = temp("run-loop-gan");
    let mut args = data_sets(&dir.join("data"));
    args.extend([
        "generator.image_size=32".into(),
        "generator.channels=16".into(),
        "discriminator.backbone.width_mult=0.125".into(),
        "discriminator.backbone.stem=\"small\"".into(),
        "gan.select_per_class=2".into(),
        "gan.d_steps_per_g_step=2".into(),
        "gan.instance_noise=0.1".into(),
    ]);
    stopped_and_resumed_matches_uninterrupted(&dir, &["gan", "train"], &args, Stop::Kill);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_temporal_run_resumes_exactly() {
    let dir = temp("run-loop-temporal");
    // A frame model and its features to train on.
    let frame_runs = dir.join("frame");
    let mut args = vec!["train".to_string()];
    args.extend(sets(&data_sets(&dir.join("data"))));
    args.extend(sets(&[
        "model.backbone.width_mult=0.125".into(),
        "model.backbone.stem=\"small\"".into(),
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
    // Label feedback draws its teacher forcing from the checkpointed RNG
    // with a probability that depends on the step alone.
    let args = [
        format!("data.features={:?}", feats.display().to_string()),
        "data.chunk=3".into(),
        "data.lanes=2".into(),
        "data.eval_lanes=2".into(),
        "model.encoder=\"lstm\"".into(),
        "model.d_model=4".into(),
        "model.head_hidden=3".into(),
        r#"model.feedback=[{ source = "valence", target = "arousal", mode = "label" }]"#.into(),
    ];
    stopped_and_resumed_matches_uninterrupted(&dir, &["temporal", "train"], &args, Stop::Kill);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_pretraining_run_resumes_exactly() {
    let dir = temp("run-loop-pretrain");
    let mut args = data_sets(&dir.join("data"));
    // Masks, drop path and the data order all continue from the checkpoint.
    args.extend([
        "encoder.depth=2".into(),
        "encoder.width=32".into(),
        "encoder.heads=2".into(),
        "encoder.drop_path=0.1".into(),
        "mae.decoder_depth=1".into(),
        "mae.decoder_width=16".into(),
        "mae.decoder_heads=2".into(),
        "eval.images=8".into(),
        "eval.grid_rows=2".into(),
    ]);
    stopped_and_resumed_matches_uninterrupted(&dir, &["pretrain"], &args, Stop::Kill);
    std::fs::remove_dir_all(&dir).unwrap();
}
