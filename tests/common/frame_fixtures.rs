//! The small frame-model run that the training test files share: its
//! config and random batches with some labels withheld.
// Each test binary uses a subset.
#![allow(dead_code)]

use mtaffect::data::Batch;
use mtaffect::model::{NeckKind, NetConfig, SeResNetConfig, Stem};
use mtaffect::optim::{AdamConfig, LrSchedule};
use mtaffect::train::{OptimConfig, TrainConfig};
use mtaffect::{DType, Rng, Tensor};

/// A small SE-ResNet-10 with dropout (its mask seeds come from the host
/// RNG, so both devices drop the same elements) and gradient clipping on.
pub fn config(device: &str) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.data.image_size = 24;
    c.data.batch_size = 6;
    c.model = NetConfig {
        backbone: SeResNetConfig {
            depth: 10,
            width_mult: 0.25,
            se_reduction: 4,
            se_divisor: 1,
            stem: Stem::Small,
        }
        .into(),
        neck: NeckKind::Gap,
        dropout: 0.2,
        ..NetConfig::default()
    };
    c.optim = OptimConfig::Adam(AdamConfig::default());
    c.schedule = LrSchedule::constant(1e-3);
    c.train.grad_clip = 1.0;
    c.train.device = device.to_string();
    c
}

/// Random images and labels with some withheld (-5 VA, -1 expression and AUs).
pub fn batches(n: usize, rows: usize, size: usize) -> Vec<Batch> {
    let mut rng = Rng::new(11);
    (0..n)
        .map(|step| {
            let images = Tensor::randn([rows, size, size, 3], 0.5, DType::F32, &mut rng);
            let mut va = Vec::new();
            let mut expr = Vec::new();
            let mut aus = Vec::new();
            for r in 0..rows {
                let withheld = r % 4 == 3;
                va.extend(if withheld {
                    [-5.0, -5.0]
                } else {
                    [rng.uniform(-0.9, 0.9), rng.uniform(-0.9, 0.9)]
                });
                expr.push(if withheld { -1 } else { rng.below(8) as i64 });
                aus.extend((0..12).map(|_| if withheld { -1.0 } else { rng.below(2) as f64 }));
            }
            Batch {
                epoch: 0,
                step,
                images,
                va: Tensor::from_f64s(&va, [rows, 2], DType::F32).unwrap(),
                expr: Tensor::from_f64s(
                    &expr.iter().map(|&c| c as f64).collect::<Vec<_>>(),
                    [rows],
                    DType::F32,
                )
                .unwrap(),
                expr_class: expr,
                aus: Tensor::from_f64s(&aus, [rows, 12], DType::F32).unwrap(),
                indices: (0..rows).collect(),
            }
        })
        .collect()
}
