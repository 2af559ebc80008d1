//! The label-scarce protocol's selection: a share of a split's videos,
//! evenly spaced in name order, so every seed, configuration and model
//! family (frame or temporal) trains on the same ones.

use super::Sample;
use std::collections::HashSet;

/// Whether `fraction` is a valid `train_video_fraction`: in (0, 1].
pub fn valid_fraction(fraction: f64) -> bool {
    fraction > 0.0 && fraction <= 1.0
}

/// Keeps the samples of `round(fraction · V)` of the V videos in `samples`
/// (at least one), evenly spaced in name order. Returns (videos kept,
/// videos in all).
pub fn keep_video_share(samples: &mut Vec<Sample>, fraction: f64) -> (usize, usize) {
    let mut videos: Vec<&str> = samples.iter().map(|s| s.video.as_str()).collect();
    videos.sort_unstable();
    videos.dedup();
    let all = videos.len();
    let n = ((fraction * all as f64).round() as usize).clamp(1, all.max(1));
    let kept: HashSet<String> = (0..n).map(|i| videos[i * all / n].to_string()).collect();
    samples.retain(|s| kept.contains(&s.video));
    (n, all)
}

/// A training split under `train_video_fraction`: keeps its share of the
/// videos of `samples` (read from the annotation file `what`) and says so
/// on stderr; 1 keeps everything silently.
pub fn train_on_share(samples: &mut Vec<Sample>, fraction: f64, what: &str) {
    if fraction < 1.0 {
        let (kept, all) = keep_video_share(samples, fraction);
        eprintln!(
            "{what}: training on {kept} of {all} videos ({} frames; data.train_video_fraction = {fraction})",
            samples.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::labels::Origin;
    use std::path::Path;
    use std::sync::Arc;

    #[test]
    fn keeps_an_evenly_spaced_share_of_the_videos() {
        let origin = Origin {
            file: Arc::from(Path::new("a.txt")),
            line: 0,
        };
        let mut samples: Vec<Sample> = (0..10)
            .flat_map(|v| {
                let origin = origin.clone();
                (1..=3).map(move |f| {
                    let video = format!("v{v}");
                    Sample::unlabelled(format!("{video}/{f:05}.jpg"), &video, f, origin.clone())
                })
            })
            .collect();
        assert_eq!(keep_video_share(&mut samples.clone(), 1.0), (10, 10));
        assert_eq!(keep_video_share(&mut samples, 0.3), (3, 10));
        let mut kept: Vec<&str> = samples.iter().map(|s| s.video.as_str()).collect();
        kept.dedup();
        // Videos sorted by name: v0, v1, v2, ..., v9; every third-ish one.
        assert_eq!(kept, ["v0", "v3", "v6"]);
        assert_eq!(samples.len(), 9);
        // Never none.
        assert_eq!(keep_video_share(&mut samples, 0.01), (1, 3));
        assert!(valid_fraction(1.0) && valid_fraction(0.05));
        assert!(!valid_fraction(0.0) && !valid_fraction(1.5) && !valid_fraction(f64::NAN));
    }
}
