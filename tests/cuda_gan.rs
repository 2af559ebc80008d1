//! The multi-task GAN on CUDA (`train.device = "cuda"`): alternating steps
//! that follow the CPU's from the same seed, each player's step leaving the
//! other's weights alone on the GPU too, and a checkpoint written from the GPU
//! that samples on the CPU, and the levers (mode seeking, instance noise,
//! generator expression weight) and model selection's reading on the GPU as
//! on the CPU. Each test is `#[ignore = "needs a CUDA GPU"]`; `--include-ignored`
//! runs them (scripts/gpu_checks.sh).

mod common;
use common::require_gpu;

#[path = "common/gan_fixtures.rs"]
mod gan_fixtures;
use gan_fixtures::{batch, samples, tiny_config};
use mtaffect::model::Upsample;
use mtaffect::ops::loss::GanLoss;
use mtaffect::train::gan::{
    discriminator_agreement, ConditionBank, GanConfig, GanTrainer, PlayerStats,
};
use mtaffect::{Params, Rng};

fn trainer(device: &str) -> GanTrainer {
    trainer_with(device, |_| ())
}

fn trainer_with(device: &str, f: impl Fn(&mut GanConfig)) -> GanTrainer {
    let mut c = tiny_config(Upsample::ConvTranspose, GanLoss::NonSaturating);
    c.train.device = device.into();
    f(&mut c);
    GanTrainer::new(&c).unwrap()
}

/// Mode seeking, instance noise (drawn on the host, so both devices add the
/// same) and a heavier generator expression term.
fn levers(c: &mut GanConfig) {
    c.gan.mode_seeking_weight = 1.0;
    c.gan.instance_noise = 0.1;
    c.gan.g_expr_weight = 2.0;
}

/// Three rounds of a D step then a G step on the same batches.
fn rounds(t: &mut GanTrainer) -> Vec<PlayerStats> {
    let bank = ConditionBank::from_samples(&samples(16), 12, 8).unwrap();
    let mut rng = Rng::new(3);
    let mut out = Vec::new();
    for _ in 0..3 {
        let b = batch(&mut rng);
        out.push(t.d_step(&b, &bank).unwrap());
        out.push(t.g_step(&b.images, &bank).unwrap());
    }
    out
}

fn host_values(p: &Params) -> Vec<Vec<f64>> {
    p.ids().map(|id| p.get(id).to_f64_vec()).collect()
}

fn assert_steps_agree(cpu: &[PlayerStats], gpu: &[PlayerStats]) {
    for (i, (c, g)) in cpu.iter().zip(gpu).enumerate() {
        println!(
            "cuda_gan: step {i}: cpu loss {} adv {}, gpu loss {} adv {}",
            c.loss, c.adv, g.loss, g.adv
        );
        for (a, b) in [
            (g.loss, c.loss),
            (g.adv, c.adv),
            (g.mtl, c.mtl),
            (g.d_fake, c.d_fake),
            (g.mode_seeking, c.mode_seeking),
        ] {
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1e-2),
                "step {i}: gpu {g:?}\ncpu {c:?}"
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_gan_steps_follow_the_cpu_steps() {
    require_gpu();
    let cpu = rounds(&mut trainer("cpu"));
    let gpu = rounds(&mut trainer("cuda"));
    assert_steps_agree(&cpu, &gpu);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_gan_levers_and_selection_follow_the_cpu() {
    require_gpu();
    let (mut cpu, mut gpu) = (trainer_with("cpu", levers), trainer_with("cuda", levers));
    let (sc, sg) = (rounds(&mut cpu), rounds(&mut gpu));
    assert!(sc.iter().skip(1).step_by(2).all(|s| s.mode_seeking > 0.0));
    assert_steps_agree(&sc, &sg);
    let (ac, ag) = (
        discriminator_agreement(&mut cpu, 4).unwrap(),
        discriminator_agreement(&mut gpu, 4).unwrap(),
    );
    println!(
        "cuda_gan: selection cpu {}/{} confidence {:.6} diversity {:.6}, gpu {}/{} confidence {:.6} diversity {:.6}",
        ac.matched, ac.total, ac.confidence, ac.diversity, ag.matched, ag.total, ag.confidence, ag.diversity
    );
    for (a, b) in [(ag.confidence, ac.confidence), (ag.diversity, ac.diversity)] {
        assert!(
            (a - b).abs() <= 1e-3 * b.abs().max(1e-2),
            "gpu {a} vs cpu {b}"
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn each_gpu_step_updates_only_its_player_and_the_checkpoint_samples_on_the_cpu() {
    require_gpu();
    let mut t = trainer("cuda");
    let bank = ConditionBank::from_samples(&samples(16), 12, 8).unwrap();
    let b = batch(&mut Rng::new(4));
    let (g0, d0) = (host_values(&t.g_params), host_values(&t.d_params));
    t.d_step(&b, &bank).unwrap();
    assert_eq!(
        host_values(&t.g_params),
        g0,
        "a D step changed the generator"
    );
    let d1 = host_values(&t.d_params);
    assert_ne!(d1, d0, "a D step left the discriminator unchanged");
    t.g_step(&b.images, &bank).unwrap();
    assert_eq!(
        host_values(&t.d_params),
        d1,
        "a G step changed the discriminator"
    );
    assert_ne!(
        host_values(&t.g_params),
        g0,
        "a G step left the generator unchanged"
    );

    let dir = std::env::temp_dir().join(format!("mtaffect-cuda-gan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gan.safetensors");
    t.save_checkpoint(&path).unwrap();
    let mut on_cpu = trainer("cpu");
    on_cpu.load_checkpoint(&path).unwrap();
    assert_eq!(host_values(&on_cpu.g_params), host_values(&t.g_params));
    // Eval-mode samples from the same noise agree across devices.
    let z = on_cpu.noise(2);
    let cond = bank.sample(2, &mut Rng::new(5)).unwrap();
    let (a, b) = (
        on_cpu
            .generate(&z, &cond.input, false)
            .unwrap()
            .to_f64_vec(),
        t.generate(&z, &cond.input, false).unwrap().to_f64_vec(),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-4, "{x} vs {y}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
