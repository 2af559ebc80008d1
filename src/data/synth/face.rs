//! The face itself: identity (shape, colours), pose, and the 12 ABAW 2022 AU
//! intensities in [0, 1] that move brows, lids, cheeks and lips.
//!
//! Local frame: face centre at the origin, y down, the face oval about 1 unit
//! tall from centre to chin. Features are drawn through a second transform
//! that squashes and shifts them with yaw, so a turned head looks turned.

use super::raster::{capsule, capsule_box, ellipse, Affine, Canvas};
use crate::Rng;

/// Indices into the AU intensity array (ABAW 2022 order).
pub mod au {
    pub const AU1: usize = 0;
    pub const AU2: usize = 1;
    pub const AU4: usize = 2;
    pub const AU6: usize = 3;
    pub const AU7: usize = 4;
    pub const AU10: usize = 5;
    pub const AU12: usize = 6;
    pub const AU15: usize = 7;
    pub const AU23: usize = 8;
    pub const AU24: usize = 9;
    pub const AU25: usize = 10;
    pub const AU26: usize = 11;
}
pub const NUM_AUS: usize = 12;

/// What stays fixed for one person.
#[derive(Clone, Debug)]
pub struct Identity {
    pub face_w: f32,
    pub face_h: f32,
    pub eye_gap: f32,
    pub eye_y: f32,
    pub eye_size: f32,
    pub brow_thick: f32,
    pub mouth_y: f32,
    pub mouth_w: f32,
    pub lip_thick: f32,
    pub skin: [f32; 3],
    pub hair: [f32; 3],
    pub iris: [f32; 3],
    pub hair_volume: f32,
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scale3(a: [f32; 3], s: f32) -> [f32; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

impl Identity {
    pub fn random(rng: &mut Rng) -> Identity {
        let mut u = |lo: f64, hi: f64| rng.uniform(lo, hi) as f32;
        let skin = lerp3([0.96, 0.82, 0.72], [0.36, 0.23, 0.16], u(0.0, 1.0));
        let hair = lerp3([0.08, 0.06, 0.05], [0.75, 0.6, 0.35], u(0.0, 1.0).powi(2));
        let iris = lerp3([0.25, 0.15, 0.08], [0.25, 0.45, 0.6], u(0.0, 1.0).powi(3));
        Identity {
            face_w: u(0.66, 0.8),
            face_h: u(0.92, 1.05),
            eye_gap: u(0.27, 0.33),
            eye_y: u(-0.14, -0.06),
            eye_size: u(0.85, 1.15),
            brow_thick: u(0.025, 0.045),
            mouth_y: u(0.44, 0.52),
            mouth_w: u(0.19, 0.25),
            lip_thick: u(0.8, 1.25),
            skin,
            hair,
            iris,
            hair_volume: u(0.0, 1.0),
        }
    }
}

/// Head pose and placement: `yaw` and `roll` in radians, `scale` relative to
/// the default face size, `shift` in fractions of the image.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pose {
    pub yaw: f32,
    pub roll: f32,
    pub scale: f32,
    pub shift: (f32, f32),
}

/// Draws the face, hair and neck for `aus` intensities onto `canvas`.
pub fn draw_face(c: &mut Canvas, id: &Identity, pose: &Pose, aus: &[f32; NUM_AUS]) {
    use au::*;
    let n = c.size as f32;
    let head = Affine::similarity(
        n * 0.42 * pose.scale,
        pose.roll,
        1.0 - 0.12 * pose.yaw.abs(),
        n * (0.5 + pose.shift.0),
        n * (0.5 + pose.shift.1),
    );
    // Features move toward the turned side and compress (a cheap yaw).
    let feat = head.compose(&Affine::similarity(
        1.0,
        0.0,
        1.0 - 0.3 * pose.yaw.abs(),
        pose.yaw * 0.35,
        0.0,
    ));
    let (fw, fh) = (id.face_w, id.face_h);
    let skin = id.skin;
    let shade = scale3(skin, 0.72);

    // Neck and hair behind the face.
    c.fill(
        &head,
        [-0.3, 0.5, 0.3, 1.6],
        scale3(skin, 0.85),
        1.0,
        |x, y| (x.abs() - 0.3 * fw / 0.72).max(0.6 - y),
    );
    let hv = id.hair_volume;
    let (hy, hrx, hry) = (-0.2 - 0.1 * hv, fw + 0.06 + 0.1 * hv, fh * 0.85 + 0.1 * hv);
    c.fill(
        &head,
        [-hrx, hy - hry, hrx, hy + hry],
        id.hair,
        1.0,
        |x, y| ellipse(x, y, 0.0, hy, hrx, hry),
    );
    // Ears.
    for s in [-1.0f32, 1.0] {
        c.fill(
            &head,
            [s * fw - 0.15, -0.25, s * fw + 0.15, 0.2],
            shade,
            1.0,
            |x, y| ellipse(x, y, s * (fw + 0.02), -0.02, 0.09, 0.16),
        );
    }
    // Face oval; a dropped jaw lengthens the chin.
    let jaw = 0.1 * aus[AU26];
    c.fill(
        &head,
        [-fw - 0.05, -fh - 0.05, fw + 0.05, fh + jaw + 0.05],
        skin,
        1.0,
        |x, y| {
            let ry = if y > 0.0 { fh + jaw } else { fh };
            ellipse(x, y, 0.0, 0.0, fw, ry)
        },
    );
    // Fringe: hair over the forehead.
    c.fill(&head, [-fw, -fh - 0.1, fw, -0.3], id.hair, 1.0, |x, y| {
        ellipse(
            x,
            y,
            0.0,
            -fh - 0.05 + 0.05 * hv,
            fw * 0.95,
            0.42 - 0.1 * hv,
        )
    });

    // Cheeks: raised and flushed by AU6.
    let cheek_y = id.mouth_y - 0.22 - 0.08 * aus[AU6];
    for s in [-1.0f32, 1.0] {
        let cx = s * (id.eye_gap + 0.05);
        c.fill(
            &feat,
            [cx - 0.2, cheek_y - 0.15, cx + 0.2, cheek_y + 0.15],
            [0.85, 0.35, 0.35],
            0.12 + 0.3 * aus[AU6],
            |x, y| ellipse(x, y, cx, cheek_y, 0.15, 0.1),
        );
    }

    draw_eyes(c, &feat, id, aus);
    draw_brows(c, &feat, id, aus);

    // Nose: bridge shadow and nostrils; AU10 lifts and wrinkles it.
    let nose_tip = id.mouth_y - 0.2 - 0.04 * aus[AU10];
    c.fill(
        &feat,
        [-0.1, id.eye_y, 0.1, nose_tip + 0.05],
        shade,
        0.6,
        |x, y| capsule(x, y, (0.02, id.eye_y + 0.06), (0.045, nose_tip), 0.018),
    );
    for s in [-1.0f32, 1.0] {
        let nx = s * 0.055;
        c.fill(
            &feat,
            [nx - 0.05, nose_tip - 0.04, nx + 0.05, nose_tip + 0.04],
            scale3(skin, 0.45),
            0.8,
            |x, y| ellipse(x, y, nx, nose_tip + 0.005, 0.028, 0.016),
        );
        // Wrinkles on the nose bridge (AU10) and nasolabial folds (AU10, AU12).
        let wy = id.eye_y + 0.14;
        c.fill(
            &feat,
            capsule_box((s * 0.02, wy), (s * 0.08, wy - 0.03), 0.01),
            shade,
            aus[AU10],
            |x, y| capsule(x, y, (s * 0.02, wy), (s * 0.08, wy - 0.03), 0.008),
        );
        let (a, b) = (
            (s * 0.09, nose_tip - 0.02),
            (s * (id.mouth_w + 0.06), id.mouth_y + 0.02),
        );
        c.fill(
            &feat,
            capsule_box(a, b, 0.02),
            shade,
            0.25 + 0.6 * aus[AU10].max(aus[AU12]),
            |x, y| capsule(x, y, a, b, 0.01),
        );
    }

    draw_mouth(c, &feat, id, aus);
}

fn draw_eyes(c: &mut Canvas, xf: &Affine, id: &Identity, aus: &[f32; NUM_AUS]) {
    use au::*;
    let rx = 0.11 * id.eye_size;
    // Brow raising widens the eye; lid tightening and cheek raising narrow it from below.
    let up = 0.07
        * id.eye_size
        * (1.0 + 0.45 * aus[AU1].max(aus[AU2]) - 0.25 * aus[AU4] - 0.25 * aus[AU7]);
    let down = 0.055 * id.eye_size * (1.0 + 0.3 * aus[AU2] - 0.5 * aus[AU7] - 0.45 * aus[AU6]);
    let lid = scale3(id.skin, 0.55);
    for s in [-1.0f32, 1.0] {
        let (cx, cy) = (s * id.eye_gap, id.eye_y);
        let bb = [
            cx - rx - 0.03,
            cy - up - 0.03,
            cx + rx + 0.03,
            cy + down + 0.03,
        ];
        // The eye opening: upper half-ellipse of height `up`, lower of `down`.
        let eye = move |x: f32, y: f32| {
            let ry = if y < cy { up } else { down.max(0.004) };
            ellipse(x, y, cx, cy, rx, ry)
        };
        c.fill(xf, bb, [0.93, 0.93, 0.9], 1.0, eye);
        let ir = 0.05 * id.eye_size;
        c.fill(xf, bb, id.iris, 1.0, |x, y| {
            ellipse(x, y, cx, cy, ir, ir).max(eye(x, y))
        });
        c.fill(xf, bb, [0.03, 0.03, 0.03], 1.0, |x, y| {
            ellipse(x, y, cx, cy, ir * 0.45, ir * 0.45).max(eye(x, y))
        });
        // Upper lid line; the lower lid thickens as AU7 tightens it.
        c.fill(xf, bb, lid, 1.0, |x, y| {
            let d = eye(x, y);
            (d.abs() - 0.012).max(y - cy)
        });
        c.fill(xf, bb, lid, 0.5 + 0.5 * aus[AU7], |x, y| {
            let d = eye(x, y);
            (d.abs() - 0.006 - 0.012 * aus[AU7]).max(cy - y)
        });
        // Crow's feet with AU6.
        let ox = cx + s * (rx + 0.03);
        for k in [-1.0f32, 0.0, 1.0] {
            let (a, b) = ((ox, cy + 0.02 * k), (ox + s * 0.05, cy + 0.04 * k));
            c.fill(xf, capsule_box(a, b, 0.01), lid, 0.7 * aus[AU6], |x, y| {
                capsule(x, y, a, b, 0.006)
            });
        }
    }
}

fn draw_brows(c: &mut Canvas, xf: &Affine, id: &Identity, aus: &[f32; NUM_AUS]) {
    use au::*;
    let base = id.eye_y - 0.14;
    // AU1 lifts the inner end, AU2 the outer end; AU4 lowers the brow and draws it inward.
    let inner_y = base - 0.13 * aus[AU1] + 0.08 * aus[AU4];
    let outer_y = base - 0.11 * aus[AU2] + 0.02 * aus[AU4] - 0.01;
    let inner_x = id.eye_gap - 0.15 - 0.05 * aus[AU4] + 0.02 * aus[AU1];
    let outer_x = id.eye_gap + 0.15;
    let t = id.brow_thick;
    for s in [-1.0f32, 1.0] {
        let (x0, x1) = (inner_x, outer_x);
        let bb = [
            s.min(0.0) * x1 + s.max(0.0) * x0 - 0.05,
            inner_y.min(outer_y) - 0.1,
            s.max(0.0) * x1 + s.min(0.0) * x0 + 0.05,
            inner_y.max(outer_y) + 0.06,
        ];
        // Brow centreline y(x) between the ends with an arch (flattened by AU4).
        let arch = 0.035 * (1.0 - 0.7 * aus[AU4]) + 0.03 * aus[AU2];
        c.fill(xf, bb, scale3(id.hair, 0.8), 1.0, |x, y| {
            let ax = x * s;
            let u = ((ax - x0) / (x1 - x0)).clamp(0.0, 1.0);
            let yc = inner_y + (outer_y - inner_y) * u - arch * (std::f32::consts::PI * u).sin();
            let thick = t * (1.1 - 0.5 * u);
            let along = (x0 - ax).max(ax - x1);
            ((y - yc).abs() - thick).max(along)
        });
        // Vertical furrows between the brows with AU4, a horizontal one on the forehead with AU1+AU2.
        let fx = s * 0.035;
        let (a, b) = ((fx, base - 0.02), (fx * 0.7, base + 0.07));
        c.fill(
            xf,
            capsule_box(a, b, 0.01),
            scale3(id.skin, 0.6),
            aus[AU4],
            |x, y| capsule(x, y, a, b, 0.007),
        );
    }
    let fy = base - 0.2;
    c.fill(
        xf,
        [-0.3, fy - 0.05, 0.3, fy + 0.05],
        scale3(id.skin, 0.75),
        0.8 * aus[AU1].min(aus[AU2]),
        |x, y| capsule(x, y, (-0.2, fy), (0.2, fy), 0.006),
    );
}

fn draw_mouth(c: &mut Canvas, xf: &Affine, id: &Identity, aus: &[f32; NUM_AUS]) {
    use au::*;
    let y0 = id.mouth_y;
    // Width: lip-corner pull widens, tightening/pressing narrows, a dropped jaw narrows slightly.
    let w =
        id.mouth_w * (1.0 + 0.3 * aus[AU12] - 0.18 * aus[AU23] - 0.1 * aus[AU24] - 0.1 * aus[AU26]);
    // Corners: up with AU12, down with AU15.
    let corner = y0 - 0.1 * aus[AU12] + 0.09 * aus[AU15];
    // Opening at the centre: lips part (AU25) and jaw drop (AU26); pressing closes it.
    let gap = (0.035 * aus[AU25] + 0.2 * aus[AU26]) * (1.0 - aus[AU24]);
    let thin = (1.0 - 0.45 * aus[AU23] - 0.55 * aus[AU24]).max(0.2) * id.lip_thick;
    let up_t = 0.04 * thin + 0.03 * aus[AU10];
    let lo_t = 0.055 * thin;
    // The mouth line y(t), t = x / w in [-1, 1]; AU10 lifts the upper lip's centre.
    let line = move |t: f32| y0 + (corner - y0) * t * t;
    let upper_top = move |t: f32| {
        line(t) - up_t * (1.0 - t * t) - 0.012 * (1.0 - (t.abs() * 5.0 - 0.9).abs().min(1.0))
    };
    let open_top =
        move |t: f32| line(t) - 0.02 * aus[AU10] * (1.0 - t * t) - gap * 0.25 * (1.0 - t * t);
    let open_bot = move |t: f32| line(t) + gap * 0.75 * (1.0 - t * t);
    let lower_bot = move |t: f32| open_bot(t) + lo_t * (1.0 - t * t).sqrt();
    let bb = [
        -w - 0.05,
        y0.min(corner) - 0.15 - gap,
        w + 0.05,
        y0.max(corner) + 0.15 + gap,
    ];
    let lips = [
        id.skin[0] * 0.7 + 0.18,
        id.skin[1] * 0.45,
        id.skin[2] * 0.45,
    ];
    // Vertical distance is a fair stand-in for the true distance on these gentle curves.
    let band = move |x: f32, y: f32, top: &dyn Fn(f32) -> f32, bot: &dyn Fn(f32) -> f32| {
        let t = (x / w).clamp(-1.0, 1.0);
        (top(t) - y).max(y - bot(t)).max((x.abs() - w) * 0.5)
    };
    c.fill(xf, bb, lips, 1.0, |x, y| band(x, y, &upper_top, &lower_bot));
    let opening = open_bot(0.0) - open_top(0.0);
    if opening > 0.004 {
        c.fill(xf, bb, [0.2, 0.05, 0.06], 1.0, |x, y| {
            band(x, y, &open_top, &open_bot)
        });
        let teeth_bot = move |t: f32| open_top(t) + (0.04f32).min(opening * 0.6) * (1.0 - t * t);
        c.fill(xf, bb, [0.95, 0.93, 0.88], 1.0, |x, y| {
            band(x, y, &open_top, &teeth_bot).max(band(x, y, &open_top, &open_bot))
        });
    }
    // The line between the lips, darker when pressed.
    c.fill(xf, bb, [0.25, 0.08, 0.08], 0.6 + 0.4 * aus[AU24], |x, y| {
        let t = (x / w).clamp(-1.0, 1.0);
        ((y - open_top(t)).abs() - 0.006).max(x.abs() - w)
    });
}
