//! `mtaffect features`: the per-frame embeddings of a trained frame model for
//! every frame image of every annotated video (labelled or not, so temporal
//! models see unbroken sequences), one feature file per video.

use super::Trainer;
use crate::data::labels::{split_image_name, Origin, Sample};
use crate::data::sequence::{FrameHeads, VideoFeatures};
use crate::data::{AugmentConfig, Dataset, Loader, LoaderConfig, OnBadSample, SamplerKind};
use crate::{Error, Result};
use std::path::Path;
use std::sync::Arc;

/// What an extraction wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureSummary {
    pub videos: usize,
    pub frames: usize,
    pub dim: usize,
}

/// The frame images of `video` under `image_root` (`<frame>.jpg|png`), as
/// unlabelled samples in frame order.
pub fn video_frames(image_root: &Path, video: &str) -> Result<Vec<Sample>> {
    let dir = image_root.join(video);
    let file: Arc<Path> = Arc::from(dir.as_path());
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let name = e.map_err(|e| Error::io(&dir, e))?.file_name();
        let image = format!("{video}/{}", name.to_string_lossy());
        let Some((_, frame)) = split_image_name(&image) else {
            continue;
        };
        let origin = Origin {
            file: file.clone(),
            line: 0,
        };
        out.push(Sample::unlabelled(image, video, frame, origin));
    }
    if out.is_empty() {
        return Err(Error::Config(format!(
            "{}: no frame images (<frame>.jpg)",
            dir.display()
        )));
    }
    out.sort_by_key(|s| s.frame);
    Ok(out)
}

/// Embeds every frame of `videos` with `trainer`'s model and writes
/// `<out>/<video>.safetensors`, each as soon as its last frame is embedded.
pub fn extract_features(
    trainer: &mut Trainer,
    image_root: &Path,
    videos: &[String],
    out: &Path,
    source: &str,
    batch_size: usize,
) -> Result<FeatureSummary> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut samples = Vec::new();
    let mut ends = Vec::with_capacity(videos.len());
    for v in videos {
        VideoFeatures::path(out, v)?;
        samples.extend(video_frames(image_root, v)?);
        ends.push(samples.len());
    }
    let frames: Vec<u32> = samples.iter().map(|s| s.frame).collect();
    let data = &trainer.config.data;
    let loader = Loader::new(
        Dataset {
            image_root: image_root.to_path_buf(),
            samples,
            label_set: data.label_set,
        },
        LoaderConfig {
            batch_size,
            image_size: data.image_size,
            workers: data.workers,
            prefetch: 2,
            seed: 0,
            sampler: SamplerKind::Sequential,
            drop_last: false,
            augment: AugmentConfig::off(),
            on_bad_sample: OnBadSample::Fail,
        },
    )?;
    // Rows of features and of the three heads not yet written, in frame order.
    let mut rows: [Vec<f32>; 4] = Default::default();
    let mut widths = [0usize; 4];
    let (mut video, mut start) = (0, 0);
    for b in loader.epoch(0, 0) {
        let b = b?;
        let o = trainer.eval_forward(&b.images)?;
        for (k, v) in [&o.features, &o.va, &o.expr, &o.au].into_iter().enumerate() {
            widths[k] = v.dims()[1];
            rows[k].extend_from_slice(v.value().to_cpu()?.data::<f32>()?);
        }
        // Sequential order: videos complete one after another.
        while video < videos.len() && rows[0].len() / widths[0] >= ends[video] - start {
            let n = ends[video] - start;
            let mut take = |k: usize| {
                let rest = rows[k].split_off(n * widths[k]);
                std::mem::replace(&mut rows[k], rest)
            };
            let (features, va, expr, au) = (take(0), take(1), take(2), take(3));
            VideoFeatures {
                video: videos[video].clone(),
                frames: frames[start..ends[video]].to_vec(),
                features,
                dim: widths[0],
                heads: Some(FrameHeads { va, expr, au }),
            }
            .save(out, source)?;
            start = ends[video];
            video += 1;
        }
    }
    Ok(FeatureSummary {
        videos: video,
        frames: start,
        dim: widths[0],
    })
}
