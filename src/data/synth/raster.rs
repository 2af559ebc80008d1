//! A tiny anti-aliased rasteriser on an f32 RGB canvas. Shapes are signed
//! distance functions in a local (face) frame mapped to pixels by an affine
//! transform; each shape touches only the pixels of its bounding box, and
//! coverage comes from the distance to the edge (one pixel wide ramp), which
//! anti-aliases without supersampling.

/// `image = [a b; c d] * local + [tx, ty]`.
#[derive(Clone, Copy, Debug)]
pub struct Affine {
    pub a: f32,
    pub b: f32,
    pub c: f32,
    pub d: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Affine {
    /// Uniform scale `s`, rotation `angle` (radians), horizontal squash `sx`, then translation.
    pub fn similarity(s: f32, angle: f32, sx: f32, tx: f32, ty: f32) -> Affine {
        let (sin, cos) = angle.sin_cos();
        Affine {
            a: s * cos * sx,
            b: -s * sin,
            c: s * sin * sx,
            d: s * cos,
            tx,
            ty,
        }
    }

    /// `self` applied after `inner` (local -> inner -> self).
    pub fn compose(&self, inner: &Affine) -> Affine {
        Affine {
            a: self.a * inner.a + self.b * inner.c,
            b: self.a * inner.b + self.b * inner.d,
            c: self.c * inner.a + self.d * inner.c,
            d: self.c * inner.b + self.d * inner.d,
            tx: self.a * inner.tx + self.b * inner.ty + self.tx,
            ty: self.c * inner.tx + self.d * inner.ty + self.ty,
        }
    }

    pub fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        (
            self.a * x + self.b * y + self.tx,
            self.c * x + self.d * y + self.ty,
        )
    }

    fn inverse(&self) -> Affine {
        let det = self.a * self.d - self.b * self.c;
        let (a, b, c, d) = (self.d / det, -self.b / det, -self.c / det, self.a / det);
        Affine {
            a,
            b,
            c,
            d,
            tx: -(a * self.tx + b * self.ty),
            ty: -(c * self.tx + d * self.ty),
        }
    }

    /// Pixels per local unit (geometric mean of the axes).
    fn scale(&self) -> f32 {
        (self.a * self.d - self.b * self.c).abs().sqrt()
    }
}

pub struct Canvas {
    pub size: usize,
    /// Row-major RGB in [0, 1].
    pub px: Vec<[f32; 3]>,
}

impl Canvas {
    pub fn new(size: usize) -> Canvas {
        Canvas {
            size,
            px: vec![[0.0; 3]; size * size],
        }
    }

    /// Blends `color` with opacity `alpha` wherever `sdf` (local coordinates,
    /// negative inside) covers a pixel; `bbox` = [x0, y0, x1, y1] in local
    /// coordinates must contain the shape.
    pub fn fill(
        &mut self,
        xf: &Affine,
        bbox: [f32; 4],
        color: [f32; 3],
        alpha: f32,
        sdf: impl Fn(f32, f32) -> f32,
    ) {
        if alpha <= 0.0 {
            return;
        }
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for (lx, ly) in [
            (bbox[0], bbox[1]),
            (bbox[2], bbox[1]),
            (bbox[0], bbox[3]),
            (bbox[2], bbox[3]),
        ] {
            let (x, y) = xf.apply(lx, ly);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
        let n = self.size as f32;
        let xs = (x0 - 1.0).clamp(0.0, n) as usize;
        let xe = (x1 + 2.0).clamp(0.0, n) as usize;
        let ys = (y0 - 1.0).clamp(0.0, n) as usize;
        let ye = (y1 + 2.0).clamp(0.0, n) as usize;
        let inv = xf.inverse();
        let ppu = xf.scale();
        for y in ys..ye {
            let fy = y as f32 + 0.5;
            let row = &mut self.px[y * self.size..(y + 1) * self.size];
            for (x, p) in row.iter_mut().enumerate().take(xe).skip(xs) {
                let (lx, ly) = inv.apply(x as f32 + 0.5, fy);
                let cov = (0.5 - sdf(lx, ly) * ppu).clamp(0.0, 1.0) * alpha;
                if cov >= 1.0 {
                    *p = color;
                } else if cov > 0.0 {
                    for k in 0..3 {
                        p[k] += (color[k] - p[k]) * cov;
                    }
                }
            }
        }
    }
}

/// Signed distance (approximate, exact on circles) to an axis-aligned ellipse.
#[inline]
pub fn ellipse(x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32) -> f32 {
    // Reciprocals of loop-invariant radii: after inlining into `fill` the
    // compiler hoists them, leaving one division per pixel instead of five.
    let (irx, iry) = (1.0 / rx, 1.0 / ry);
    let (ux, uy) = ((x - cx) * irx, (y - cy) * iry);
    let k = (ux * ux + uy * uy).sqrt();
    // First-order distance: (k - 1) / |grad k|.
    let (gx, gy) = (ux * irx, uy * iry);
    let g = (gx * gx + gy * gy).sqrt();
    if g < 1e-6 {
        -rx.min(ry)
    } else {
        (k - 1.0) * k / g
    }
}

/// Signed distance to a capsule (segment a-b with radius r).
#[inline]
pub fn capsule(x: f32, y: f32, a: (f32, f32), b: (f32, f32), r: f32) -> f32 {
    let (px, py) = (x - a.0, y - a.1);
    let (bx, by) = (b.0 - a.0, b.1 - a.1);
    let t = ((px * bx + py * by) / (bx * bx + by * by).max(1e-12)).clamp(0.0, 1.0);
    let (dx, dy) = (px - bx * t, py - by * t);
    (dx * dx + dy * dy).sqrt() - r
}

/// Bounding box of a capsule.
pub fn capsule_box(a: (f32, f32), b: (f32, f32), r: f32) -> [f32; 4] {
    [
        a.0.min(b.0) - r,
        a.1.min(b.1) - r,
        a.0.max(b.0) + r,
        a.1.max(b.1) + r,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_circle_has_the_right_area_and_soft_edges() {
        let mut c = Canvas::new(64);
        let xf = Affine::similarity(1.0, 0.0, 1.0, 0.0, 0.0);
        c.fill(&xf, [12.0, 12.0, 52.0, 52.0], [1.0; 3], 1.0, |x, y| {
            ellipse(x, y, 32.0, 32.0, 20.0, 20.0)
        });
        let area: f32 = c.px.iter().map(|p| p[0]).sum();
        let want = std::f32::consts::PI * 400.0;
        assert!((area - want).abs() / want < 0.01, "{area} vs {want}");
        assert!(
            c.px.iter().any(|p| p[0] > 0.1 && p[0] < 0.9),
            "no anti-aliased edge pixels"
        );
    }

    #[test]
    fn affine_inverse_round_trips() {
        let xf = Affine::similarity(30.0, 0.3, 0.8, 50.0, 40.0);
        let (x, y) = xf.apply(0.25, -0.5);
        let (u, v) = xf.inverse().apply(x, y);
        assert!((u - 0.25).abs() < 1e-5 && (v + 0.5).abs() < 1e-5);
    }
}
