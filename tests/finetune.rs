//! Fine-tuning's per-group tools (`train.freeze`, `train.lr_mult`): a
//! frozen group's weights stay as they were while the others train, a
//! multiplier of 0 leaves a group's weights as frozen would, a multiplier
//! of 1 changes nothing at all, and unknown groups are config errors
//! listing the known ones. Layer-wise decay (`train.layer_decay`) scales a
//! ViT's first update layer by layer, and needs a layered backbone.

#[path = "common/frame_fixtures.rs"]
mod frame_fixtures;
use frame_fixtures::{batches, config};
use mtaffect::model::{BackboneConfig, ParamGroup, VitConfig};
use mtaffect::optim::{LrSchedule, SgdConfig};
use mtaffect::train::{ConfigFile, OptimConfig, TrainConfig, Trainer};

/// Parameter values by name.
type Named = Vec<(String, Vec<f64>)>;

/// Every parameter's values by name, and the losses, after `steps` steps of `cfg`.
fn train(cfg: &TrainConfig, steps: usize) -> (Named, Vec<f64>, Trainer) {
    let mut t = Trainer::new(cfg).unwrap();
    let losses = batches(steps, 6, 24)
        .iter()
        .map(|b| t.step(b).unwrap().loss)
        .collect();
    let values = t
        .params
        .ids()
        .map(|id| (t.params.name(id).to_string(), t.params.get(id).to_f64_vec()))
        .collect();
    (values, losses, t)
}

fn initial(cfg: &TrainConfig) -> Vec<Vec<f64>> {
    let t = Trainer::new(cfg).unwrap();
    t.params
        .ids()
        .map(|id| t.params.get(id).to_f64_vec())
        .collect()
}

fn is_backbone(name: &str) -> bool {
    name.starts_with("stem.") || name.starts_with("layer")
}

#[test]
fn a_frozen_group_keeps_its_weights_while_the_others_train() {
    for (freeze, mult) in [(true, None), (false, Some(0.0))] {
        let mut cfg = config("cpu");
        if freeze {
            cfg.train.freeze = vec![ParamGroup::Backbone];
        }
        if let Some(m) = mult {
            cfg.train.lr_mult.insert(ParamGroup::Backbone, m);
        }
        let init = initial(&cfg);
        let (after, _, t) = train(&cfg, 3);
        let (mut kept, mut moved) = (0, 0);
        for ((name, v), v0) in after.iter().zip(&init) {
            if is_backbone(name) {
                assert_eq!(v, v0, "{name} changed (freeze {freeze}, lr_mult {mult:?})");
                kept += 1;
            } else if name.starts_with("head.") {
                assert_ne!(v, v0, "{name} did not train");
                moved += 1;
            }
        }
        assert!(kept > 20 && moved == 6, "{kept} kept, {moved} moved");
        // Batch norm in a frozen backbone still tracks the batches.
        let rm = t.buffers.find("stem.bn.running_mean").unwrap();
        assert!(t.buffers.get(rm).to_f64_vec().iter().any(|&x| x != 0.0));
    }
}

#[test]
fn a_multiplier_of_one_changes_nothing_with_sgd_and_adam() {
    for optim in [
        OptimConfig::Sgd(SgdConfig {
            nesterov: true,
            weight_decay: 1e-3,
            ..SgdConfig::default()
        }),
        config("cpu").optim,
    ] {
        let mut plain = config("cpu");
        plain.optim = optim;
        plain.schedule = LrSchedule::constant(1e-2);
        let mut ones = plain.clone();
        for g in [ParamGroup::Backbone, ParamGroup::Neck, ParamGroup::Heads] {
            ones.train.lr_mult.insert(g, 1.0);
        }
        let (a, la, _) = train(&plain, 3);
        let (b, lb, _) = train(&ones, 3);
        assert_eq!(la, lb);
        assert!(a == b, "weights differ");
        // And a multiplier other than 1 does change the run.
        let mut half = plain.clone();
        half.train.lr_mult.insert(ParamGroup::Heads, 0.5);
        assert_ne!(train(&half, 3).0, a);
    }
}

#[test]
fn unknown_groups_bad_multipliers_and_a_strict_load_of_nothing_are_config_errors() {
    for text in [
        "[train]\nfreeze = [\"bakbone\"]\n",
        "[train.lr_mult]\nbakbone = 0.1\n",
    ] {
        let e = TrainConfig::from_toml(text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.toml")
                && e.contains("bakbone")
                && e.contains("`backbone`, `neck`, `heads`"),
            "{e}"
        );
    }
    let e = TrainConfig::from_toml("[train.lr_mult]\nneck = -1.0\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train.lr_mult.neck = -1") && e.contains(">= 0"),
        "{e}"
    );
    let e = TrainConfig::from_toml("[model]\ninit_strict = true\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.init_strict") && e.contains("model.init_from"),
        "{e}"
    );
    let ok = TrainConfig::from_toml(
        "[train]\nfreeze = [\"backbone\"]\nlr_mult = { heads = 0.1 }\n",
        "x.toml",
    )
    .unwrap();
    assert_eq!(ok.train.freeze, [ParamGroup::Backbone]);
    assert_eq!(ok.train.lr_mult[&ParamGroup::Heads], 0.1);
    assert_eq!(TrainConfig::from_toml(&ok.to_toml(), "again").unwrap(), ok);
}

#[test]
fn the_gan_refuses_groups_and_init_from() {
    use mtaffect::train::gan::GanConfig;
    let e = GanConfig::default()
        .with_overrides(&["train.freeze=[\"heads\"]".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.freeze") && e.contains("GAN"), "{e}");
    let e = GanConfig::default()
        .with_overrides(&["discriminator.init_from=\"x.safetensors\"".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("discriminator.init_from"), "{e}");
}

#[test]
fn layer_decay_scales_each_vit_layers_update() {
    let mut plain = config("cpu");
    plain.model.backbone = BackboneConfig::Vit(VitConfig {
        depth: Some(2),
        width: Some(16),
        heads: Some(2),
        patch: 8,
        ..VitConfig::default()
    });
    plain.model.dropout = 0.0;
    // Plain SGD: an update is the rate times the gradient, which the first
    // step computes the same way in both runs.
    plain.optim = OptimConfig::Sgd(SgdConfig {
        momentum: 0.0,
        ..SgdConfig::default()
    });
    plain.schedule = LrSchedule::constant(1e-2);
    let mut decayed = plain.clone();
    decayed.train.layer_decay = 0.5;
    let init = initial(&plain);
    let ((a, _, _), (b, _, _)) = (train(&plain, 1), train(&decayed, 1));
    let want = |name: &str| match name {
        n if n == "cls_token" || n.starts_with("patch_embed.") => 0.125,
        n if n.starts_with("blocks.0.") => 0.25,
        n if n.starts_with("blocks.1.") => 0.5,
        _ => 1.0,
    };
    let mut checked = 0;
    for (((name, va), (_, vb)), v0) in a.iter().zip(&b).zip(&init) {
        for ((pa, pb), p0) in va.iter().zip(vb).zip(v0) {
            let (da, db) = (pa - p0, pb - p0);
            // Updates well above the f32 spacing of the weights.
            if da.abs() > 1e-4 {
                let (r, w) = (db / da, want(name));
                assert!((r - w).abs() < 2e-3 * w, "{name}: ratio {r}, want {w}");
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked} updates compared");
    // A backbone without a stack of like layers refuses it, naming the key.
    let mut se = config("cpu");
    se.train.layer_decay = 0.75;
    let e = TrainConfig::from_toml(&se.to_toml(), "cfg")
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.layer_decay") && e.contains("vit"), "{e}");
}
