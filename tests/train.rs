//! The training loop on a tiny, easily learnable image set written by the
//! test itself: loss falls, validation beats the chance baseline, and a
//! restored state continues exactly like the uninterrupted run.

use mtaffect::data::{Dataset, Loader, LoaderConfig, ReadOptions, SamplerKind};
use mtaffect::metrics::{MtlEvaluator, MtlLabels, MtlPredictions};
use mtaffect::model::{NeckKind, NetConfig, SeResNetConfig, Stem};
use mtaffect::optim::{AdamConfig, LrSchedule};
use mtaffect::train::runner::Task;
use mtaffect::train::{FrameTask, OptimConfig, TrainConfig, Trainer};
use mtaffect::{Rng, Tensor};
use std::path::{Path, PathBuf};

const SIZE: u32 = 16;

/// Frames whose labels are visible: the expression sets the colour, AU k
/// lights up patch k, valence/arousal set brightness and contrast. Some labels
/// are withheld (-5 / -1) as in Aff-Wild2.
fn write_toy_set(dir: &Path, name: &str, videos: usize, frames: usize, seed: u64) -> PathBuf {
    let mut rng = Rng::new(seed);
    let mut lines = vec![
        "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
            .to_string(),
    ];
    let palette = [
        [200, 60, 60],
        [60, 200, 60],
        [60, 60, 200],
        [200, 200, 60],
        [200, 60, 200],
        [60, 200, 200],
        [230, 230, 230],
        [100, 100, 100],
    ];
    for v in 0..videos {
        let video = format!("{name}{v}");
        std::fs::create_dir_all(dir.join("cropped_aligned").join(&video)).unwrap();
        for f in 1..=frames {
            let expr = rng.below(8);
            let aus: Vec<u8> = (0..12).map(|_| rng.bernoulli(0.4) as u8).collect();
            let (val, aro) = (rng.uniform(-0.9, 0.9), rng.uniform(-0.9, 0.9));
            let img = image::RgbImage::from_fn(SIZE, SIZE, |x, y| {
                let patch = (y / 4 * 4 + x / 4) as usize; // 16 patches, 12 used by AUs
                let base = palette[expr];
                let on = patch < 12 && aus[patch] == 1;
                let shade = (1.0 + 0.4 * val)
                    * if on { 1.3 } else { 0.7 }
                    * (1.0 + 0.3 * aro * if (x + y) % 2 == 0 { 1.0 } else { -1.0 });
                image::Rgb(base.map(|c: i32| (c as f64 * shade).clamp(0.0, 255.0) as u8))
            });
            let rel = format!("{video}/{f:05}.png");
            img.save(dir.join("cropped_aligned").join(&rel)).unwrap();
            let va = if rng.bernoulli(0.15) {
                "-5,-5".to_string()
            } else {
                format!("{val:.4},{aro:.4}")
            };
            let ex = if rng.bernoulli(0.15) { -1 } else { expr as i64 };
            let au = if rng.bernoulli(0.15) {
                ["-1"; 12].join(",")
            } else {
                aus.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            lines.push(format!("{rel},{va},{ex},{au}"));
        }
    }
    let path = dir.join(format!("{name}_annotations.txt"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn toy_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mtaffect-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn loader(dir: &Path, ann: &Path, train: bool) -> Loader {
    let (ds, _) =
        Dataset::from_mtl(ann, &dir.join("cropped_aligned"), &ReadOptions::default()).unwrap();
    let cfg = LoaderConfig {
        batch_size: 16,
        image_size: SIZE as usize,
        workers: 2,
        sampler: if train {
            SamplerKind::Shuffle
        } else {
            SamplerKind::Sequential
        },
        drop_last: train,
        augment: mtaffect::data::AugmentConfig::off(),
        seed: 3,
        ..LoaderConfig::default()
    };
    Loader::new(ds, cfg).unwrap()
}

fn tiny_config(steps: u64, eval_every: u64) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.data.image_size = SIZE as usize;
    c.data.batch_size = 16;
    c.model = NetConfig {
        backbone: SeResNetConfig {
            depth: 10,
            width_mult: 0.125,
            se_reduction: 4,
            se_divisor: 1,
            stem: Stem::Small,
        }
        .into(),
        neck: NeckKind::Gap,
        dropout: 0.0,
        ..NetConfig::default()
    };
    c.optim = OptimConfig::Adam(AdamConfig::default());
    c.schedule = LrSchedule::constant(3e-3);
    c.train.steps = steps;
    c.train.eval_every = eval_every;
    c
}

/// A frame task on `data` with no validation set and no batch transform.
fn task(cfg: &TrainConfig, data: Loader) -> FrameTask {
    FrameTask::new(Trainer::new(cfg).unwrap(), data, None, None).unwrap()
}

#[test]
fn resume_reproduces_the_uninterrupted_losses() {
    let dir = toy_dir("resume");
    let ann = write_toy_set(&dir, "train", 2, 24, 1);
    let cfg = tiny_config(7, 4);

    // 3 steps per epoch: the run crosses epochs.
    let ckpt = dir.join("step4.safetensors");
    let mut full = task(&cfg, loader(&dir, &ann, true));
    let mut losses = Vec::new();
    for _ in 0..7 {
        losses.push(full.step().unwrap().loss);
        if full.progress().step == 4 {
            full.save(&ckpt).unwrap();
        }
    }

    let mut resumed = task(&cfg, loader(&dir, &ann, true));
    resumed.load(&ckpt).unwrap();
    let p = resumed.progress();
    assert_eq!((p.step, p.epoch, p.position_in_epoch), (4, 1, 1));
    let tail: Vec<f64> = (0..3).map(|_| resumed.step().unwrap().loss).collect();
    assert_eq!(
        tail,
        losses[4..],
        "resumed losses must equal the uninterrupted run bit for bit"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tiny_model_learns_and_beats_the_chance_baseline() {
    let dir = toy_dir("learn");
    let train_ann = write_toy_set(&dir, "train", 4, 40, 2);
    let val_ann = write_toy_set(&dir, "val", 2, 32, 3);
    let val = loader(&dir, &val_ann, false);
    let mut t = task(&tiny_config(60, 60), loader(&dir, &train_ann, true));
    let losses: Vec<f64> = (0..60).map(|_| t.step().unwrap().loss).collect();
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(
        last < 0.7 * first,
        "loss did not fall enough: {first:.3} -> {last:.3}"
    );

    let m = t.trainer.evaluate(&val).unwrap();
    // Chance baseline on the same labels: constant VA at 0, all-zero AUs,
    // the majority expression everywhere.
    let mut base = MtlEvaluator::new(8, 12);
    for b in val.epoch(0, 0) {
        let b = b.unwrap();
        let n = b.len();
        let va = vec![0.0f32; n * 2];
        let au = vec![-10.0f32; n * 12];
        let expr: Vec<f32> = (0..n * 8)
            .map(|i| if i % 8 == 0 { 1.0 } else { 0.0 })
            .collect();
        let lab = |t: &Tensor| t.to_vec::<f32>().unwrap();
        let (lva, lex, lau) = (lab(&b.va), lab(&b.expr), lab(&b.aus));
        base.add_batch(
            n,
            MtlPredictions {
                va: &va,
                expr_logits: &expr,
                au_logits: &au,
            },
            MtlLabels {
                va: &lva,
                expr: &lex,
                au: &lau,
            },
        )
        .unwrap();
    }
    let chance = base.finish();
    println!(
        "P_MTL {:.3} (chance {:.3}); losses {first:.3} -> {last:.3}",
        m.p_mtl, chance.p_mtl
    );
    assert!(
        m.p_mtl > chance.p_mtl + 0.3,
        "P_MTL {} vs chance {}",
        m.p_mtl,
        chance.p_mtl
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
