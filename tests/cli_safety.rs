//! Hostile input at the command line: folders that are not data sets, bad
//! and duplicate images and lines, odd encodings, sizes the machine cannot
//! hold (every trainer's size-like settings) and checkpoints with
//! non-finite weights. Each probe asserts the exit
//! code, the message, that nothing was written or lost, and that no panic or
//! backtrace reached the user.

use std::path::{Path, PathBuf};
use std::process::Output;

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, temp, text};

/// The run failed with a message holding every one of `needles`, and no panic.
fn fails_with(o: &Output, needles: &[&str]) -> String {
    let msg = text(o);
    assert!(!o.status.success(), "expected a failure: {msg}");
    assert_eq!(o.status.code(), Some(1), "{msg}");
    for n in needles {
        assert!(msg.contains(n), "missing '{n}' in: {msg}");
    }
    assert_clean(&msg);
    msg
}

fn assert_clean(msg: &str) {
    assert!(
        !msg.contains("panicked") && !msg.to_lowercase().contains("backtrace"),
        "{msg}"
    );
}

fn ok(o: &Output) -> String {
    let msg = text(o);
    assert!(o.status.success(), "{msg}");
    assert_clean(&msg);
    msg
}

/// A tiny synthetic set (5 videos of 12 frames, 32 pixels) in `dir`.
fn tiny_data(dir: &Path) {
    let d = dir.to_str().unwrap();
    let args = [
        "synth", "--out", d, "--videos", "5", "--frames", "12", "--size", "32",
    ];
    ok(&mtaffect(&args));
}

/// `train --data` on `data` with a tiny model, plus `extra` settings.
fn train(data: &Path, runs: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = ["train", "--quiet", "--data", data.to_str().unwrap()]
        .map(String::from)
        .to_vec();
    let sets = [
        "data.image_size=32",
        "data.batch_size=8",
        "model.backbone.width_mult=0.125",
        "model.backbone.stem=\"small\"",
        "train.steps=2",
        "train.eval_every=2",
    ];
    let runs = format!("run.runs_dir={:?}", runs.display().to_string());
    for s in sets.iter().chain(extra).chain([&runs.as_str()]) {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    mtaffect(&args)
}

/// The image names of an annotation file's data lines.
fn images(data: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(data.join(file))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect()
}

/// Checkpoint files anywhere under `dir`.
fn checkpoints(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.map(|e| e.unwrap().path())
            .map(|p| match p.is_dir() {
                true => checkpoints(&p),
                false => p.extension().is_some_and(|x| x == "safetensors") as usize,
            })
            .sum()
    })
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.map(|e| e.unwrap().path())
            .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
            .sum()
    })
}

/// A data folder sharing `data`'s images, with its own annotation files.
#[cfg(unix)]
fn sibling(data: &Path, name: &str) -> PathBuf {
    let d = data.with_file_name(name);
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::symlink(data.join("cropped_aligned"), d.join("cropped_aligned")).unwrap();
    for f in [
        "training_set_annotations.txt",
        "validation_set_annotations.txt",
    ] {
        std::fs::copy(data.join(f), d.join(f)).unwrap();
    }
    d
}

#[test]
fn named_folders_are_read_never_generated_into() {
    let dir = temp("safety-folders");
    let runs = dir.join("runs");
    let missing = dir.join("typo");
    let msg = fails_with(
        &train(&missing, &runs, &[]),
        &[
            "training_set_annotations.txt",
            "validation_set_annotations.txt",
            "cropped_aligned/",
        ],
    );
    assert!(!missing.exists(), "{msg}");

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails_with(&train(&empty, &runs, &[]), &["found an empty folder"]);
    assert_eq!(files_under(&empty), 0);

    // A real data set's images without the annotation files.
    let real = dir.join("real");
    std::fs::create_dir_all(real.join("cropped_aligned/v1")).unwrap();
    std::fs::write(real.join("notes.txt"), "mine").unwrap();
    fails_with(
        &train(&real, &runs, &[]),
        &[
            "found cropped_aligned/, notes.txt",
            "training_set_annotations.txt",
        ],
    );
    // The synthetic source never writes into a folder that holds something.
    let root = format!("data.root={:?}", real.display().to_string());
    let runs_set = format!("run.runs_dir={:?}", runs.display().to_string());
    fails_with(
        &mtaffect(&["train", "--set", &root, "--set", &runs_set]),
        &["is not empty", "data.source = \"abaw\""],
    );
    assert_eq!(files_under(&real), 1);

    // `synth` refuses a folder that is not empty unless forced.
    let o = mtaffect(&["synth", "--out", real.to_str().unwrap(), "--videos", "1"]);
    fails_with(&o, &["is not empty", "--force"]);
    assert_eq!(
        std::fs::read_to_string(real.join("notes.txt")).unwrap(),
        "mine"
    );
    let args = [
        "synth",
        "--out",
        real.to_str().unwrap(),
        "--videos",
        "2",
        "--frames",
        "2",
        "--size",
        "16",
        "--force",
    ];
    ok(&mtaffect(&args));
    assert!(real.join("training_set_annotations.txt").is_file());

    // A size no machine holds is refused by name before anything is allocated.
    let o = mtaffect(&[
        "train",
        "--set",
        "data.image_size=20000",
        "--set",
        &runs_set,
    ]);
    fails_with(&o, &["data.image_size", "data.batch_size", "GiB"]);
    assert_eq!(checkpoints(&runs), 0);
    let huge = dir.join("huge");
    let o = mtaffect(&["synth", "--out", huge.to_str().unwrap(), "--size", "20000"]);
    fails_with(&o, &["image_size in 16..=1024", "20000"]);
    assert!(!huge.exists());
    let args = [
        "synth",
        "--out",
        huge.to_str().unwrap(),
        "--videos",
        "1000000000000",
    ];
    fails_with(&mtaffect(&args), &["at most 10000000 frames", "--videos"]);
    let o = mtaffect(&[
        "train",
        "--set",
        &format!("data.root={:?}", huge.display().to_string()),
        "--set",
        "data.synth_frames=1000000000000",
        "--set",
        &runs_set,
    ]);
    fails_with(&o, &["at most 10000000 frames", "data.synth_frames"]);
    assert_eq!(files_under(&huge), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_images_are_found_before_training_and_counted_when_skipped() {
    let dir = temp("safety-images");
    let (data, runs) = (dir.join("data"), dir.join("runs"));
    tiny_data(&data);
    let train_images = images(&data, "training_set_annotations.txt");
    let img = |name: &str| data.join("cropped_aligned").join(name);

    // A bad validation image stops the run before its first step.
    let val = images(&data, "validation_set_annotations.txt");
    let good = std::fs::read(img(&val[0])).unwrap();
    std::fs::write(img(&val[0]), &good[..good.len() / 2]).unwrap();
    fails_with(
        &train(&data, &runs, &[]),
        &["validation_set_annotations.txt:2:", &val[0], "truncated"],
    );
    assert_eq!(checkpoints(&runs), 0, "no step ran");
    std::fs::write(img(&val[0]), &good).unwrap();

    // Skip mode: three kinds of bad training image.
    std::fs::write(img(&train_images[0]), b"").unwrap();
    let t = std::fs::read(img(&train_images[1])).unwrap();
    std::fs::write(img(&train_images[1]), &t[..t.len() / 2]).unwrap();
    std::fs::write(img(&train_images[2]), b"not an image").unwrap();
    let skip = "data.on_bad_sample=\"skip\"";
    fails_with(
        &train(&data, &runs, &[skip]),
        &[
            "1 empty_image",
            "1 truncated_image",
            "1 undecodable_image",
            "data.max_bad_fraction = 0.01",
            &train_images[0],
        ],
    );
    let kept = dir.join("kept");
    let msg = ok(&train(&data, &kept, &[skip, "data.max_bad_fraction=0.5"]));
    assert!(
        msg.contains("skipped 3 of") && msg.contains(&train_images[2]),
        "{msg}"
    );
    let run = std::fs::read_dir(&kept)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let data_line = log
        .lines()
        .find(|l| l.contains("\"split\":\"data\""))
        .unwrap();
    let rec: serde_json::Value = serde_json::from_str(data_line).unwrap();
    assert_eq!(rec["train"]["skipped"]["empty_image"], 1, "{data_line}");
    assert_eq!(rec["train"]["skipped"]["truncated_image"], 1, "{data_line}");

    // Every image bad: the counts, not an error from deep inside the model.
    for name in &train_images {
        std::fs::write(img(name), b"").unwrap();
    }
    let msg = fails_with(
        &train(&data, &runs, &[skip, "data.max_bad_fraction=1.0"]),
        &["empty_image", "max_bad_fraction"],
    );
    assert!(!msg.contains("conv2d"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn a_trained_checkpoint_meets_bad_data_predictions_and_nan_weights() {
    use mtaffect::{tensor_file, Tensor};
    let dir = temp("safety-ckpt");
    let (data, runs) = (dir.join("data"), dir.join("runs"));
    tiny_data(&data);
    ok(&train(&data, &runs, &[]));
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let best = run.join("best.safetensors");
    let ckpt = best.to_str().unwrap();
    let eval = |d: &Path| mtaffect(&["eval", "--checkpoint", ckpt, "--data", d.to_str().unwrap()]);

    // A mistyped folder is an error, not an evaluation on generated faces.
    let typo = dir.join("dta");
    fails_with(
        &eval(&typo),
        &["cropped_aligned/", "validation_set_annotations.txt"],
    );
    assert!(!typo.exists());

    // Duplicate frames: equal labels merged and counted, conflicting ones named.
    let val_file = "validation_set_annotations.txt";
    let val_text = std::fs::read_to_string(data.join(val_file)).unwrap();
    let line2 = val_text.lines().nth(1).unwrap();
    let dup = sibling(&data, "dup");
    std::fs::write(dup.join(val_file), format!("{val_text}{line2}\n")).unwrap();
    assert!(ok(&eval(&dup)).contains("1 duplicate lines"));
    let mut fields: Vec<&str> = line2.split(',').collect();
    let flipped = if fields[3] == "0" { "1" } else { "0" };
    fields[3] = flipped;
    let n = val_text.lines().count() + 1;
    std::fs::write(
        dup.join(val_file),
        format!("{val_text}{}\n", fields.join(",")),
    )
    .unwrap();
    fails_with(
        &eval(&dup),
        &[&format!("{val_file}:{n}:"), "also on line 2"],
    );

    // A byte-order mark is ignored; a byte that is not UTF-8 names its line.
    let enc = sibling(&data, "enc");
    std::fs::write(enc.join(val_file), format!("\u{feff}{val_text}")).unwrap();
    ok(&eval(&enc));
    let mut bytes = val_text.clone().into_bytes();
    let third = val_text.lines().take(2).map(|l| l.len() + 1).sum::<usize>();
    bytes.insert(third, 0xE9);
    std::fs::write(enc.join(val_file), bytes).unwrap();
    fails_with(
        &eval(&enc),
        &[&format!("{val_file}:3:"), "0xE9", "not UTF-8"],
    );
    std::fs::write(enc.join(val_file), val_text.replacen("image", "imáge", 1)).unwrap();
    fails_with(&eval(&enc), &["character 3", "0xC3 0xA1"]);

    // Predictions: all-or-nothing when failing, every good row when skipping.
    let faces = dir.join("faces");
    std::fs::create_dir_all(&faces).unwrap();
    let video = data
        .join("cropped_aligned")
        .join(line2.split('/').next().unwrap());
    for e in std::fs::read_dir(&video).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, faces.join(p.file_name().unwrap())).unwrap();
    }
    let good = files_under(&faces);
    std::fs::write(faces.join("zz_empty.jpg"), b"").unwrap();
    let out = dir.join("preds.csv");
    let predict = |extra: &[&str]| {
        let mut a = vec![
            "predict",
            "--checkpoint",
            ckpt,
            "--images",
            faces.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend(extra);
        mtaffect(&a)
    };
    fails_with(&predict(&[]), &["zz_empty.jpg"]);
    assert!(!out.exists(), "a failed predict leaves no file");
    let msg = ok(&predict(&["--on-bad-sample", "skip"]));
    assert!(
        msg.contains("skipped 1 unreadable") && msg.contains("zz_empty.jpg"),
        "{msg}"
    );
    let rows = std::fs::read_to_string(&out).unwrap().lines().count() - 1;
    assert_eq!(rows, good);

    // A checkpoint with a NaN weight is refused, naming the tensor.
    let (mut tensors, meta) = tensor_file::read(&best, "checkpoint").unwrap();
    let name = tensors
        .keys()
        .find(|k| k.ends_with("weight"))
        .unwrap()
        .clone();
    let t = &tensors[&name];
    let mut v = t.to_vec::<f32>().unwrap();
    v[0] = f32::NAN;
    let poisoned = Tensor::from_vec(v, t.dims().to_vec()).unwrap();
    tensors.insert(name.clone(), poisoned);
    let nan = dir.join("nan.safetensors");
    let list = tensors.iter().map(|(k, t)| (k.clone(), t)).collect();
    tensor_file::write(&nan, "checkpoint", list, meta).unwrap();
    let o = mtaffect(&["eval", "--checkpoint", nan.to_str().unwrap()]);
    fails_with(&o, &[&format!("tensor '{name}' holds NaN"), "diverged"]);

    // A checkpoint whose stored config asks for a model no machine holds is
    // refused by key before the model is built, as a run config would be.
    let (tensors, mut meta) = tensor_file::read(&best, "checkpoint").unwrap();
    let cfg = meta["config"].replace("width_mult = 0.125", "width_mult = 1000000000.0");
    assert_ne!(cfg, meta["config"], "the stored config names the width");
    meta.insert("config".into(), cfg);
    let huge = dir.join("huge.safetensors");
    let list = tensors.iter().map(|(k, t)| (k.clone(), t)).collect();
    tensor_file::write(&huge, "checkpoint", list, meta).unwrap();
    let o = mtaffect(&["eval", "--checkpoint", huge.to_str().unwrap()]);
    fails_with(&o, &["lower model.backbone.width_mult"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The first run directory under `runs`.
fn first_run(runs: &Path) -> PathBuf {
    std::fs::read_dir(runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

#[test]
fn sizes_the_machine_cannot_hold_are_refused_by_key() {
    let dir = temp("safety-sizes");
    let (data, runs) = (dir.join("data"), dir.join("runs"));
    // Refused before the data folder is looked at (it does not exist yet).
    for (set, needles) in [
        (
            "data.image_size=20000",
            [
                "data.image_size = 20000",
                "lower data.batch_size or data.image_size",
            ],
        ),
        (
            "data.batch_size=100000000",
            ["data.batch_size = 100000000", "lower data.batch_size"],
        ),
        (
            "model.backbone.width_mult=1e9",
            [
                "model.backbone.width_mult = 1000000000",
                "lower model.backbone.width_mult",
            ],
        ),
    ] {
        fails_with(&train(&data, &runs, &[set]), &needles);
    }
    let root = format!("data.root={:?}", data.display().to_string());
    let runs_set = format!("run.runs_dir={:?}", runs.display().to_string());
    for (set, needle) in [
        (
            "data.batch_size=10000000",
            "lower data.batch_size or data.image_size",
        ),
        ("generator.channels=1000000000", "lower generator.channels"),
        (
            "discriminator.backbone.width_mult=1e9",
            "lower discriminator.backbone.width_mult",
        ),
    ] {
        let args = [
            "gan", "train", "--quiet", "--set", &root, "--set", &runs_set, "--set", set,
        ];
        fails_with(&mtaffect(&args), &[needle]);
    }
    assert!(!data.exists(), "no data was generated");
    assert_eq!(files_under(&runs), 0, "no run directory was left");

    // More loader threads than the machine has: clamped, said, and trained.
    tiny_data(&data);
    let msg = ok(&train(&data, &runs, &["data.workers=100000"]));
    assert!(
        msg.contains("data.workers = 100000: this machine has") && msg.contains("the loader runs"),
        "{msg}"
    );

    // The temporal trainer on that model's features.
    let feats = dir.join("features");
    let ckpt = first_run(&runs).join("last.safetensors");
    let args = [
        "features",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        feats.to_str().unwrap(),
    ];
    ok(&mtaffect(&args));
    let feats_set = format!("data.features={:?}", feats.display().to_string());
    let temporal_runs = dir.join("temporal");
    let temporal_runs_set = format!("run.runs_dir={:?}", temporal_runs.display().to_string());
    for (set, needles) in [
        (
            "data.chunk=1000000000000",
            [
                "data.chunk = 1000000000000",
                "lower data.lanes or data.chunk",
            ],
        ),
        (
            "data.eval_lanes=1000000000000",
            ["data.eval_lanes = 1000000000000", "lower data.eval_lanes"],
        ),
        (
            "model.shared_layers=1000000000000",
            [
                "model.shared_layers = 1000000000000",
                "or model.shared_layers",
            ],
        ),
    ] {
        let args = [
            "temporal",
            "train",
            "--set",
            &feats_set,
            "--set",
            &temporal_runs_set,
            "--set",
            set,
        ];
        fails_with(&mtaffect(&args), &needles);
    }
    assert_eq!(files_under(&temporal_runs), 0, "no run directory was left");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_malformed_torchrun_launch_is_refused_before_anything_is_read() {
    let run = |vars: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mtaffect"))
            .args(["train", "--data", "/nonexistent-data-set"])
            .envs(vars.iter().copied())
            .output()
            .expect("the binary runs")
    };
    let torchrun = [
        ("RANK", "0"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "twenty"),
    ];
    let msg = fails_with(&run(&torchrun), &["MASTER_PORT=\"twenty\"", "WORLD_SIZE=2"]);
    assert!(!msg.contains("nonexistent-data-set"), "{msg}");
    let mut bad_rank = torchrun;
    (bad_rank[0].1, bad_rank[4].1) = ("2", "29500");
    fails_with(&run(&bad_rank), &["RANK=\"2\"", "must be < WORLD_SIZE=2"]);
}
