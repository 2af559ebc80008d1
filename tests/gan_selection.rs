//! Model selection without the judge, on a tiny GAN run over a tiny
//! synthetic set: every evaluation's `select` record equals a recount of
//! the discriminator's expression head on that evaluation's checkpoint, and
//! `best.safetensors` is the checkpoint with the most faces read as
//! requested (ties: the higher mean probability, then the earlier step).

use mtaffect::model::Upsample;
use mtaffect::nn::Ctx;
use mtaffect::ops::loss::GanLoss;
use mtaffect::train::gan::{gan_run, Conditions, GanTrainer, SELECT_SEED};
use mtaffect::{DType, Params, Rng, Tape, Tensor};

#[path = "common/gan_fixtures.rs"]
mod gan_fixtures;
use gan_fixtures::tiny_config;

const PER_CLASS: usize = 3;

fn snapshot(p: &Params) -> Vec<Vec<f64>> {
    p.ids().map(|id| p.get(id).to_f64_vec()).collect()
}

/// (faces read as requested, mean probability of the requested expression,
/// diversity) of a checkpoint's weight average, counted here from the
/// generator and the discriminator's forward pass.
fn recount(gan: &mut GanTrainer) -> (u64, f64, f64) {
    let g = gan.config.generator.clone();
    let mut noise = Rng::new(SELECT_SEED);
    let (mut matched, mut spread, mut pairs, mut prob) = (0u64, 0.0, 0, 0.0);
    for e in 0..g.n_expr {
        let rows = vec![gan.prototypes[e].clone(); PER_CLASS];
        let cond = Conditions::from_rows(&rows, g.n_aus, g.n_expr).unwrap();
        let z = Tensor::randn([PER_CLASS, g.z_dim], 1.0, DType::F32, &mut noise);
        let images = gan.generate(&z, &cond.input, false).unwrap();
        let px = images.to_f64_vec();
        let size = px.len() / PER_CLASS;
        for i in 1..PER_CLASS {
            let (a, b) = (&px[(i - 1) * size..i * size], &px[i * size..(i + 1) * size]);
            spread += a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>() / size as f64;
            pairs += 1;
        }
        let tape = Tape::no_grad();
        let mut cx = Ctx {
            tape: &tape,
            params: &gan.d_params,
            buffers: &mut gan.d_buffers,
            training: false,
            rng: &mut Rng::new(0),
            frozen: false,
        };
        let out = gan
            .discriminator
            .forward(&mut cx, &tape.constant(images))
            .unwrap();
        for scores in out.expr.value().to_f64_vec().chunks(g.n_expr) {
            let top = (0..g.n_expr)
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                .unwrap();
            matched += u64::from(top == e);
            let exp: Vec<f64> = scores.iter().map(|s| s.exp()).collect();
            prob += exp[e] / exp.iter().sum::<f64>();
        }
    }
    let total = (PER_CLASS * g.n_expr) as f64;
    (matched, prob / total, spread / pairs as f64)
}

#[test]
fn selection_logs_the_discriminators_reading_and_keeps_the_best() {
    let dir = std::env::temp_dir().join(format!("mtaffect-gan-select-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = tiny_config(Upsample::NearestConv, GanLoss::NonSaturating);
    cfg.data.root = dir.join("data");
    cfg.data.synth_videos = 24;
    cfg.data.synth_frames = 6;
    cfg.train.steps = 40;
    cfg.train.eval_every = 5;
    cfg.train.log_every = 1;
    cfg.gan.select_per_class = PER_CLASS;
    // The other levers on, so a whole run goes through them too.
    cfg.gan.mode_seeking_weight = 1.0;
    cfg.gan.instance_noise = 0.1;
    cfg.gan.g_expr_weight = 2.0;
    // Fast players, so the figure moves between evaluations.
    cfg.gan.lr_d = 0.02;
    cfg.gan.lr_g = 0.02;
    cfg.gan.g_ema_decay = 0.5;
    cfg.run.runs_dir = dir.join("runs");
    cfg.run.name = "select".into();
    cfg.run.quiet = true;
    let (_, summary) = gan_run(&cfg, None).unwrap();
    let run = summary.run_dir;

    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let select: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["split"] == "select").collect();
    assert_eq!(select.len(), 8, "one record per evaluation");
    let train: Vec<&serde_json::Value> = records.iter().filter(|r| r["split"] == "train").collect();
    assert!(train
        .iter()
        .all(|r| r["g_mode_seeking"].as_f64().unwrap() > 0.0));
    // The std logged after step k is 0.1 * (1 - k / 40).
    for r in &train {
        let k = r["step"].as_f64().unwrap();
        let s = r["instance_noise"].as_f64().unwrap();
        assert!((s - 0.1 * (1.0 - k / 40.0)).abs() < 1e-12, "{r}");
    }

    let cpu = |mut c: mtaffect::train::gan::GanConfig| {
        c.train.device = "cpu".into();
        GanTrainer::new(&c).unwrap()
    };
    let mut best: Option<((u64, f64), u64)> = None;
    for r in &select {
        let step = r["step"].as_u64().unwrap();
        let mut gan = cpu(cfg.clone());
        gan.load_checkpoint(&run.join(format!("step-{step:06}.safetensors")))
            .unwrap();
        let (matched, confidence, diversity) = recount(&mut gan);
        let rate = matched as f64 / (8 * PER_CLASS) as f64;
        println!("step {step}: discriminator agreement {rate:.3}, diversity {diversity:.5}");
        assert_eq!(
            r["d_expr_matched"].as_u64().unwrap(),
            matched,
            "step {step}"
        );
        assert_eq!(r["d_expr_total"].as_u64().unwrap(), 8 * PER_CLASS as u64);
        // The JSON's decimal text round-trips to within an ulp or two here.
        let logged = r["d_expr_agreement"].as_f64().unwrap();
        assert!(
            (logged - rate).abs() <= 1e-15,
            "step {step}: {logged} vs {rate}"
        );
        let logged = r["diversity"].as_f64().unwrap();
        assert!(
            (logged - diversity).abs() <= 1e-12 * diversity,
            "step {step}: {logged} vs {diversity}"
        );
        let logged = r["d_expr_confidence"].as_f64().unwrap();
        assert!(
            (logged - confidence).abs() <= 1e-6,
            "step {step}: {logged} vs {confidence}"
        );
        let better = best.is_none_or(|(b, _)| (matched, confidence) > b);
        assert_eq!(
            r["best"].as_bool().unwrap(),
            better,
            "step {step}: {r} after {best:?}"
        );
        if better {
            best = Some(((matched, confidence), step));
        }
    }
    assert_eq!(summary.best.map(|(_, s)| s), best.map(|(_, s)| s));
    assert!(
        best.unwrap().1 > select[0]["step"].as_u64().unwrap(),
        "the figure moved up at least once, so the argmax is not the first evaluation by default"
    );
    let (_, best_step) = best.unwrap();
    let (mut kept, mut chosen) = (cpu(cfg.clone()), cpu(cfg.clone()));
    kept.load_checkpoint(&run.join("best.safetensors")).unwrap();
    chosen
        .load_checkpoint(&run.join(format!("step-{best_step:06}.safetensors")))
        .unwrap();
    assert_eq!(kept.progress.step, best_step);
    for (a, b) in [
        (kept.g_ema.as_ref().unwrap(), chosen.g_ema.as_ref().unwrap()),
        (&kept.g_params, &chosen.g_params),
        (&kept.d_params, &chosen.d_params),
        (&kept.d_buffers, &chosen.d_buffers),
    ] {
        assert_eq!(snapshot(a), snapshot(b));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
