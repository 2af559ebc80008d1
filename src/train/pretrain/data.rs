//! The images a pretraining run reads, labels ignored: for the synthetic set
//! and ABAW layouts, every frame of the videos the training annotations name
//! (labelled or not: unlabelled frames are what pretraining is for), with
//! the validation videos' frames held out for evaluation; for a plain
//! folder, every image below it.

use super::PretrainConfig;
use crate::data::image_folder::scan_images;
use crate::data::labels::Sample;
use crate::data::{Dataset, LoadSummary, Loader, ReadOptions};
use crate::train::features::video_frames;
use crate::train::{loader_for, prepare_data, DataSource};
use crate::Result;
use std::collections::HashSet;
use std::path::Path;

/// The training loader (shuffled, augmented) and the evaluation loader
/// (`eval.images` images spread evenly over the held-out set, in order).
pub fn pretrain_loaders(cfg: &PretrainConfig) -> Result<(Loader, Loader)> {
    let d = &cfg.data;
    let quiet = cfg.run.quiet;
    let (image_root, train, held_out) = match d.source {
        DataSource::Folder => {
            let all = scan_images(&d.root)?;
            (d.root.clone(), all.clone(), all)
        }
        DataSource::Synthetic | DataSource::Abaw => {
            let root = prepare_data(d, quiet)?;
            let images = root.join("cropped_aligned");
            let frames = |file: &str| video_samples(&root.join(file), &images, cfg);
            (
                images.clone(),
                frames(&d.train_annotations)?,
                frames(&d.val_annotations)?,
            )
        }
    };
    let held_out = spread(held_out, cfg.eval.images);
    let seed_quiet = (cfg.train.seed, quiet);
    let dataset = |samples: Vec<Sample>| Dataset {
        image_root: image_root.clone(),
        samples,
        label_set: d.label_set,
    };
    let train = loader_for(
        dataset(train),
        LoadSummary::default(),
        "pretraining images",
        d,
        seed_quiet,
        true,
    )?;
    let eval = loader_for(
        dataset(held_out),
        LoadSummary::default(),
        "evaluation images",
        d,
        seed_quiet,
        false,
    )?;
    Ok((train, eval))
}

/// Every frame image of every video `annotations` names, in the file's
/// video order, unlabelled.
fn video_samples(annotations: &Path, images: &Path, cfg: &PretrainConfig) -> Result<Vec<Sample>> {
    let opts = ReadOptions {
        label_set: cfg.data.label_set,
        on_bad_sample: cfg.data.on_bad_sample,
        image_root: None,
    };
    let (ds, _) = Dataset::from_mtl(annotations, images, &opts)?;
    let mut seen = HashSet::new();
    let videos: Vec<&str> = ds
        .samples
        .iter()
        .map(|s| s.video.as_str())
        .filter(|v| seen.insert(*v))
        .collect();
    let mut out = Vec::new();
    for v in videos {
        out.extend(video_frames(images, v)?);
    }
    Ok(out)
}

/// At most `n` of `samples`, evenly spaced (every k-th), in order.
fn spread(samples: Vec<Sample>, n: usize) -> Vec<Sample> {
    let step = samples.len().div_ceil(n.max(1)).max(1);
    samples.into_iter().step_by(step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::labels::Origin;
    use std::sync::Arc;

    #[test]
    fn spread_takes_every_kth_up_to_n() {
        let origin = Origin {
            file: Arc::from(Path::new("x")),
            line: 0,
        };
        let s: Vec<Sample> = (0..10)
            .map(|i| Sample::unlabelled(format!("v/{i:05}.jpg"), "v", i, origin.clone()))
            .collect();
        let frames = |n| {
            spread(s.clone(), n)
                .iter()
                .map(|s| s.frame)
                .collect::<Vec<_>>()
        };
        assert_eq!(frames(3), [0, 4, 8]);
        assert_eq!(frames(5), [0, 2, 4, 6, 8]);
        assert_eq!(frames(100).len(), 10);
    }
}
