//! Synthetic Aff-Wild2-like data: procedurally drawn faces whose brows,
//! lids, cheeks and lips follow 12 AU intensities, in short videos with
//! smoothly changing expressions, poses and nuisances, written in the ABAW
//! multi-task layout:
//!
//! ```text
//! <out>/cropped_aligned/<video>/<frame:05>.jpg
//! <out>/training_set_annotations.txt
//! <out>/validation_set_annotations.txt
//! ```
//!
//! Labels: AU k is 1 when its intensity is >= 0.5; the expression is the
//! class of the segment being played; valence/arousal follow the class's
//! prototype scaled by intensity. Some labels are withheld as in Aff-Wild2
//! (whole videos without a task, runs of frames without one); frames left
//! with no label at all are rendered but get no annotation line. Output is a
//! pure function of the config: videos are rendered in parallel, each from
//! its own stream of the seed, so the thread count changes nothing.

mod dynamics;
mod face;
mod raster;
mod scene;

pub use dynamics::{prototype, simulate, FrameTruth};
pub use face::{au, Identity, Pose, NUM_AUS};
pub use raster::Canvas;
pub use scene::{render_frame, FrameState, Scene};

use super::abaw_annotations::write_mtl_annotations;
use super::labels::{image_name, LabelSet, Origin, Sample};
use crate::{Error, Result, Rng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynthConfig {
    pub videos: usize,
    pub frames_per_video: usize,
    pub image_size: usize,
    pub seed: u64,
    /// Fraction of videos in the validation split.
    pub val_fraction: f64,
    /// Probability that a video is annotated for VA, expression, AUs.
    pub p_va: f64,
    pub p_expr: f64,
    pub p_au: f64,
    /// Probability that a video has a stretch where an object hides part of the face.
    pub p_occlusion: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            videos: 40,
            frames_per_video: 100,
            image_size: 112,
            seed: 0,
            val_fraction: 0.2,
            p_va: 0.9,
            p_expr: 0.8,
            p_au: 0.7,
            p_occlusion: 0.3,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SynthSummary {
    pub train_videos: usize,
    pub val_videos: usize,
    pub frames: usize,
    pub train_samples: usize,
    pub val_samples: usize,
    /// Frames rendered but left without any label (no annotation line).
    pub unlabelled_frames: usize,
}

const VIDEO_DOMAIN: u64 = 0x51D_FACE;

/// Everything one video needs to be drawn, drawn from the video's own stream.
pub struct VideoPlan {
    pub name: String,
    pub identity: Identity,
    pub scene: Scene,
    pub frames: Vec<FrameState>,
    pub labels: Vec<FrameTruth>,
    /// Per-frame presence of VA, expression, AU labels.
    pub present: [Vec<bool>; 3],
    noise_seed: u64,
}

impl VideoPlan {
    pub fn new(cfg: &SynthConfig, index: usize) -> VideoPlan {
        let mut rng = Rng::new(cfg.seed ^ VIDEO_DOMAIN).fork(index as u64);
        let identity = Identity::random(&mut rng);
        let scene = Scene::random(&mut rng);
        let n = cfg.frames_per_video;
        let labels = simulate(n, &mut rng);
        let mut tasks = [
            rng.bernoulli(cfg.p_va),
            rng.bernoulli(cfg.p_expr),
            rng.bernoulli(cfg.p_au),
        ];
        if tasks == [false; 3] {
            tasks[0] = true;
        }
        let present = tasks.map(|t| dynamics::label_mask(n, t, &mut rng));
        // The occluder shows during one stretch of an occluded video.
        let occ = if rng.bernoulli(cfg.p_occlusion) {
            let len = 1 + rng.below(n.div_ceil(2));
            let start = rng.below(n);
            start..start + len
        } else {
            0..0
        };
        let frames = labels
            .iter()
            .enumerate()
            .map(|(i, t)| FrameState {
                aus: t.aus,
                pose: t.pose,
                occluded: occ.contains(&i),
            })
            .collect();
        VideoPlan {
            name: format!("synth{index:04}"),
            identity,
            scene,
            frames,
            labels,
            present,
            noise_seed: rng.next_u64(),
        }
    }

    /// Renders every frame as RGB8, handing each to `sink(frame_index, pixels)`.
    pub fn render(
        &self,
        size: usize,
        mut sink: impl FnMut(usize, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut canvas = Canvas::new(size);
        let mut buf = Vec::new();
        let mut noise = Rng::new(self.noise_seed);
        for (i, st) in self.frames.iter().enumerate() {
            render_frame(
                &self.scene,
                &self.identity,
                st,
                &mut noise,
                &mut canvas,
                &mut buf,
            );
            sink(i, &buf)?;
        }
        Ok(())
    }

    /// The annotation records (frames with at least one label). Their origin
    /// names `file` with line 0: they were generated, not read, and a reader
    /// of the written file records the real line.
    pub fn samples(&self, file: &Arc<Path>) -> Vec<Sample> {
        self.labels
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let frame = i as u32 + 1;
                let s = Sample {
                    image: image_name(&self.name, frame),
                    video: self.name.clone(),
                    frame,
                    va: self.present[0][i].then_some(t.va),
                    expr: self.present[1][i].then_some(t.expr),
                    aus: self.present[2][i]
                        .then(|| t.aus.iter().map(|&a| u8::from(a >= 0.5)).collect()),
                    origin: Origin {
                        file: file.clone(),
                        line: 0,
                    },
                };
                s.has_any_label().then_some(s)
            })
            .collect()
    }
}

/// Encodes RGB8 pixels as JPEG at `quality`.
pub fn encode_jpeg(pixels: &[u8], size: usize, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(pixels.len() / 4);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(
            pixels,
            size as u32,
            size as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::Config(format!("jpeg encode: {e}")))?;
    Ok(out)
}

/// Which videos go to validation: a seeded shuffle, the first `val_fraction`.
fn validation_set(cfg: &SynthConfig) -> Vec<bool> {
    let mut idx: Vec<usize> = (0..cfg.videos).collect();
    Rng::new(cfg.seed ^ VIDEO_DOMAIN ^ 0x5_7117).shuffle(&mut idx);
    let n_val = (cfg.videos as f64 * cfg.val_fraction).round() as usize;
    let mut val = vec![false; cfg.videos];
    for &i in &idx[..n_val.min(cfg.videos)] {
        val[i] = true;
    }
    val
}

/// The largest face the generator renders: each worker holds a few canvases
/// of this size, and face crops are far smaller.
pub const MAX_SIZE: usize = 1024;

/// The most frames (videos times frames per video) the generator renders:
/// every frame's labels are held in memory until the annotation files are
/// written, and ten million frames is several times the largest real
/// multi-task set (Aff-Wild2, about 2.6 million).
pub const MAX_FRAMES: usize = 10_000_000;

/// Refuses to generate into `out` when it exists and is not an empty folder,
/// unless `force`: generation overwrites annotation files and images there.
pub fn check_target(out: &Path, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    let mut entries = match std::fs::read_dir(out) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(out, e)),
    };
    if entries.next().is_some() {
        return Err(Error::Config(format!(
            "{} is not empty; generating there would overwrite its annotation files and images (choose an empty or new folder, or pass --force)",
            out.display()
        )));
    }
    Ok(())
}

/// Renders the whole data set under `out`.
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<SynthSummary> {
    if cfg.videos == 0
        || cfg.frames_per_video == 0
        || cfg.videos.saturating_mul(cfg.frames_per_video) > MAX_FRAMES
        || !(16..=MAX_SIZE).contains(&cfg.image_size)
        || !(0.0..=1.0).contains(&cfg.val_fraction)
    {
        return Err(Error::Config(format!(
            "synth: need videos > 0, frames_per_video > 0 (at most {MAX_FRAMES} frames in all), image_size in 16..={MAX_SIZE}, val_fraction in [0, 1]; found {}, {}, {}, {} (--videos, --frames, --size; in a run config data.synth_videos, data.synth_frames, data.image_size)",
            cfg.videos, cfg.frames_per_video, cfg.image_size, cfg.val_fraction
        )));
    }
    let img_root = out.join("cropped_aligned");
    let files: [Arc<Path>; 2] = [
        Arc::from(out.join("training_set_annotations.txt")),
        Arc::from(out.join("validation_set_annotations.txt")),
    ];
    let val = validation_set(cfg);
    let per_video: Vec<Result<(Vec<Sample>, bool)>> = (0..cfg.videos)
        .into_par_iter()
        .map(|v| {
            let plan = VideoPlan::new(cfg, v);
            let dir: PathBuf = img_root.join(&plan.name);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            plan.render(cfg.image_size, |i, px| {
                let jpg = encode_jpeg(px, cfg.image_size, plan.scene.jpeg_quality)?;
                let p = dir.join(format!("{:05}.jpg", i + 1));
                std::fs::write(&p, jpg).map_err(|e| Error::io(&p, e))
            })?;
            Ok((plan.samples(&files[val[v] as usize]), val[v]))
        })
        .collect();
    let mut split: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    let mut summary = SynthSummary {
        frames: cfg.videos * cfg.frames_per_video,
        ..Default::default()
    };
    for r in per_video {
        let (samples, is_val) = r?;
        if is_val {
            summary.val_videos += 1;
        } else {
            summary.train_videos += 1;
        }
        split[is_val as usize].extend(samples);
    }
    summary.train_samples = split[0].len();
    summary.val_samples = split[1].len();
    summary.unlabelled_frames = summary.frames - summary.train_samples - summary.val_samples;
    for (file, samples) in files.iter().zip(&split) {
        write_mtl_annotations(file, LabelSet::Abaw2022, samples)?;
    }
    Ok(summary)
}

/// A grid of faces: one column per expression (ABAW order) at intensity 0.9,
/// one row per identity, frontal on a plain background; RGB8, row-major.
pub fn contact_sheet(size: usize, identities: usize, seed: u64) -> Vec<u8> {
    let cols = 8;
    let (w, h) = (cols * size, identities * size);
    let mut sheet = vec![0u8; w * h * 3];
    let scene = Scene::plain();
    let mut canvas = Canvas::new(size);
    let mut buf = Vec::new();
    let mut rng = Rng::new(seed);
    for r in 0..identities {
        let id = Identity::random(&mut rng);
        for e in 0..cols {
            let mut aus = prototype(e as u8).map(|v| v * 0.9);
            if e == dynamics::OTHER as usize {
                // "Other" has no prototype; show a lip-press + lid-tighten mix.
                aus[au::AU24] = 0.8;
                aus[au::AU7] = 0.6;
                aus[au::AU2] = 0.7;
            }
            let st = FrameState {
                aus,
                pose: Pose {
                    scale: 1.0,
                    ..Pose::default()
                },
                occluded: false,
            };
            render_frame(&scene, &id, &st, &mut rng, &mut canvas, &mut buf);
            for y in 0..size {
                let dst = ((r * size + y) * w + e * size) * 3;
                sheet[dst..dst + size * 3].copy_from_slice(&buf[y * size * 3..(y + 1) * size * 3]);
            }
        }
    }
    sheet
}
