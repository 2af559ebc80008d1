//! Data-parallel training end to end on the CPU: `train --nproc-per-node 2`
//! tracks one process at the same global batch (a model without batch
//! coupling: ViT, MSE valence/arousal, no dropout), only rank 0 writes, the
//! ranks end with identical parameters, one process resumes the run with a
//! warning; and a rank that fails (torchrun's
//! variables set by hand, one rank pointed at a missing data folder) stops
//! the other with its message instead of leaving it waiting.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, only_run, temp, text};

fn tiny_set(dir: &Path) -> String {
    let data = dir.join("data").to_str().unwrap().to_string();
    let o = mtaffect(&[
        "synth", "--out", &data, "--videos", "5", "--frames", "12", "--size", "32",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    data
}

/// A tiny ViT run on `data` into `runs`, 4 steps of batch 8.
fn args(data: &str, runs: &Path) -> Vec<String> {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/vit-synthetic-cpu.toml"
    );
    let mut a: Vec<String> = ["train", "--config", config, "--data", data, "--quiet"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for kv in [
        "data.image_size=32",
        "data.batch_size=8",
        "model.backbone.depth=2",
        "model.backbone.width=32",
        "model.backbone.drop_path=0.0",
        "model.dropout=0.0",
        "loss.va_loss=\"mse\"",
        "train.steps=4",
        "train.eval_every=2",
        "train.log_every=1",
    ] {
        a.extend(["--set".to_string(), kv.to_string()]);
    }
    a.extend(["--set".to_string(), format!("run.runs_dir={:?}", runs)]);
    a
}

/// (split, step, loss or P_MTL) of each train and val record.
fn records(run: &Path) -> Vec<(String, u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| {
            let split = v["split"].as_str()?.to_string();
            let key = match split.as_str() {
                "train" => "loss",
                "val" => "p_mtl",
                _ => return None,
            };
            Some((split, v["step"].as_u64()?, v[key].as_f64()?))
        })
        .collect()
}

#[test]
fn two_ranks_track_one_process_and_only_rank_0_writes() {
    let dir = temp("dist-track");
    let data = tiny_set(&dir);
    let (one, two) = (dir.join("one"), dir.join("two"));
    let o = mtaffect(&args(&data, &one));
    assert!(o.status.success(), "{}", text(&o));
    let mut a = args(&data, &two);
    a.extend(["--nproc-per-node".into(), "2".into()]);
    let o = mtaffect(&a);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("parameters identical on all 2 ranks"), "{out}");
    // Rank 0 reports the run once; rank 1 prints nothing of its own.
    assert_eq!(out.matches("finished 4 steps").count(), 1, "{out}");
    // One run directory, written by rank 0 alone.
    let run = only_run(&two);
    let (single, dist) = (records(&only_run(&one)), records(&run));
    assert_eq!(single.len(), dist.len(), "{single:?} vs {dist:?}");
    assert_eq!(single.iter().filter(|r| r.0 == "train").count(), 4);
    for (s, d) in single.iter().zip(&dist) {
        assert_eq!((&s.0, s.1), (&d.0, d.1));
        let tol = 1e-5 * s.2.abs().max(1.0);
        assert!(
            (s.2 - d.2).abs() <= tol,
            "{} step {}: one process {} vs two ranks {}",
            s.0,
            s.1,
            s.2,
            d.2
        );
    }
    for f in ["last.safetensors", "best.safetensors", "loss.png"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // Resumed by one process: allowed, with a warning naming both sizes.
    let o = mtaffect(&["train", "--resume", run.to_str().unwrap(), "--quiet"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("trained by 2 process(es) and resumes with 1"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_rank_stops_the_other_with_its_message() {
    let dir = temp("dist-fail");
    let data = tiny_set(&dir);
    let runs = dir.join("runs");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let missing = dir.join("no-such-data");
    let spawn = |rank: usize, data: &str| {
        Command::new(env!("CARGO_BIN_EXE_mtaffect"))
            .args(args(data, &runs))
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", "2")
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut ranks = [spawn(0, &data), spawn(1, missing.to_str().unwrap())];
    let start = Instant::now();
    while ranks.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        if start.elapsed() > Duration::from_secs(120) {
            for c in &mut ranks {
                let _ = c.kill();
            }
            panic!("a rank still runs after 120 s: the failure did not stop it");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let [zero, one] = ranks.map(|c| c.wait_with_output().unwrap());
    let (zero_out, one_out) = (text(&zero), text(&one));
    assert!(!one.status.success(), "{one_out}");
    assert!(
        one_out.contains("no-such-data"),
        "rank 1 names its problem: {one_out}"
    );
    assert!(!zero.status.success(), "{zero_out}");
    assert!(
        zero_out.contains("rank 1 failed") && zero_out.contains("no-such-data"),
        "rank 0 stops with rank 1's message: {zero_out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
