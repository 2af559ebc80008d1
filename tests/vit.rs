//! The Vision Transformer backbone: its config (presets, overrides, the
//! errors that name a key), timm's parameter names, the pieces masked-
//! autoencoder pretraining calls (`patch_tokens`, `encode`, `pool`), the
//! multi-task network on ViT features, a tiny ViT that learns on the
//! synthetic set on the CPU, and the shipped ViT config through the command
//! line (train, `features`, a fine-tuning run started from the checkpoint).

#[path = "common/cli.rs"]
mod cli;
use cli::{mtaffect, temp, text};

#[path = "common/synth_loader.rs"]
mod synth_loader;
use mtaffect::data::synth::SynthConfig;
use mtaffect::model::{
    Backbone, BackboneConfig, NeckKind, NetConfig, Pooling, Vit, VitConfig, VitPreset,
};
use mtaffect::nn::{Buffers, Ctx, Scope};
use mtaffect::optim::{AdamConfig, LrSchedule};
use mtaffect::train::runner::Task;
use mtaffect::train::{ConfigFile, FrameTask, OptimConfig, TrainConfig, Trainer};
use mtaffect::{ops, DType, Params, Rng, Tape, Tensor};
use synth_loader::synthetic_train_loader;

#[path = "common/tiny_vit.rs"]
mod tiny_vit;
use tiny_vit::tiny_vit as tiny;

fn config_error(backbone: &str, image_size: usize) -> String {
    let text = format!(
        "[data]\nimage_size = {image_size}\n\n[model.backbone]\nkind = \"vit\"\n{backbone}"
    );
    TrainConfig::from_toml(&text, "x.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn presets_overrides_and_short_names() {
    let text = "[data]\nimage_size = 112\n\n[model.backbone]\nkind = \"vit\"\npreset = \"base\"\n";
    let c = TrainConfig::from_toml(text, "x.toml").unwrap();
    let BackboneConfig::Vit(v) = &c.model.backbone else {
        panic!("{:?}", c.model.backbone)
    };
    let s = v.stack_spec();
    assert_eq!((s.depth, s.width, s.heads, v.patch), (12, 768, 12, 16));
    assert_eq!(v.pooling, Pooling::Cls);
    assert_eq!(c.model.backbone.to_string(), "ViT-B/16");
    let small = VitConfig::default().stack_spec();
    assert_eq!((small.depth, small.width, small.heads), (12, 384, 6));
    let ti = VitConfig {
        preset: VitPreset::Tiny,
        patch: 8,
        ..VitConfig::default()
    };
    assert_eq!(BackboneConfig::from(ti).to_string(), "ViT-Ti/8");
    assert_eq!(
        tiny(Pooling::Mean).to_string(),
        "ViT-Ti/8 depth 2 width 32 heads 2 mean-pool"
    );
    // Overrides survive the round trip through the written config.
    let mut c = TrainConfig::default();
    c.data.image_size = 32;
    c.model.backbone = tiny(Pooling::Mean).into();
    let back = TrainConfig::from_toml(&toml::to_string(&c).unwrap(), "back").unwrap();
    assert_eq!(back.model.backbone, c.model.backbone);
}

#[test]
fn bad_settings_name_their_key() {
    for (backbone, size, needles) in [
        (
            "preset = \"huge\"\n",
            64,
            &["huge", "tiny", "small", "base"][..],
        ),
        ("patch = 12\n", 64, &["model.backbone.patch = 12", "8, 16"]),
        ("pooling = \"max\"\n", 64, &["max", "cls", "mean"]),
        ("patch = 16\n", 40, &["model.backbone.patch = 16", "40"]),
        ("patch = 8\n", 60, &["model.backbone.patch = 8", "60"]),
        (
            "width = 30\nheads = 3\n",
            64,
            &["model.backbone.width = 30", "heads = 3"],
        ),
        ("drop_path = 1.0\n", 64, &["model.backbone.drop_path"]),
        ("mlp_ratio = 0.0\n", 64, &["model.backbone.mlp_ratio"]),
        ("depth = 0\n", 64, &["model.backbone.depth"]),
        ("heads = 0\n", 64, &["model.backbone.heads"]),
        ("patches = 8\n", 64, &["patches", "patch"]),
    ] {
        let e = config_error(backbone, size);
        assert!(e.contains("x.toml"), "{e}");
        for n in needles {
            assert!(e.contains(n), "{backbone}: {n} not in {e}");
        }
    }
}

fn ctx<'a>(tape: &'a Tape, p: &'a Params, b: &'a mut Buffers, rng: &'a mut Rng) -> Ctx<'a> {
    Ctx {
        tape,
        params: p,
        buffers: b,
        training: false,
        rng,
        frozen: false,
    }
}

#[test]
fn parameter_names_are_timms() {
    for (pooling, norm) in [(Pooling::Cls, "norm"), (Pooling::Mean, "fc_norm")] {
        let mut p = Params::new();
        Vit::new(&mut p, &Scope::root(), &tiny(pooling), &mut Rng::new(1)).unwrap();
        let names: Vec<&str> = p.ids().map(|id| p.name(id)).collect();
        assert_eq!(names[0], "cls_token");
        let shape = |n: &str| p.get(p.find(n).unwrap()).dims().to_vec();
        assert_eq!(shape("cls_token"), [1, 1, 32]);
        // NHWC convolution: [D, P, P, 3] where timm has [D, 3, P, P].
        assert_eq!(shape("patch_embed.proj.weight"), [32, 8, 8, 3]);
        assert_eq!(shape("patch_embed.proj.bias"), [32]);
        assert_eq!(shape("blocks.0.attn.qkv.weight"), [96, 32]);
        assert_eq!(shape("blocks.1.attn.proj.weight"), [32, 32]);
        assert_eq!(shape("blocks.1.mlp.fc1.weight"), [128, 32]);
        assert_eq!(shape("blocks.1.mlp.fc2.bias"), [32]);
        assert_eq!(shape(&format!("{norm}.weight")), [32]);
        // The class token, the patch embedding, 12 per block, the norm.
        assert_eq!(names.len(), 1 + 2 + 2 * 12 + 2, "{names:?}");
        // MAE's initialisation: zero biases, unit layer-norm weights, a
        // small class token, xavier-bounded weights.
        let v = |n: &str| p.get(p.find(n).unwrap()).to_f64_vec();
        assert!(v("blocks.0.attn.qkv.bias").iter().all(|&x| x == 0.0));
        assert!(v("blocks.0.norm1.weight").iter().all(|&x| x == 1.0));
        assert!(v("cls_token").iter().all(|&x| x.abs() < 0.1));
        let bound = (6.0f64 / (32.0 + 96.0)).sqrt();
        let qkv = v("blocks.0.attn.qkv.weight");
        let max = qkv.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(max <= bound && max > 0.8 * bound, "{max} vs {bound}");
    }
}

#[test]
fn forward_is_pool_of_encode_of_patch_tokens_and_takes_any_multiple_of_the_patch() {
    for pooling in [Pooling::Cls, Pooling::Mean] {
        let mut rng = Rng::new(5);
        let (mut p, mut b) = (Params::new(), Buffers::new());
        let vit = Vit::new(&mut p, &Scope::root(), &tiny(pooling), &mut rng).unwrap();
        assert_eq!(vit.out_features(), 32);
        let tape = Tape::no_grad();
        // Not square: 2 x 3 patches.
        let x = tape.constant(Tensor::randn([3, 16, 24, 3], 1.0, DType::F32, &mut rng));
        let mut cx = ctx(&tape, &p, &mut b, &mut rng);
        let tokens = vit.patch_tokens(&mut cx, &x).unwrap();
        assert_eq!(tokens.dims(), [3, 6, 32]);
        let enc = vit.encode(&mut cx, &tokens).unwrap();
        assert_eq!(enc.dims(), [3, 7, 32]);
        let pooled = vit.pool(&mut cx, &enc).unwrap();
        let y = vit.forward(&mut cx, &x).unwrap();
        assert_eq!(y.dims(), [3, 32]);
        assert_eq!(y.value().to_f64_vec(), pooled.value().to_f64_vec());
        // The encoder takes any subset of the tokens (MAE's visible ones).
        let few = ops::narrow(&tape, &tokens, 1, 2, 3).unwrap();
        assert_eq!(vit.encode(&mut cx, &few).unwrap().dims(), [3, 4, 32]);
        let e = vit
            .forward(
                &mut cx,
                &tape.constant(Tensor::zeros([1, 20, 16, 3], DType::F32)),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model.backbone.patch = 8") && e.contains("20"),
            "{e}"
        );
    }
}

#[test]
fn patch_tokens_carry_the_sincos_position_of_their_cell() {
    // Two images that differ in one patch only: every other token is equal,
    // and the position embedding makes equal patches at different cells differ.
    let mut rng = Rng::new(9);
    let (mut p, mut b) = (Params::new(), Buffers::new());
    let vit = Vit::new(&mut p, &Scope::root(), &tiny(Pooling::Cls), &mut rng).unwrap();
    let tape = Tape::no_grad();
    let img = Tensor::full([1, 16, 16, 3], 0.3, DType::F32);
    let mut other = img.to_f64_vec();
    other[0] = -1.0; // pixel (0, 0): patch 0
    let other = Tensor::from_f64s(&other, [1, 16, 16, 3], DType::F32).unwrap();
    let mut cx = ctx(&tape, &p, &mut b, &mut rng);
    let a = vit.patch_tokens(&mut cx, &tape.constant(img)).unwrap();
    let o = vit.patch_tokens(&mut cx, &tape.constant(other)).unwrap();
    let (a, o) = (a.value().to_f64_vec(), o.value().to_f64_vec());
    let tok = |v: &[f64], i: usize| v[i * 32..(i + 1) * 32].to_vec();
    assert_ne!(tok(&a, 0), tok(&o, 0));
    for i in 1..4 {
        assert_eq!(tok(&a, i), tok(&o, i));
    }
    // Same pixels everywhere: tokens differ by their position embeddings.
    let pe = mtaffect::nn::sincos_pos_embed_2d(2, 2, 32, false, DType::F64)
        .unwrap()
        .to_f64_vec();
    for i in 1..4 {
        for j in 0..32 {
            let want = pe[i * 32 + j] - pe[j];
            assert!((a[i * 32 + j] - a[j] - want).abs() < 1e-5);
        }
    }
}

#[test]
fn the_multi_task_net_runs_on_vit_features_with_either_neck() {
    for neck in [NeckKind::Gap, NeckKind::Mtanet] {
        let cfg = NetConfig {
            neck,
            backbone: tiny(Pooling::Cls).into(),
            ..NetConfig::default()
        };
        let mut rng = Rng::new(3);
        let (mut p, mut b) = (Params::new(), Buffers::new());
        let net = mtaffect::model::MtlNet::new(&cfg, &mut p, &mut b, &mut rng).unwrap();
        let tape = Tape::new();
        let x = tape.constant(Tensor::randn([2, 16, 16, 3], 1.0, DType::F32, &mut rng));
        let mut cx = ctx(&tape, &p, &mut b, &mut rng);
        cx.training = true;
        let out = net.forward(&mut cx, &x).unwrap();
        let f = if neck == NeckKind::Mtanet { 64 } else { 32 };
        assert_eq!(out.features.dims(), [2, f]);
        let loss = ops::sum(&tape, &out.expr, &[], false).unwrap();
        let grads = tape.backward(&loss).unwrap();
        for n in [
            "cls_token",
            "patch_embed.proj.weight",
            "blocks.1.mlp.fc2.weight",
            "norm.bias",
        ] {
            let g = grads.get(p.find(n).unwrap()).unwrap().to_f64_vec();
            assert!(g.iter().any(|&v| v != 0.0), "{neck:?}: no gradient for {n}");
        }
    }
}

#[test]
fn a_tiny_vit_learns_on_the_synthetic_set() {
    let dir = std::env::temp_dir().join(format!("mtaffect-vit-synth-{}", std::process::id()));
    let synth = SynthConfig {
        videos: 4,
        frames_per_video: 16,
        image_size: 32,
        seed: 4,
        val_fraction: 0.25,
        ..SynthConfig::default()
    };
    let loader = synthetic_train_loader(&dir, &synth, 8, 1);
    let mut cfg = TrainConfig::default();
    cfg.data.image_size = 32;
    cfg.data.batch_size = 8;
    cfg.model = NetConfig {
        backbone: tiny(Pooling::Cls).into(),
        neck: NeckKind::Gap,
        dropout: 0.0,
        ..NetConfig::default()
    };
    cfg.optim = OptimConfig::Adam(AdamConfig::default());
    cfg.schedule = LrSchedule::constant(1e-3);
    let mut task = FrameTask::new(Trainer::new(&cfg).unwrap(), loader, None, None).unwrap();
    let losses: Vec<f64> = (0..30).map(|_| task.step().unwrap().loss).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&losses[..6]), mean(&losses[24..]));
    assert!(
        losses.iter().all(|l| l.is_finite()) && last < 0.8 * first,
        "loss did not fall: {first:.3} -> {last:.3} ({losses:?})"
    );
    eprintln!("loss {first:.3} -> {last:.3}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_shipped_vit_config_trains_extracts_features_and_starts_a_mean_pooled_run() {
    let dir = temp("vit-cli");
    let data = dir.join("data");
    let o = mtaffect(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--videos",
        "5",
        "--frames",
        "12",
        "--size",
        "32",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let train = |runs: &str, extra: &[&str]| {
        let runs = dir.join(runs);
        let mut args = vec![
            "train",
            "--config",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/configs/vit-synthetic-cpu.toml"
            ),
            "--data",
            data.to_str().unwrap(),
            "--quiet",
        ];
        let sets = [
            "data.image_size=32".to_string(),
            "data.batch_size=8".into(),
            "train.steps=2".into(),
            "train.eval_every=2".into(),
            format!("run.runs_dir={:?}", runs.display().to_string()),
        ];
        for s in &sets {
            args.extend(["--set", s]);
        }
        args.extend(extra);
        let o = mtaffect(&args);
        assert!(o.status.success(), "{}", text(&o));
        let run = std::fs::read_dir(&runs)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        (text(&o), run)
    };
    let (_, run) = train("runs", &[]);
    let written = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        written.contains("kind = \"vit\"") && written.contains("width = 64"),
        "{written}"
    );
    let best = run.join("best.safetensors");

    // Per-frame embeddings: the neck pools nothing more, so width 64.
    let feats = dir.join("features");
    let o = mtaffect(&[
        "features",
        "--checkpoint",
        best.to_str().unwrap(),
        "--out",
        feats.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let f = mtaffect::data::sequence::VideoFeatures::load(&feats.join("synth0000.safetensors"))
        .unwrap();
    assert_eq!((f.dim, f.features.len()), (64, 12 * 64));

    // Mean pooling from a class-token checkpoint: the blocks load, `norm`
    // is ignored and `fc_norm` starts fresh.
    let (out, _) = train(
        "tuned",
        &[
            "--set",
            "model.backbone.pooling=\"mean\"",
            "--init-from",
            best.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("tensors loaded")
            && out.contains("fc_norm.weight")
            && out.contains("norm.bias"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
