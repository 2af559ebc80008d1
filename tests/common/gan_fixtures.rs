//! The tiny GAN and the batches that the GAN test files share.
// Each test binary uses a subset.
#![allow(dead_code)]

use mtaffect::data::labels::Origin;
use mtaffect::data::{Batch, Sample};
use mtaffect::model::{GeneratorConfig, NeckKind, NetConfig, SeResNetConfig, Stem, Upsample};
use mtaffect::ops::loss::GanLoss;
use mtaffect::train::gan::GanConfig;
use mtaffect::{DType, Rng, Tensor};
use std::path::Path;
use std::sync::Arc;

pub const SIZE: usize = 16;
pub const N: usize = 4;

pub fn tiny_config(upsample: Upsample, loss: GanLoss) -> GanConfig {
    let mut c = GanConfig::default();
    c.data.image_size = SIZE;
    c.data.batch_size = N;
    c.generator = GeneratorConfig {
        image_size: SIZE,
        z_dim: 4,
        channels: 8,
        min_channels: 4,
        upsample,
        ..GeneratorConfig::default()
    };
    c.discriminator = NetConfig {
        backbone: SeResNetConfig {
            depth: 10,
            width_mult: 0.125,
            se_reduction: 4,
            se_divisor: 1,
            stem: Stem::Small,
        }
        .into(),
        neck: NeckKind::Mtanet,
        dropout: 0.0,
        real_fake_head: true,
        ..NetConfig::default()
    };
    c.gan.loss = loss;
    c
}

pub fn samples(n: usize) -> Vec<Sample> {
    let file: Arc<Path> = Arc::from(Path::new("train.txt"));
    (0..n)
        .map(|i| Sample {
            image: format!("v/{i:05}.jpg"),
            video: "v".into(),
            frame: i as u32 + 1,
            va: Some([0.1 * i as f32 - 0.3, 0.2]),
            expr: Some((i % 8) as u8),
            aus: Some((0..12).map(|a| u8::from((a + i) % 3 == 0)).collect()),
            origin: Origin {
                file: file.clone(),
                line: i + 2,
            },
        })
        .collect()
}

/// A real batch with some labels withheld (-5 / -1), as in Aff-Wild2:
/// rows 0 and 3 are fully labelled, row 1 has no label, row 2 lacks its expression.
pub fn batch(rng: &mut Rng) -> Batch {
    let va = vec![0.3f32, -0.2, -5.0, -5.0, 0.6, 0.1, -0.4, 0.5];
    let mut aus: Vec<f32> = (0..N * 12).map(|i| (i % 2) as f32).collect();
    aus[12..24].fill(-1.0);
    let expr_class = vec![4, -1, -1, 6];
    Batch {
        epoch: 0,
        step: 0,
        images: Tensor::uniform([N, SIZE, SIZE, 3], -1.0, 1.0, DType::F32, rng),
        va: Tensor::from_vec(va, [N, 2]).unwrap(),
        expr: Tensor::from_vec(
            expr_class.iter().map(|&e| e as f32).collect::<Vec<_>>(),
            [N],
        )
        .unwrap(),
        expr_class,
        aus: Tensor::from_vec(aus, [N, 12]).unwrap(),
        indices: (0..N).collect(),
    }
}
