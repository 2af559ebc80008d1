//! Sample grids of the generator as PNG: the expressions side by side
//! (one row per noise vector), each AU swept from 0 to 1 on the neutral
//! face, and the valence-arousal plane.

use super::condition::{Conditions, LabelRow};
use super::GanTrainer;
use crate::train::image_grid::tile;
use crate::train::plot::{write_png, Canvas};
use crate::{DType, Error, Result, Rng, Tensor};
use std::path::Path;
use std::str::FromStr;

/// Noise rows of the expression grid, steps of an AU sweep, side of the VA plane.
const EXPR_ROWS: usize = 4;
const AU_STEPS: usize = 6;
const VA_SIDE: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridKind {
    /// Columns: expressions (their prototypes); rows: noise vectors.
    Expr,
    /// Rows: AUs; columns: intensity 0 -> 1 on the neutral prototype; one noise vector.
    Au,
    /// Valence left to right (-1 -> 1), arousal top to bottom (1 -> -1); one noise vector.
    Va,
}

impl FromStr for GridKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "expr" => Ok(GridKind::Expr),
            "au" => Ok(GridKind::Au),
            "va" => Ok(GridKind::Va),
            _ => Err(Error::Config(format!(
                "--grid {s}: allowed values are expr, au, va"
            ))),
        }
    }
}

/// (rows, cols, row-major conditions, noise row of each cell) of a grid.
pub fn grid_layout(
    kind: GridKind,
    protos: &[LabelRow],
) -> (usize, usize, Vec<LabelRow>, Vec<usize>) {
    let neutral = &protos[0];
    match kind {
        GridKind::Expr => {
            let cols = protos.len();
            let cells = (0..EXPR_ROWS)
                .flat_map(|_| protos.iter().cloned())
                .collect();
            let noise = (0..EXPR_ROWS * cols).map(|i| i / cols).collect();
            (EXPR_ROWS, cols, cells, noise)
        }
        GridKind::Au => {
            let rows = neutral.aus.len();
            let mut cells = Vec::with_capacity(rows * AU_STEPS);
            for a in 0..rows {
                for s in 0..AU_STEPS {
                    let mut c = neutral.clone();
                    c.aus[a] = s as f32 / (AU_STEPS - 1) as f32;
                    cells.push(c);
                }
            }
            (rows, AU_STEPS, cells, vec![0; rows * AU_STEPS])
        }
        GridKind::Va => {
            let at = |i: usize| -1.0 + 2.0 * i as f32 / (VA_SIDE - 1) as f32;
            let mut cells = Vec::with_capacity(VA_SIDE * VA_SIDE);
            for r in 0..VA_SIDE {
                for c in 0..VA_SIDE {
                    let va = [at(c), -at(r)];
                    // The expression whose mean valence/arousal is nearest.
                    let d = |p: &LabelRow| (p.va[0] - va[0]).powi(2) + (p.va[1] - va[1]).powi(2);
                    let near = protos
                        .iter()
                        .min_by(|a, b| d(a).total_cmp(&d(b)))
                        .expect("at least one prototype");
                    cells.push(LabelRow { va, ..near.clone() });
                }
            }
            (VA_SIDE, VA_SIDE, cells, vec![0; VA_SIDE * VA_SIDE])
        }
    }
}

/// Renders the grid with the generator in eval mode; noise from `seed`.
pub fn sample_grid(gan: &mut GanTrainer, kind: GridKind, seed: u64) -> Result<Canvas> {
    let g = gan.config.generator.clone();
    let (rows, cols, cells, noise_row) = grid_layout(kind, &gan.prototypes);
    let mut rng = Rng::new(seed);
    let noise = Tensor::randn([rows, g.z_dim], 1.0, DType::F32, &mut rng).to_vec::<f32>()?;
    let z: Vec<f32> = noise_row
        .iter()
        .flat_map(|&r| noise[r * g.z_dim..(r + 1) * g.z_dim].iter().copied())
        .collect();
    let z = Tensor::from_vec(z, [cells.len(), g.z_dim])?;
    let cond = Conditions::from_rows(&cells, g.n_aus, g.n_expr)?;
    let images = gan.generate(&z, &cond.input, false)?;
    tile(&images.to_cpu()?.to_vec::<f32>()?, g.image_size, rows, cols)
}

/// Renders and writes a grid PNG; returns its (width, height).
pub fn write_grid(
    gan: &mut GanTrainer,
    kind: GridKind,
    seed: u64,
    path: &Path,
) -> Result<(u32, u32)> {
    let c = sample_grid(gan, kind, seed)?;
    write_png(path, &c)?;
    Ok((c.width, c.height))
}
