//! Synthetic data round trip and determinism, and the loader's guarantees:
//! same batches whatever the thread count, exact mid-epoch resume, label
//! markers, bad-image handling.

use mtaffect::data::synth::{generate, SynthConfig, VideoPlan};
use mtaffect::data::{
    read_mtl_annotations, sampler::Sampler, AugmentConfig, Batch, Dataset, Loader, LoaderConfig,
    OnBadSample, ReadOptions, Sample, SamplerKind,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "mtaffect-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn small_cfg(seed: u64) -> SynthConfig {
    SynthConfig {
        videos: 6,
        frames_per_video: 12,
        image_size: 32,
        seed,
        val_fraction: 0.34,
        ..Default::default()
    }
}

/// The label content of a sample (its origin line differs between sources).
type Labels = (String, Option<[f32; 2]>, Option<u8>, Option<Vec<u8>>);

fn labels(s: &Sample) -> Labels {
    (s.image.clone(), s.va, s.expr, s.aus.clone())
}

fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn synth_round_trips_through_the_abaw_parser_exactly() {
    let cfg = small_cfg(3);
    let out = temp_dir("synth-rt");
    let summary = generate(&cfg, &out).unwrap();
    assert_eq!(summary.train_videos + summary.val_videos, 6);
    assert_eq!(summary.val_videos, 2);
    let root = out.join("cropped_aligned");
    let opts = ReadOptions {
        image_root: Some(root.clone()),
        ..Default::default()
    };
    let (train, ts) =
        read_mtl_annotations(&out.join("training_set_annotations.txt"), &opts).unwrap();
    let (val, vs) =
        read_mtl_annotations(&out.join("validation_set_annotations.txt"), &opts).unwrap();
    assert_eq!(
        (ts.samples, vs.samples),
        (summary.train_samples, summary.val_samples)
    );
    assert_eq!(
        ts.unlabelled + vs.unlabelled,
        0,
        "label-less frames get no line"
    );
    let mut parsed: Vec<_> = train.iter().chain(&val).map(labels).collect();
    parsed.sort_by(|a, b| a.0.cmp(&b.0));
    let file: Arc<Path> = Arc::from(Path::new("x"));
    let mut want: Vec<_> = (0..cfg.videos)
        .flat_map(|v| VideoPlan::new(&cfg, v).samples(&file))
        .map(|s| labels(&s))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(parsed, want);
    // Videos are split whole.
    let train_videos: std::collections::BTreeSet<_> = train.iter().map(|s| &s.video).collect();
    assert!(val.iter().all(|s| !train_videos.contains(&s.video)));
    // Every frame is a decodable JPEG of the configured size, labelled or not.
    for v in 0..cfg.videos {
        for f in 1..=cfg.frames_per_video {
            let img =
                mtaffect::data::image::decode_rgb(&root.join(format!("synth{v:04}/{f:05}.jpg")))
                    .unwrap();
            assert_eq!(img.dimensions(), (32, 32));
        }
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn synth_is_byte_identical_for_a_seed_whatever_the_thread_count() {
    let cfg = small_cfg(11);
    let (a, b, c) = (
        temp_dir("synth-a"),
        temp_dir("synth-b"),
        temp_dir("synth-c"),
    );
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    pool(1).install(|| generate(&cfg, &a)).unwrap();
    pool(3).install(|| generate(&cfg, &b)).unwrap();
    generate(&small_cfg(12), &c).unwrap();
    let (fa, fb, fc) = (all_files(&a), all_files(&b), all_files(&c));
    assert_eq!(fa.len(), 6 * 12 + 2);
    assert!(
        fa == fb,
        "same seed, different thread counts: outputs differ"
    );
    assert!(fa != fc, "different seeds gave the same data");
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn synth_labels_are_learnable_and_partly_withheld() {
    // Ground truth only (no rendering): enough frames for stable proportions.
    let cfg = SynthConfig {
        videos: 60,
        frames_per_video: 150,
        ..Default::default()
    };
    let file: Arc<Path> = Arc::from(Path::new("x"));
    let samples: Vec<Sample> = (0..cfg.videos)
        .flat_map(|v| VideoPlan::new(&cfg, v).samples(&file))
        .collect();
    let frames = (cfg.videos * cfg.frames_per_video) as f64;
    let frac =
        |f: &dyn Fn(&Sample) -> bool| samples.iter().filter(|s| f(s)).count() as f64 / frames;
    let (va, ex, au) = (
        frac(&|s| s.va.is_some()),
        frac(&|s| s.expr.is_some()),
        frac(&|s| s.aus.is_some()),
    );
    assert!(
        samples.len() as f64 > 0.9 * frames,
        "most frames keep a label"
    );
    assert!(
        (0.6..0.98).contains(&va) && (0.5..0.95).contains(&ex) && (0.4..0.9).contains(&au),
        "{va} {ex} {au}"
    );
    // AU12 (index 6) fires far more in happiness (4) than in neutral (0); AU26 (11) in surprise (6).
    let rate = |expr: u8, k: usize| {
        let sel: Vec<_> = samples
            .iter()
            .filter(|s| s.expr == Some(expr) && s.aus.is_some())
            .collect();
        sel.iter()
            .filter(|s| s.aus.as_ref().unwrap()[k] == 1)
            .count() as f64
            / sel.len() as f64
    };
    assert!(
        rate(4, 6) > 0.6 && rate(0, 6) < 0.15,
        "{} {}",
        rate(4, 6),
        rate(0, 6)
    );
    assert!(
        rate(6, 11) > 0.6 && rate(0, 11) < 0.15,
        "{} {}",
        rate(6, 11),
        rate(0, 11)
    );
    // Valence is positive for happiness and negative for sadness on average.
    let mean_v = |expr: u8| {
        let v: Vec<f32> = samples
            .iter()
            .filter(|s| s.expr == Some(expr))
            .filter_map(|s| s.va.map(|x| x[0]))
            .collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    assert!(
        mean_v(4) > 0.3 && mean_v(5) < -0.3,
        "{} {}",
        mean_v(4),
        mean_v(5)
    );
}

#[test]
fn au_intensities_move_smoothly_within_a_video() {
    let frames = mtaffect::data::synth::simulate(400, &mut mtaffect::Rng::new(4));
    let k = mtaffect::data::synth::au::AU12;
    let step: f32 = frames
        .windows(2)
        .map(|w| (w[1].aus[k] - w[0].aus[k]).abs())
        .sum::<f32>()
        / 399.0;
    let (lo, hi) = frames
        .iter()
        .fold((1f32, 0f32), |(l, h), f| (l.min(f.aus[k]), h.max(f.aus[k])));
    // Small frame-to-frame steps, yet the AU travels across most of its range.
    assert!(
        step < 0.05 && hi - lo > 0.5,
        "mean step {step}, range {lo}..{hi}"
    );
    assert!(frames
        .windows(2)
        .all(|w| (w[1].pose.yaw - w[0].pose.yaw).abs() < 0.2));
}

fn dataset(out: &Path, seed: u64) -> Dataset {
    generate(&small_cfg(seed), out).unwrap();
    Dataset::from_mtl(
        &out.join("training_set_annotations.txt"),
        &out.join("cropped_aligned"),
        &ReadOptions::default(),
    )
    .unwrap()
    .0
}

fn loader_cfg(workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 5,
        image_size: 24,
        workers,
        prefetch: 2,
        seed: 42,
        ..Default::default()
    }
}

type Key = (usize, Vec<usize>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn key(b: &Batch) -> Key {
    (
        b.step,
        b.indices.clone(),
        b.images.to_vec::<f32>().unwrap(),
        b.va.to_vec::<f32>().unwrap(),
        b.expr.to_vec::<f32>().unwrap(),
        b.aus.to_vec::<f32>().unwrap(),
    )
}

fn run(l: &Loader, epoch: u64, start: usize) -> Vec<Key> {
    l.epoch(epoch, start).map(|b| key(&b.unwrap())).collect()
}

#[test]
fn loader_batches_do_not_depend_on_threads_and_resume_exactly() {
    let out = temp_dir("loader");
    let ds = dataset(&out, 5);
    let one = Loader::new(ds.clone(), loader_cfg(1)).unwrap();
    let three = Loader::new(ds.clone(), loader_cfg(3)).unwrap();
    let steps = one.steps_per_epoch();
    assert_eq!(steps, ds.samples.len() / 5);
    let e1 = run(&one, 1, 0);
    assert_eq!(e1.len(), steps);
    assert_eq!(e1, run(&three, 1, 0));
    assert_eq!(
        e1,
        run(&one, 1, 0),
        "a second pass over the same epoch repeats it"
    );
    for k in [1, steps / 2, steps - 1] {
        assert_eq!(run(&three, 1, k), e1[k..].to_vec(), "resume at step {k}");
    }
    assert!(run(&one, 1, steps).is_empty());
    let e2 = run(&one, 2, 0);
    assert_ne!(e1[0].1, e2[0].1, "epochs are shuffled differently");
    let other_seed = Loader::new(
        ds.clone(),
        LoaderConfig {
            seed: 43,
            ..loader_cfg(1)
        },
    )
    .unwrap();
    assert_ne!(e1[0].1, run(&other_seed, 1, 0)[0].1);
    // An epoch visits every sample once (shuffle sampler, drop_last off).
    let all = Loader::new(
        ds.clone(),
        LoaderConfig {
            drop_last: false,
            ..loader_cfg(2)
        },
    )
    .unwrap();
    let mut seen: Vec<usize> = run(&all, 0, 0).into_iter().flat_map(|k| k.1).collect();
    seen.sort();
    assert_eq!(seen, (0..ds.samples.len()).collect::<Vec<_>>());
    let too_big = LoaderConfig {
        batch_size: ds.samples.len() + 1,
        ..loader_cfg(1)
    };
    let msg = Loader::new(ds.clone(), too_big).err().unwrap().to_string();
    assert!(msg.contains("fewer than batch_size"), "{msg}");
    // Dropping an iterator early stops its workers (no hang, no leak of a blocked thread).
    let mut it = three.epoch(0, 0);
    assert!(it.next().unwrap().is_ok());
    drop(it);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn batches_carry_images_and_the_invalid_markers() {
    let out = temp_dir("batch");
    let ds = dataset(&out, 8);
    let cfg = LoaderConfig {
        augment: AugmentConfig::off(),
        sampler: SamplerKind::Sequential,
        drop_last: false,
        ..loader_cfg(2)
    };
    let l = Loader::new(ds.clone(), cfg).unwrap();
    let (mut va_missing, mut expr_missing, mut au_missing) = (0, 0, 0);
    for b in l.epoch(0, 0) {
        let b = b.unwrap();
        let n = b.len();
        assert_eq!(b.images.dims(), &[n, 24, 24, 3]);
        assert_eq!(
            (b.va.dims(), b.expr.dims(), b.aus.dims()),
            (&[n, 2][..], &[n][..], &[n, 12][..])
        );
        let img = b.images.to_vec::<f32>().unwrap();
        assert!(img.iter().all(|v| (-1.0..=1.0).contains(v)));
        let (va, ex, au) = (
            b.va.to_vec::<f32>().unwrap(),
            b.expr.to_vec::<f32>().unwrap(),
            b.aus.to_vec::<f32>().unwrap(),
        );
        for (r, &i) in b.indices.iter().enumerate() {
            let s = &ds.samples[i];
            match s.va {
                Some(v) => assert_eq!(&va[2 * r..2 * r + 2], &v),
                None => {
                    assert_eq!(&va[2 * r..2 * r + 2], &[-5.0, -5.0]);
                    va_missing += 1;
                }
            }
            assert_eq!(ex[r], s.expr.map_or(-1.0, f32::from));
            assert_eq!(b.expr_class[r], s.expr.map_or(-1, i64::from));
            expr_missing += s.expr.is_none() as usize;
            match &s.aus {
                Some(a) => assert!(a
                    .iter()
                    .zip(&au[12 * r..12 * r + 12])
                    .all(|(&x, &y)| x as f32 == y)),
                None => {
                    assert!(au[12 * r..12 * r + 12].iter().all(|&y| y == -1.0));
                    au_missing += 1;
                }
            }
        }
    }
    assert!(
        va_missing + expr_missing + au_missing > 0,
        "fixture should have withheld labels"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_truncated_image_fails_with_its_annotation_line_or_is_skipped() {
    let out = temp_dir("badimg");
    let ds = dataset(&out, 9);
    let victim = &ds.samples[3];
    let path = ds.image_root.join(&victim.image);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let cfg = LoaderConfig {
        sampler: SamplerKind::Sequential,
        ..loader_cfg(2)
    };
    let l = Loader::new(ds.clone(), cfg.clone()).unwrap();
    let results: Vec<_> = l.epoch(0, 0).collect();
    assert_eq!(results.len(), 1, "the epoch ends at the failing batch");
    let msg = results[0].as_ref().unwrap_err().to_string();
    let want = format!(
        "training_set_annotations.txt:{}: field 'image'",
        victim.origin.line
    );
    assert!(msg.contains(&want) && msg.contains("truncated"), "{msg}");

    let skip = Loader::new(
        ds.clone(),
        LoaderConfig {
            on_bad_sample: OnBadSample::Skip,
            ..cfg
        },
    )
    .unwrap();
    let batches: Vec<Batch> = skip.epoch(0, 0).map(|b| b.unwrap()).collect();
    assert_eq!(batches[0].len(), 4);
    assert!(!batches[0].indices.contains(&3));
    assert!(batches[1..].iter().all(|b| b.len() == 5));
    assert_eq!(skip.skipped().total_skipped(), 1);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn balanced_sampler_oversamples_rare_expressions_reproducibly() {
    let origin = mtaffect::data::labels::Origin {
        file: Arc::from(Path::new("x")),
        line: 1,
    };
    let samples: Vec<Sample> = (0..1000)
        .map(|i| Sample {
            image: format!("v/{:05}.jpg", i + 1),
            video: "v".into(),
            frame: i + 1,
            va: None,
            expr: Some(if i % 20 == 0 { 3 } else { 0 }),
            aus: None,
            origin: origin.clone(),
        })
        .collect();
    let s = Sampler::new(SamplerKind::Balanced, &samples, 8, 12);
    let order = s.epoch_order(1, 0);
    assert_eq!(order, s.epoch_order(1, 0));
    assert_ne!(order, s.epoch_order(1, 1));
    let rare = order
        .iter()
        .filter(|&&i| samples[i].expr == Some(3))
        .count();
    // 5% of the data, weight capped at 10x: about a third of the draws.
    assert!((250..450).contains(&rare), "{rare}");
}

#[test]
fn the_load_time_image_check_drops_bad_images_and_caches_good_ones() {
    use mtaffect::data::image_check::{cache_file, check_dataset};
    use mtaffect::data::{BadReason, LoadSummary};
    let out = temp_dir("imgcheck");
    let ds = dataset(&out, 4);
    let cache = cache_file(&out.join("cache"), &ds.image_root);
    let check = |ds: &Dataset, policy| {
        let mut ds = ds.clone();
        let mut summary = LoadSummary::default();
        check_dataset(&mut ds, policy, &mut summary, Some(&cache), true).map(|()| (ds, summary))
    };
    let (all, summary) = check(&ds, OnBadSample::Fail).unwrap();
    assert_eq!(
        (all.samples.len(), summary.total_skipped()),
        (ds.samples.len(), 0)
    );
    let cached = std::fs::read_to_string(&cache).unwrap();
    assert_eq!(cached.lines().count(), ds.samples.len());

    // Corrupted with its size and modification time kept: the cache answers,
    // so the file is not read again.
    let victim = ds.image_root.join(&ds.samples[2].image);
    let (bytes, mtime) = (
        std::fs::read(&victim).unwrap(),
        std::fs::metadata(&victim).unwrap().modified().unwrap(),
    );
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &vec![0u8; bytes.len()], 0).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    assert!(check(&ds, OnBadSample::Fail).is_ok());

    // A new modification time makes it checked again.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap();
    file.set_modified(mtime + std::time::Duration::from_secs(1))
        .unwrap();
    drop(file);
    let err = check(&ds, OnBadSample::Fail).unwrap_err().to_string();
    let want = format!(
        "training_set_annotations.txt:{}: field 'image'",
        ds.samples[2].origin.line
    );
    assert!(err.contains(&want), "{err}");
    let (kept, summary) = check(&ds, OnBadSample::Skip).unwrap();
    assert_eq!(kept.samples.len(), ds.samples.len() - 1);
    assert_eq!(summary.skipped[&BadReason::UndecodableImage], 1);
    std::fs::remove_dir_all(&out).unwrap();
}
