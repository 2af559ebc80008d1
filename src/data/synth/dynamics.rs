//! How a synthetic video's expression, AUs, valence/arousal and pose evolve.
//!
//! The video is cut into segments, each with an expression and an intensity.
//! AU intensities chase the segment's FACS-style target with a first-order
//! low-pass (AR(1)) plus small noise, so they move smoothly and lag changes;
//! pose drifts as a mean-reverting random walk. Labels: expression = the
//! segment's class; AU k = 1 when its current intensity >= 0.5; VA = the
//! expression's prototype scaled by intensity, smoothed, plus noise.

use super::face::{au::*, Pose, NUM_AUS};
use crate::Rng;

/// Expression classes in ABAW order.
pub const NEUTRAL: u8 = 0;
pub const OTHER: u8 = 7;

/// FACS-style prototype: the AUs an expression raises, with relative strengths.
/// AU9 (nose wrinkle) is not in the ABAW set, so disgust leans on AU10.
pub fn prototype(expr: u8) -> [f32; NUM_AUS] {
    let mut a = [0.0; NUM_AUS];
    let set: &[(usize, f32)] = match expr {
        1 => &[(AU4, 1.0), (AU7, 0.9), (AU23, 0.9), (AU24, 0.8)],
        2 => &[(AU10, 1.0), (AU4, 0.6), (AU15, 0.7), (AU7, 0.4)],
        3 => &[
            (AU1, 1.0),
            (AU2, 0.9),
            (AU4, 0.7),
            (AU7, 0.6),
            (AU25, 1.0),
            (AU26, 0.5),
        ],
        4 => &[(AU6, 1.0), (AU12, 1.0), (AU25, 0.5)],
        5 => &[(AU1, 1.0), (AU4, 0.8), (AU15, 1.0)],
        6 => &[(AU1, 1.0), (AU2, 1.0), (AU25, 1.0), (AU26, 1.0)],
        _ => &[],
    };
    for &(k, v) in set {
        a[k] = v;
    }
    a
}

/// Valence/arousal at full intensity; neutral sits at the origin.
fn va_prototype(expr: u8) -> [f32; 2] {
    match expr {
        1 => [-0.6, 0.65],
        2 => [-0.65, 0.3],
        3 => [-0.55, 0.75],
        4 => [0.75, 0.4],
        5 => [-0.65, -0.35],
        6 => [0.2, 0.8],
        _ => [0.0, 0.0],
    }
}

/// Segment expression frequencies, roughly Aff-Wild2's skew (neutral and
/// "other" common; fear and disgust rare).
const EXPR_WEIGHTS: [f64; 8] = [0.28, 0.07, 0.05, 0.05, 0.2, 0.1, 0.08, 0.17];

fn pick_expression(rng: &mut Rng) -> u8 {
    let mut t = rng.next_f64();
    for (i, w) in EXPR_WEIGHTS.iter().enumerate() {
        if t < *w {
            return i as u8;
        }
        t -= w;
    }
    OTHER
}

/// One frame's ground truth (before any label is withheld).
#[derive(Clone, Debug)]
pub struct FrameTruth {
    pub aus: [f32; NUM_AUS],
    pub expr: u8,
    pub va: [f32; 2],
    pub pose: Pose,
}

/// Simulates `frames` frames.
pub fn simulate(frames: usize, rng: &mut Rng) -> Vec<FrameTruth> {
    let mut out = Vec::with_capacity(frames);
    let mut aus = [0.0f32; NUM_AUS];
    let mut va = [0.0f32; 2];
    let va_bias = [
        rng.uniform(-0.15, 0.15) as f32,
        rng.uniform(-0.15, 0.15) as f32,
    ];
    let base_scale = rng.uniform(0.85, 1.1) as f32;
    let mut pose = Pose {
        yaw: rng.uniform(-0.4, 0.4) as f32,
        roll: rng.uniform(-0.15, 0.15) as f32,
        scale: base_scale,
        shift: (
            rng.uniform(-0.05, 0.05) as f32,
            rng.uniform(-0.05, 0.05) as f32,
        ),
    };
    let (mut left, mut expr, mut target, mut va_target) =
        (0usize, NEUTRAL, [0.0f32; NUM_AUS], [0.0f32; 2]);
    // Per-video speed: some people move fast, some slowly.
    let rate = rng.uniform(0.08, 0.3) as f32;
    for _ in 0..frames {
        if left == 0 {
            left = 15 + rng.below(60);
            expr = pick_expression(rng);
            let intensity = rng.uniform(0.55, 1.0) as f32;
            target = prototype(expr).map(|v| v * intensity);
            if expr == OTHER {
                // A random mix of one to three AUs, not matching a prototype on purpose.
                for _ in 0..1 + rng.below(3) {
                    target[rng.below(NUM_AUS)] = rng.uniform(0.3, 1.0) as f32;
                }
                va_target = [rng.uniform(-0.4, 0.4) as f32, rng.uniform(-0.3, 0.5) as f32];
            } else {
                let p = va_prototype(expr);
                va_target = [p[0] * intensity, p[1] * intensity];
            }
            for t in target.iter_mut() {
                *t = (*t + rng.uniform(-0.1, 0.1) as f32).clamp(0.0, 1.0);
            }
        }
        left -= 1;
        for (a, t) in aus.iter_mut().zip(&target) {
            *a = (*a + rate * (t - *a) + 0.02 * rng.normal() as f32).clamp(0.0, 1.0);
        }
        for k in 0..2 {
            va[k] += 0.15 * (va_target[k] + va_bias[k] - va[k]);
        }
        pose.yaw = (pose.yaw * 0.97 + 0.03 * rng.normal() as f32).clamp(-0.8, 0.8);
        pose.roll = (pose.roll * 0.97 + 0.015 * rng.normal() as f32).clamp(-0.35, 0.35);
        pose.scale = (pose.scale + 0.05 * (base_scale - pose.scale) + 0.005 * rng.normal() as f32)
            .clamp(0.7, 1.25);
        pose.shift.0 = (pose.shift.0 * 0.95 + 0.004 * rng.normal() as f32).clamp(-0.12, 0.12);
        pose.shift.1 = (pose.shift.1 * 0.95 + 0.004 * rng.normal() as f32).clamp(-0.12, 0.12);
        // Annotations carry three decimals, like the real files.
        let mut noisy =
            |v: f32| ((v + 0.03 * rng.normal() as f32).clamp(-1.0, 1.0) * 1000.0).round() / 1000.0;
        let va_label = [noisy(va[0]), noisy(va[1])];
        out.push(FrameTruth {
            aus,
            expr,
            va: va_label,
            pose,
        });
    }
    out
}

/// A per-frame mask: `false` where a task's label is withheld. A task not
/// annotated for the video (`present` false) is withheld everywhere; otherwise
/// up to two runs of frames lose it (annotators skip stretches).
pub fn label_mask(frames: usize, present: bool, rng: &mut Rng) -> Vec<bool> {
    let mut m = vec![present; frames];
    let runs = rng.below(3);
    for _ in 0..runs {
        let len = 1 + rng.below((frames / 5).max(1));
        let start = rng.below(frames);
        for v in m.iter_mut().skip(start).take(len) {
            *v = false;
        }
    }
    m
}
