//! End-of-run PNG line charts of `metrics.jsonl`, drawn on an RGB buffer
//! with a built-in 5x7 bitmap font and encoded with the `png` crate (no
//! plotting library: a chart is axes, ticks, labels, polylines and a legend).

use super::run_dir::RunDir;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 540;

/// Validation fields drawn in `val.png`, when present.
pub const VAL_FIELDS: [&str; 5] = ["p_mtl", "ccc_valence", "ccc_arousal", "expr_f1", "au_f1"];

/// One named line: (x, y) points in x order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws the run's charts: `loss.png` (every `loss*` field of `train`
/// records) and `val.png` ([`VAL_FIELDS`] of `val` records). A chart with
/// no data is skipped; returns the files written.
pub fn plot_run(run: &RunDir) -> Result<Vec<PathBuf>> {
    let log = run.metrics_path();
    let mut written = Vec::new();
    let loss = read_series(&log, "train", |k| k.starts_with("loss"))?;
    let val = read_series(&log, "val", |k| VAL_FIELDS.contains(&k))?;
    for (file, title, series) in [
        ("loss.png", "TRAINING LOSS", loss),
        ("val.png", "VALIDATION METRICS", val),
    ] {
        if series.is_empty() {
            continue;
        }
        let out = run.path().join(file);
        write_png(&out, &render(title, "STEP", &series))?;
        written.push(out);
    }
    Ok(written)
}

/// The numeric fields accepted by `keep` of the records with this `split`,
/// as series over `step`, named by field and sorted by name. Nulls (a NaN
/// loss, an undefined CCC) leave a point out.
pub fn read_series(path: &Path, split: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<Series>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut by_name: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let lines = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parse_err = |field: &str, msg: String| Error::Parse {
            file: path.to_path_buf(),
            line: i + 1,
            field: field.to_string(),
            msg,
        };
        let rec: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(line) {
            Ok(r) => r,
            // A kill mid-write tears the last line only; the rest still plots.
            Err(e) if i + 1 == lines => {
                eprintln!(
                    "warning: {}:{}: torn last line skipped ({e})",
                    path.display(),
                    i + 1
                );
                continue;
            }
            Err(e) => return Err(parse_err("record", e.to_string())),
        };
        if rec.get("split").and_then(|s| s.as_str()) != Some(split) {
            continue;
        }
        let step = rec
            .get("step")
            .and_then(|s| s.as_f64())
            .ok_or_else(|| parse_err("step", "missing or not a number".into()))?;
        for (k, v) in &rec {
            if let (true, Some(y)) = (keep(k), v.as_f64()) {
                by_name.entry(k.clone()).or_default().push((step, y));
            }
        }
    }
    Ok(by_name
        .into_iter()
        .map(|(name, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { name, points }
        })
        .collect())
}

/// An RGB8 image.
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [30, 30, 30];
const GRID: Rgb = [225, 225, 225];
const MUTED: Rgb = [110, 110, 110];
/// Matplotlib's "tab10" colours: distinct for the few lines a chart holds.
const PALETTE: [Rgb; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

impl Canvas {
    fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            width,
            height,
            pixels: WHITE.repeat((width * height) as usize),
        }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && x < self.width as i64 && y < self.height as i64 {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }

    /// Pixels in the rectangle that are neither background nor grid.
    fn line_pixels_in(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> usize {
        let w = self.width as i64;
        (y0.max(0)..=y1.min(self.height as i64 - 1))
            .flat_map(|y| (x0.max(0)..=x1.min(w - 1)).map(move |x| ((y * w + x) * 3) as usize))
            .filter(|&i| {
                let p = &self.pixels[i..i + 3];
                p != WHITE && p != GRID
            })
            .count()
    }

    /// Bresenham's line, `thick` pixels wide (a square pen).
    fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), thick: i64, c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = ((x1 - x0).signum(), (y1 - y0).signum());
        let mut err = dx + dy;
        let lo = -(thick - 1) / 2;
        loop {
            self.rect(
                x0 + lo,
                y0 + lo,
                x0 + lo + thick - 1,
                y0 + lo + thick - 1,
                c,
            );
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// Text with its top-left corner at (x, y), each font pixel `scale` wide.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        for (i, ch) in s.chars().enumerate() {
            let rows = glyph(ch);
            let gx = x + i as i64 * GLYPH_ADVANCE * scale;
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits >> (4 - col) & 1 == 1 {
                        let px = gx + col * scale;
                        let py = y + r as i64 * scale;
                        self.rect(px, py, px + scale - 1, py + scale - 1, c);
                    }
                }
            }
        }
    }
}

/// Glyph cell width including one column of spacing.
const GLYPH_ADVANCE: i64 = 6;

fn text_width(s: &str, scale: i64) -> i64 {
    (s.chars().count() as i64 * GLYPH_ADVANCE - 1) * scale
}

/// 5x7 bitmaps, one byte per row, bit 4 the leftmost column. Lower case is
/// drawn as upper case; anything else unknown as '?'.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x0A, 0x0A, 0x04, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0; 7],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        '-' => [0, 0, 0, 0x0E, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '/' => [0x01, 0x02, 0x02, 0x04, 0x08, 0x08, 0x10],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
    }
}

/// Tick positions for `[lo, hi]`: a step of 1, 2 or 5 times a power of ten
/// giving about five intervals, and the range widened to whole steps.
fn nice_ticks(lo: f64, hi: f64) -> (f64, f64, f64) {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        // A flat series still gets a visible band around its value.
        let pad = (lo.abs() * 0.1).max(0.5);
        (lo - pad, hi + pad)
    };
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = mag
        * match raw / mag {
            r if r < 1.5 => 1.0,
            r if r < 3.0 => 2.0,
            r if r < 7.0 => 5.0,
            _ => 10.0,
        };
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

/// A tick label with just enough decimals for the step.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let s = format!("{v:.decimals$}");
    // "-0.0" from rounding a tiny negative reads as a bug.
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

/// Draws a line chart of `series` (at most 8 get distinct colours; more
/// repeat them).
pub fn render(title: &str, x_label: &str, series: &[Series]) -> Canvas {
    let (w, h) = (WIDTH as i64, HEIGHT as i64);
    let mut cv = Canvas::new(WIDTH, HEIGHT);
    let (left, right, top, bottom) = (100, w - 30, 60, h - 80);

    let pts = || series.iter().flat_map(|s| s.points.iter());
    let fold = |f: fn(f64, f64) -> f64, init: f64, sel: fn(&(f64, f64)) -> f64| {
        pts().map(sel).filter(|v| v.is_finite()).fold(init, f)
    };
    let (x_min, x_max) = (
        fold(f64::min, f64::INFINITY, |p| p.0),
        fold(f64::max, f64::NEG_INFINITY, |p| p.0),
    );
    let (y_min, y_max) = (
        fold(f64::min, f64::INFINITY, |p| p.1),
        fold(f64::max, f64::NEG_INFINITY, |p| p.1),
    );
    let (x_min, x_max) = if x_min.is_finite() {
        (x_min, x_max)
    } else {
        (0.0, 1.0)
    };
    let (y_min, y_max) = if y_min.is_finite() {
        (y_min, y_max)
    } else {
        (0.0, 1.0)
    };
    let (x0, x1, xstep) = nice_ticks(x_min, x_max);
    let (y0, y1, ystep) = nice_ticks(y_min, y_max);
    let px = |x: f64| left + ((x - x0) / (x1 - x0) * (right - left) as f64).round() as i64;
    let py = |y: f64| bottom - ((y - y0) / (y1 - y0) * (bottom - top) as f64).round() as i64;

    // Grid and tick labels.
    let n_x = ((x1 - x0) / xstep).round() as i64;
    for i in 0..=n_x {
        let v = x0 + i as f64 * xstep;
        let x = px(v);
        cv.line((x, top), (x, bottom), 1, GRID);
        cv.line((x, bottom), (x, bottom + 5), 1, BLACK);
        let s = tick_label(v, xstep);
        cv.text(x - text_width(&s, 2) / 2, bottom + 12, &s, 2, BLACK);
    }
    let n_y = ((y1 - y0) / ystep).round() as i64;
    for i in 0..=n_y {
        let v = y0 + i as f64 * ystep;
        let y = py(v);
        cv.line((left, y), (right, y), 1, GRID);
        cv.line((left - 5, y), (left, y), 1, BLACK);
        let s = tick_label(v, ystep);
        cv.text(left - 10 - text_width(&s, 2), y - 7, &s, 2, BLACK);
    }
    // Axes box.
    cv.line((left, top), (left, bottom), 2, BLACK);
    cv.line((left, bottom), (right, bottom), 2, BLACK);
    cv.line((left, top), (right, top), 1, MUTED);
    cv.line((right, top), (right, bottom), 1, MUTED);
    cv.text((w - text_width(title, 3)) / 2, 18, title, 3, BLACK);
    cv.text(
        (left + right - text_width(x_label, 2)) / 2,
        bottom + 45,
        x_label,
        2,
        MUTED,
    );

    for (k, s) in series.iter().enumerate() {
        let c = PALETTE[k % PALETTE.len()];
        let p: Vec<(i64, i64)> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| (px(x), py(y)))
            .collect();
        for pair in p.windows(2) {
            cv.line(pair[0], pair[1], 2, c);
        }
        // Single points (an early eval) would be invisible without a marker.
        if p.len() == 1 {
            cv.rect(p[0].0 - 3, p[0].1 - 3, p[0].0 + 3, p[0].1 + 3, c);
        }
    }

    // Legend inside the plot, in the corner that hides the fewest drawn
    // line pixels (top right on ties).
    if !series.is_empty() {
        let label_w = series
            .iter()
            .map(|s| text_width(&s.name, 2))
            .max()
            .unwrap_or(0);
        let (row_h, pad) = (22, 8);
        let box_w = pad * 3 + 28 + label_w;
        let box_h = pad * 2 + row_h * series.len() as i64 - 8;
        let corners = [
            (right - box_w - 10, top + 10),
            (left + 10, top + 10),
            (right - box_w - 10, bottom - box_h - 10),
            (left + 10, bottom - box_h - 10),
        ];
        let covered = |&(bx, by): &(i64, i64)| cv.line_pixels_in(bx, by, bx + box_w, by + box_h);
        let (bx, by) = corners
            .iter()
            .copied()
            .min_by_key(covered)
            .expect("four corners");
        cv.rect(bx, by, bx + box_w, by + box_h, WHITE);
        cv.line((bx, by), (bx + box_w, by), 1, MUTED);
        cv.line((bx, by + box_h), (bx + box_w, by + box_h), 1, MUTED);
        cv.line((bx, by), (bx, by + box_h), 1, MUTED);
        cv.line((bx + box_w, by), (bx + box_w, by + box_h), 1, MUTED);
        for (k, s) in series.iter().enumerate() {
            let y = by + pad + k as i64 * row_h;
            let c = PALETTE[k % PALETTE.len()];
            cv.line((bx + pad, y + 7), (bx + pad + 28, y + 7), 3, c);
            cv.text(bx + pad * 2 + 28, y, &s.name, 2, BLACK);
        }
    }
    cv
}

/// Encodes `canvas` as an 8-bit RGB PNG at `path`.
pub fn write_png(path: &Path, canvas: &Canvas) -> Result<()> {
    let encode_err = |e: png::EncodingError| Error::io(path, std::io::Error::other(e));
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, canvas.width, canvas.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(encode_err)?;
    writer
        .write_image_data(&canvas.pixels)
        .map_err(encode_err)?;
    writer.finish().map_err(encode_err)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(path: &Path) -> (png::OutputInfo, Vec<u8>) {
        let bytes = std::fs::read(path).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    fn count_colour(rgb: &[u8], c: Rgb) -> usize {
        rgb.chunks_exact(3).filter(|p| *p == c).count()
    }

    #[test]
    fn run_plots_decode_with_expected_size_and_content() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), Some("r"), "").unwrap();
        let mut log = run.metrics_log().unwrap();
        for step in (0..=300).step_by(10) {
            let t = step as f64 / 300.0;
            let loss = json!({
                "loss": 2.5 * (-3.0 * t).exp() + 0.3,
                "loss_va": 0.8 * (1.0 - t) + 0.1,
                "loss_expr": 1.2 * (-2.0 * t).exp(),
                "lr": 0.001,
            });
            log.log("train", step, &loss).unwrap();
            if step % 100 == 0 && step > 0 {
                let val = json!({
                    "p_mtl": 0.4 + t,
                    "ccc_valence": 0.2 + 0.3 * t,
                    "ccc_arousal": null,
                    "expr_f1": 0.1 + 0.2 * t,
                    "au_f1": 0.3 + 0.1 * t,
                });
                log.log("val", step, &val).unwrap();
            }
        }
        let files = plot_run(&run).unwrap();
        assert_eq!(
            files,
            vec![run.path().join("loss.png"), run.path().join("val.png")]
        );
        for f in &files {
            let (info, rgb) = decode(f);
            assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
            assert_eq!(info.color_type, png::ColorType::Rgb);
            // Lines in the first two palette colours and dark text are drawn.
            assert!(count_colour(&rgb, PALETTE[0]) > 200, "{f:?}");
            assert!(count_colour(&rgb, PALETTE[1]) > 200, "{f:?}");
            assert!(count_colour(&rgb, BLACK) > 500, "{f:?}");
        }
        let series = read_series(&run.metrics_path(), "train", |k| k.starts_with("loss")).unwrap();
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["loss", "loss_expr", "loss_va"]);
        assert_eq!(series[0].points.len(), 31);
        // The null CCC leaves no series and no points behind.
        let val = read_series(&run.metrics_path(), "val", |k| VAL_FIELDS.contains(&k)).unwrap();
        assert!(val.iter().all(|s| s.name != "ccc_arousal"));
    }

    #[test]
    fn bad_metrics_line_names_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            "{\"split\":\"train\",\"step\":1,\"loss\":1}\n{oops\n{\"split\":\"train\",\"step\":2}\n",
        )
        .unwrap();
        let e = read_series(&path, "train", |_| true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics.jsonl:2"), "{e}");
        // A torn last line (a kill mid-write) is skipped; the rest plots.
        std::fs::write(&path, "{\"split\":\"train\",\"step\":1,\"loss\":1}\n{\"spl").unwrap();
        let s = read_series(&path, "train", |k| k == "loss").unwrap();
        assert_eq!(s[0].points, [(1.0, 1.0)]);
    }

    #[test]
    fn ticks_are_round_numbers_covering_the_data() {
        assert_eq!(nice_ticks(0.0, 300.0), (0.0, 300.0, 50.0));
        let (lo, hi, step) = nice_ticks(0.31, 2.8);
        assert_eq!(step, 0.5);
        assert!(lo <= 0.31 && hi >= 2.8);
        let (lo, hi, _) = nice_ticks(0.7, 0.7);
        assert!(lo < 0.7 && hi > 0.7);
        assert_eq!(tick_label(0.5, 0.1), "0.5");
        assert_eq!(tick_label(-1e-17, 0.2), "0.0");
        assert_eq!(tick_label(12000.0, 2000.0), "12000");
    }

    #[test]
    fn text_draws_known_glyph_pixels() {
        let mut cv = Canvas::new(20, 10);
        cv.text(0, 0, "1", 1, BLACK);
        // '1' row 6 is 0b01110: columns 1..=3 set, 0 and 4 clear.
        let at = |x: usize, y: usize| &cv.pixels[(y * 20 + x) * 3..(y * 20 + x) * 3 + 3];
        assert_eq!(at(2, 6), BLACK);
        assert_eq!(at(0, 6), WHITE);
        assert_eq!(at(2, 0), BLACK);
    }
}
