//! Everything around the face that a model must learn to ignore: background
//! clutter, lighting, occluders, blur and sensor noise. JPEG artefacts come
//! from encoding the frame (see `generate`).

use super::face::{draw_face, Identity, Pose, NUM_AUS};
use super::raster::{ellipse, Affine, Canvas};
use crate::Rng;

#[derive(Clone, Debug)]
struct Blob {
    round: bool,
    x: f32,
    y: f32,
    rx: f32,
    ry: f32,
    color: [f32; 3],
}

impl Blob {
    fn random(rng: &mut Rng, big: bool) -> Blob {
        let mut u = |lo: f64, hi: f64| rng.uniform(lo, hi) as f32;
        let (lo, hi) = if big { (0.12, 0.28) } else { (0.04, 0.25) };
        Blob {
            round: u(0.0, 1.0) < 0.5,
            x: u(0.0, 1.0),
            y: u(0.0, 1.0),
            rx: u(lo, hi),
            ry: u(lo, hi),
            color: [u(0.05, 0.95), u(0.05, 0.95), u(0.05, 0.95)],
        }
    }

    fn draw(&self, c: &mut Canvas, alpha: f32) {
        let xf = Affine::similarity(c.size as f32, 0.0, 1.0, 0.0, 0.0);
        let b = self.clone();
        let bb = [b.x - b.rx, b.y - b.ry, b.x + b.rx, b.y + b.ry];
        c.fill(&xf, bb, b.color, alpha, move |x, y| {
            if b.round {
                ellipse(x, y, b.x, b.y, b.rx, b.ry)
            } else {
                ((x - b.x).abs() - b.rx).max((y - b.y).abs() - b.ry)
            }
        });
    }
}

/// Fixed for one video: background, light, occluder, camera quality.
#[derive(Clone, Debug)]
pub struct Scene {
    bg: [[f32; 3]; 2],
    bg_dir: (f32, f32),
    clutter: Vec<Blob>,
    light_dir: (f32, f32),
    light: f32,
    occluder: Blob,
    blur: f32,
    noise: f32,
    /// JPEG quality for this video's frames.
    pub jpeg_quality: u8,
}

impl Scene {
    pub fn random(rng: &mut Rng) -> Scene {
        let mut col = || {
            [
                rng.next_f64() as f32,
                rng.next_f64() as f32,
                rng.next_f64() as f32,
            ]
        };
        let bg = [col(), col()];
        let a = rng.uniform(0.0, std::f64::consts::TAU) as f32;
        let clutter = (0..rng.below(6))
            .map(|_| Blob::random(rng, false))
            .collect();
        let la = rng.uniform(0.0, std::f64::consts::TAU) as f32;
        Scene {
            bg,
            bg_dir: (a.cos(), a.sin()),
            clutter,
            light_dir: (la.cos(), la.sin()),
            light: rng.uniform(0.0, 0.8) as f32,
            occluder: Blob::random(rng, true),
            blur: if rng.bernoulli(0.3) {
                rng.uniform(0.3, 1.0) as f32
            } else {
                0.0
            },
            noise: rng.uniform(0.0, 0.05) as f32,
            jpeg_quality: rng.uniform(45.0, 95.0) as u8,
        }
    }

    /// A plain grey studio scene (contact sheets, tests).
    pub fn plain() -> Scene {
        Scene {
            bg: [[0.55, 0.58, 0.62], [0.75, 0.77, 0.8]],
            bg_dir: (0.0, 1.0),
            clutter: Vec::new(),
            light_dir: (1.0, 0.0),
            light: 0.0,
            occluder: Blob {
                round: true,
                x: 0.0,
                y: 0.0,
                rx: 0.0,
                ry: 0.0,
                color: [0.0; 3],
            },
            blur: 0.0,
            noise: 0.0,
            jpeg_quality: 95,
        }
    }
}

/// Per-frame state: expression (as AU intensities) and pose, and whether the occluder shows.
#[derive(Clone, Debug)]
pub struct FrameState {
    pub aus: [f32; NUM_AUS],
    pub pose: Pose,
    pub occluded: bool,
}

/// Renders one frame as `size` x `size` RGB8 into `out` (cleared first);
/// `canvas` and `out` are reused across a video's frames.
pub fn render_frame(
    scene: &Scene,
    id: &Identity,
    st: &FrameState,
    noise_rng: &mut Rng,
    canvas: &mut Canvas,
    out: &mut Vec<u8>,
) {
    let n = canvas.size;
    let inv = 1.0 / n as f32;
    let (a, b) = (scene.bg[0], scene.bg[1]);
    for (y, row) in canvas.px.chunks_exact_mut(n).enumerate() {
        let ty = (y as f32 * inv - 0.5) * scene.bg_dir.1 + 0.5;
        for (x, p) in row.iter_mut().enumerate() {
            let t = ((x as f32 * inv - 0.5) * scene.bg_dir.0 + ty).clamp(0.0, 1.0);
            *p = std::array::from_fn(|k| a[k] + (b[k] - a[k]) * t);
        }
    }
    for b in &scene.clutter {
        b.draw(canvas, 0.8);
    }
    draw_face(canvas, id, &st.pose, &st.aus);
    if st.occluded {
        scene.occluder.draw(canvas, 1.0);
    }
    if scene.blur > 0.0 {
        blur(canvas, scene.blur);
    }
    out.clear();
    out.resize(n * n * 3, 0);
    let amp = scene.noise * 2.45; // triangular noise below has std 1/2.45
    for (y, (row_out, row_px)) in out
        .chunks_exact_mut(n * 3)
        .zip(canvas.px.chunks_exact(n))
        .enumerate()
    {
        let ly = (y as f32 * inv - 0.5) * scene.light_dir.1;
        for (x, (o, p)) in row_out.chunks_exact_mut(3).zip(row_px).enumerate() {
            let l = 1.0 + scene.light * ((x as f32 * inv - 0.5) * scene.light_dir.0 + ly);
            let bits = if amp > 0.0 {
                noise_rng.next_u64()
            } else {
                0x7F80_7F80_7F80
            };
            for k in 0..3 {
                // Two random bytes summed: triangular noise in [-1, 1], cheap and bounded.
                let tri = (((bits >> (16 * k)) & 0xFF) + ((bits >> (16 * k + 8)) & 0xFF)) as f32
                    / 255.0
                    - 1.0;
                let val = p[k] * l + tri * amp;
                o[k] = (val.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            }
        }
    }
}

/// Separable [1 2 1]/4 blur blended in by `amount` (defocus, motion).
fn blur(c: &mut Canvas, amount: f32) {
    let n = c.size;
    let src = c.px.clone();
    let mut tmp = src.clone();
    for y in 0..n {
        for x in 0..n {
            let (l, r) = (
                src[y * n + x.saturating_sub(1)],
                src[y * n + (x + 1).min(n - 1)],
            );
            let m = src[y * n + x];
            tmp[y * n + x] = std::array::from_fn(|k| 0.25 * l[k] + 0.5 * m[k] + 0.25 * r[k]);
        }
    }
    for y in 0..n {
        for x in 0..n {
            let (u, d) = (
                tmp[y.saturating_sub(1) * n + x],
                tmp[(y + 1).min(n - 1) * n + x],
            );
            let m = tmp[y * n + x];
            let b: [f32; 3] = std::array::from_fn(|k| 0.25 * u[k] + 0.5 * m[k] + 0.25 * d[k]);
            let o = &mut c.px[y * n + x];
            *o = std::array::from_fn(|k| o[k] + (b[k] - o[k]) * amount);
        }
    }
}
