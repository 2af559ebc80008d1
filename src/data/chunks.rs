//! Cutting videos into fixed-length chunks and batching them as parallel
//! streams: each batch row ("lane") plays its videos chunk after chunk, so a
//! stateful encoder can carry a video's state from one step to the next, and
//! `reset` says where a lane starts a new video (its state must start at zero).
//!
//! Chunks cover frames `[start, start + len)` of a video; positions outside
//! the video are padding (mask false, labels invalid). Training shifts each
//! video's chunk grid by a random phase, so chunk boundaries differ per epoch
//! (the first chunk is then padded at its front).

use super::labels::{LABEL_INVALID, VA_INVALID};
use super::sequence::SequenceSet;
use crate::{Error, Result, Rng, Tensor};

/// One chunk: video index in the set and the (possibly negative) first frame position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub video: usize,
    pub start: isize,
    /// The video's first chunk: state starts from zero.
    pub first: bool,
}

/// Per step, the chunk of every lane (None: the lane has run out of videos).
pub type Plan = Vec<Vec<Option<ChunkRef>>>;

/// Assigns the videos (shuffled when `rng` is given, else in set order) to
/// `lanes` streams, each video to the lane with the fewest chunks so far,
/// and cuts them into chunks of `len` frames (random phase with `rng`).
pub fn plan(
    set: &SequenceSet,
    lanes: usize,
    len: usize,
    mut rng: Option<&mut Rng>,
) -> Result<Plan> {
    if lanes == 0 || len == 0 {
        return Err(Error::Config(format!(
            "chunks: lanes = {lanes} and chunk length = {len} must be > 0"
        )));
    }
    let mut order: Vec<usize> = (0..set.videos.len()).collect();
    if let Some(r) = rng.as_deref_mut() {
        r.shuffle(&mut order);
    }
    let mut streams: Vec<Vec<ChunkRef>> = vec![Vec::new(); lanes];
    for v in order {
        let phase = rng.as_deref_mut().map_or(0, |r| r.below(len)) as isize;
        let lane = (0..lanes)
            .min_by_key(|&l| streams[l].len())
            .expect("lanes > 0");
        let n = set.videos[v].len() as isize;
        let mut start = -phase;
        while start < n {
            streams[lane].push(ChunkRef {
                video: v,
                start,
                first: start == -phase,
            });
            start += len as isize;
        }
    }
    let steps = streams.iter().map(Vec::len).max().unwrap_or(0);
    Ok((0..steps)
        .map(|s| streams.iter().map(|l| l.get(s).copied()).collect())
        .collect())
}

/// One step's chunks as tensors; row r = lane·len + position.
#[derive(Clone, Debug)]
pub struct SeqBatch {
    /// [lanes, len, dim] features (zeros where padded).
    pub x: Tensor,
    /// lanes·len: false at padding.
    pub mask: Vec<bool>,
    /// [lanes·len, 2], -5 where invalid or padded.
    pub va: Tensor,
    /// Expression classes, -1 where invalid or padded.
    pub expr: Vec<i64>,
    /// [lanes·len, n_aus], -1 where invalid or padded.
    pub au: Tensor,
    /// Per lane: a new video starts here (or the lane is empty).
    pub reset: Vec<bool>,
    /// Per row: (video, frame position) of a real frame, None at padding.
    pub frames: Vec<Option<(usize, usize)>>,
}

/// Gathers the chunks of one plan step.
pub fn batch(set: &SequenceSet, step: &[Option<ChunkRef>], len: usize) -> Result<SeqBatch> {
    let (dim, a) = (set.dim, set.n_aus);
    let rows = step.len() * len;
    let mut x = vec![0.0f32; rows * dim];
    let mut mask = vec![false; rows];
    let mut va = vec![VA_INVALID; rows * 2];
    let mut expr = vec![LABEL_INVALID as i64; rows];
    let mut au = vec![LABEL_INVALID as f32; rows * a];
    let mut frames = vec![None; rows];
    let mut reset = Vec::with_capacity(step.len());
    for (lane, c) in step.iter().enumerate() {
        reset.push(c.is_none_or(|c| c.first));
        let Some(c) = c else { continue };
        let v = &set.videos[c.video];
        for p in 0..len {
            let pos = c.start + p as isize;
            if pos < 0 || pos >= v.len() as isize {
                continue;
            }
            let (i, r) = (pos as usize, lane * len + p);
            mask[r] = true;
            x[r * dim..(r + 1) * dim].copy_from_slice(&v.features[i * dim..(i + 1) * dim]);
            va[2 * r..2 * r + 2].copy_from_slice(&v.va[2 * i..2 * i + 2]);
            expr[r] = v.expr[i];
            au[r * a..(r + 1) * a].copy_from_slice(&v.au[i * a..(i + 1) * a]);
            frames[r] = Some((c.video, i));
        }
    }
    Ok(SeqBatch {
        x: Tensor::from_vec(x, [step.len(), len, dim])?,
        mask,
        va: Tensor::from_vec(va, [rows, 2])?,
        expr,
        au: Tensor::from_vec(au, [rows, a])?,
        reset,
        frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::sequence::VideoSequence;

    /// Videos of the given lengths, feature = frame position, every frame labelled.
    fn set(lengths: &[usize]) -> SequenceSet {
        let videos = lengths
            .iter()
            .enumerate()
            .map(|(k, &t)| VideoSequence {
                video: format!("v{k}"),
                frames: (1..=t as u32).collect(),
                features: (0..t).map(|i| i as f32).collect(),
                va: vec![0.5; 2 * t],
                expr: vec![k as i64; t],
                au: vec![1.0; t],
                labelled: vec![true; t],
                frame_heads: None,
            })
            .collect();
        SequenceSet {
            videos,
            dim: 1,
            n_aus: 1,
        }
    }

    #[test]
    fn every_frame_lands_in_exactly_one_chunk_in_order() {
        let s = set(&[10, 3, 7, 5]);
        let mut rng = Rng::new(4);
        for r in [None, Some(&mut rng)] {
            let p = plan(&s, 2, 4, r).unwrap();
            let mut seen: Vec<Vec<usize>> = vec![Vec::new(); 4];
            for step in &p {
                let b = batch(&s, step, 4).unwrap();
                assert_eq!(b.x.dims(), &[2, 4, 1]);
                let x = b.x.to_f64_vec();
                for (row, sc) in b.frames.iter().enumerate() {
                    if let Some((v, i)) = sc {
                        assert!(b.mask[row] && x[row] == *i as f64 && b.expr[row] == *v as i64);
                        seen[*v].push(*i);
                    } else {
                        assert!(!b.mask[row] && b.expr[row] == -1 && x[row] == 0.0);
                    }
                }
            }
            for (v, t) in [10, 3, 7, 5].iter().enumerate() {
                assert_eq!(seen[v], (0..*t).collect::<Vec<_>>(), "video {v}");
            }
        }
    }

    #[test]
    fn lanes_play_videos_chunk_after_chunk_and_reset_at_each_new_video() {
        let s = set(&[9, 4]);
        let p = plan(&s, 2, 4, None).unwrap();
        // Lane 0: video 0 in chunks at 0, 4, 8; lane 1: video 1, then nothing.
        assert_eq!(p.len(), 3);
        let lane0: Vec<_> = p.iter().map(|st| st[0].unwrap()).collect();
        assert_eq!(lane0.iter().map(|c| c.start).collect::<Vec<_>>(), [0, 4, 8]);
        assert!(lane0[0].first && !lane0[1].first);
        let resets: Vec<Vec<bool>> = p.iter().map(|st| batch(&s, st, 4).unwrap().reset).collect();
        assert_eq!(resets, [[true, true], [false, true], [false, true]]);
        assert!(plan(&s, 0, 4, None).is_err());
    }
}
