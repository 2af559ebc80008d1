//! Per-frame features as sequences: the feature files `mtaffect features`
//! writes (one safetensors file per video: `features` [T, F] f32, the
//! 1-based `frames` [T] they belong to, and the frame model's own outputs
//! `frame.va`, `frame.expr`, `frame.au`), joined with the annotation file's
//! labels, and normalised with statistics of the training set.

use super::labels::{Sample, LABEL_INVALID, VA_INVALID};
use crate::tensor_file;
use crate::{DType, Error, Result, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

const FEATURES: &str = "features";
const FRAMES: &str = "frames";
/// What errors call these files.
const KIND: &str = "features";
const HEADS: [&str; 3] = ["frame.va", "frame.expr", "frame.au"];

/// The frame model's outputs for every frame of a video, row-major:
/// va [T, 2] (after tanh), expression and AU logits: the baseline a temporal
/// model is compared with, scored the same way.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameHeads {
    pub va: Vec<f32>,
    pub expr: Vec<f32>,
    pub au: Vec<f32>,
}

/// One video's per-frame embeddings, frames strictly increasing.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoFeatures {
    pub video: String,
    pub frames: Vec<u32>,
    /// [T, dim] row-major.
    pub features: Vec<f32>,
    pub dim: usize,
    pub heads: Option<FrameHeads>,
}

impl VideoFeatures {
    /// `<dir>/<video>.safetensors`; a video name must be a plain file name.
    pub fn path(dir: &Path, video: &str) -> Result<PathBuf> {
        if video.is_empty() || video.contains(['/', '\\']) || video.starts_with('.') {
            return Err(Error::arg(
                "features",
                format!("video name '{video}' cannot name a feature file"),
            ));
        }
        Ok(dir.join(format!("{video}.safetensors")))
    }

    /// Writes the file atomically; `source` (the checkpoint) goes into the metadata.
    pub fn save(&self, dir: &Path, source: &str) -> Result<PathBuf> {
        let path = Self::path(dir, &self.video)?;
        let t = self.frames.len();
        let feats = Tensor::from_vec(self.features.clone(), [t, self.dim])?;
        // f64 holds every frame number exactly and keeps the file to our two dtypes.
        let frames = Tensor::from_vec(
            self.frames.iter().map(|&f| f as f64).collect::<Vec<_>>(),
            [t],
        )?;
        let meta = HashMap::from([
            ("format".to_string(), "mtaffect-features".to_string()),
            ("video".into(), self.video.clone()),
            ("source".into(), source.to_string()),
        ]);
        let mut tensors = vec![(FEATURES, feats), (FRAMES, frames)];
        if let Some(h) = &self.heads {
            for (name, v) in HEADS.iter().zip([&h.va, &h.expr, &h.au]) {
                tensors.push((name, Tensor::from_vec(v.clone(), [t, v.len() / t.max(1)])?));
            }
        }
        let refs = tensors.iter().map(|(k, v)| (k.to_string(), v)).collect();
        tensor_file::write(&path, KIND, refs, meta)?;
        Ok(path)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let (mut tensors, meta) = tensor_file::read(path, KIND)?;
        let bad = |msg: String| Error::Parse {
            file: path.to_path_buf(),
            line: 0,
            field: FEATURES.into(),
            msg,
        };
        let (Some(f), Some(fr)) = (tensors.remove(FEATURES), tensors.remove(FRAMES)) else {
            return Err(bad(format!("needs tensors '{FEATURES}' and '{FRAMES}'")));
        };
        let (&[t, dim], &[tf]) = (f.dims(), fr.dims()) else {
            return Err(bad(format!(
                "features {} must be [T, F] and frames {} [T]",
                f.shape(),
                fr.shape()
            )));
        };
        if t != tf || t == 0 || f.dtype() != DType::F32 {
            return Err(bad(format!(
                "features {} {} and frames {}: need f32 [T, F] with T = frames > 0",
                f.dtype(),
                f.shape(),
                fr.shape()
            )));
        }
        let frames: Vec<u32> = fr.to_f64_vec().iter().map(|&v| v as u32).collect();
        if frames.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("frames are not strictly increasing".into()));
        }
        let video = meta.get("video").cloned().unwrap_or_else(|| {
            path.file_stem()
                .map_or(String::new(), |s| s.to_string_lossy().into_owned())
        });
        let heads = match HEADS.map(|k| tensors.remove(k)) {
            [Some(va), Some(expr), Some(au)] => {
                if [&va, &expr, &au]
                    .iter()
                    .any(|h| h.dims().first() != Some(&t) || h.dtype() != DType::F32)
                {
                    return Err(bad(format!("frame outputs must be f32 [{t}, ·]")));
                }
                Some(FrameHeads {
                    va: va.to_vec()?,
                    expr: expr.to_vec()?,
                    au: au.to_vec()?,
                })
            }
            _ => None,
        };
        Ok(VideoFeatures {
            video,
            frames,
            features: f.to_vec()?,
            dim,
            heads,
        })
    }
}

/// One video in frame order: features and labels with the batch markers
/// (VA -5, expression -1, AU -1) where a frame has no label.
#[derive(Clone, Debug)]
pub struct VideoSequence {
    pub video: String,
    pub frames: Vec<u32>,
    /// [T, dim].
    pub features: Vec<f32>,
    /// [T, 2].
    pub va: Vec<f32>,
    pub expr: Vec<i64>,
    /// [T, n_aus].
    pub au: Vec<f32>,
    /// Whether the frame has an annotation line (only those are scored).
    pub labelled: Vec<bool>,
    /// The frame model's outputs, when the feature file has them.
    pub frame_heads: Option<FrameHeads>,
}

impl VideoSequence {
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Every annotated video of one split.
#[derive(Clone, Debug)]
pub struct SequenceSet {
    pub videos: Vec<VideoSequence>,
    pub dim: usize,
    pub n_aus: usize,
}

impl SequenceSet {
    /// Joins `samples` (one split's annotation lines) with the feature files
    /// in `dir`: every annotated video needs a file, and every annotated frame
    /// a feature row. Frames with features but no labels stay in the sequence
    /// (context for the encoder) and are not scored.
    pub fn load(dir: &Path, samples: &[Sample], n_aus: usize) -> Result<Self> {
        let mut by_video: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
        for s in samples {
            by_video.entry(s.video.as_str()).or_default().push(s);
        }
        let mut videos = Vec::with_capacity(by_video.len());
        let mut dim = None;
        for (video, labels) in by_video {
            let path = VideoFeatures::path(dir, video)?;
            let vf = VideoFeatures::load(&path)?;
            if *dim.get_or_insert(vf.dim) != vf.dim {
                return Err(Error::shape(
                    "features",
                    format!(
                        "{}: {} features per frame, other videos have {}",
                        path.display(),
                        vf.dim,
                        dim.unwrap_or(0)
                    ),
                ));
            }
            videos.push(join(vf, &labels, n_aus, &path)?);
        }
        let dim = dim.ok_or_else(|| Error::Config("sequence set: no annotated videos".into()))?;
        Ok(SequenceSet { videos, dim, n_aus })
    }

    pub fn frames(&self) -> usize {
        self.videos.iter().map(VideoSequence::len).sum()
    }

    /// Per-feature mean and standard deviation over every frame of the set.
    pub fn feature_stats(&self) -> FeatureNorm {
        let (mut s, mut ss) = (vec![0.0f64; self.dim], vec![0.0f64; self.dim]);
        for v in &self.videos {
            for row in v.features.chunks_exact(self.dim) {
                for (j, &x) in row.iter().enumerate() {
                    s[j] += x as f64;
                    ss[j] += x as f64 * x as f64;
                }
            }
        }
        let n = self.frames().max(1) as f64;
        let mean: Vec<f32> = s.iter().map(|&a| (a / n) as f32).collect();
        let std = ss
            .iter()
            .zip(&s)
            .map(|(&q, &a)| (q / n - (a / n).powi(2)).max(0.0).sqrt() as f32)
            .collect();
        FeatureNorm { mean, std }
    }

    /// `(x - mean) / (std + 1e-5)` per feature, in place.
    pub fn normalise(&mut self, norm: &FeatureNorm) -> Result<()> {
        if norm.mean.len() != self.dim || norm.std.len() != self.dim {
            return Err(Error::shape(
                "normalise",
                format!(
                    "statistics of {} features for a set of {}",
                    norm.mean.len(),
                    self.dim
                ),
            ));
        }
        for v in &mut self.videos {
            for row in v.features.chunks_exact_mut(self.dim) {
                for ((x, m), s) in row.iter_mut().zip(&norm.mean).zip(&norm.std) {
                    *x = (*x - m) / (s + NORM_EPS);
                }
            }
        }
        Ok(())
    }
}

/// Keeps constant features finite after normalisation.
const NORM_EPS: f32 = 1e-5;

/// Training-set feature statistics; stored with a temporal checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureNorm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

fn join(vf: VideoFeatures, labels: &[&Sample], n_aus: usize, path: &Path) -> Result<VideoSequence> {
    let t = vf.frames.len();
    let (mut va, mut expr, mut au) = (
        vec![VA_INVALID; 2 * t],
        vec![LABEL_INVALID as i64; t],
        vec![LABEL_INVALID as f32; t * n_aus],
    );
    let mut labelled = vec![false; t];
    for s in labels {
        let i = vf
            .frames
            .binary_search(&s.frame)
            .map_err(|_| Error::Parse {
                file: s.origin.file.to_path_buf(),
                line: s.origin.line,
                field: "image".into(),
                msg: format!(
                    "frame {} of video {} has no features in {}",
                    s.frame,
                    s.video,
                    path.display()
                ),
            })?;
        labelled[i] = true;
        if let Some(v) = s.va {
            va[2 * i..2 * i + 2].copy_from_slice(&v);
        }
        if let Some(e) = s.expr {
            expr[i] = e as i64;
        }
        if let Some(a) = &s.aus {
            for (dst, &v) in au[i * n_aus..(i + 1) * n_aus].iter_mut().zip(a) {
                *dst = v as f32;
            }
        }
    }
    Ok(VideoSequence {
        video: vf.video,
        frames: vf.frames,
        features: vf.features,
        va,
        expr,
        au,
        labelled,
        frame_heads: vf.heads,
    })
}
