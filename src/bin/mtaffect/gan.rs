//! `mtaffect gan judge` and `mtaffect sample`: reading and drawing a trained
//! generator's faces.

use mtaffect::train::gan::{self, GanTrainer, GridKind};
use mtaffect::train::Trainer;
use mtaffect::Result;
use std::path::Path;

pub fn gan_judge_cmd(
    checkpoint: &Path,
    judge: &Path,
    per_class: usize,
    out: Option<&Path>,
) -> Result<()> {
    let mut g = GanTrainer::from_checkpoint(checkpoint)?;
    let mut j = Trainer::from_checkpoint(judge)?;
    let a = gan::judge_expressions(&mut g, &mut j, per_class)?;
    let names = j.config.data.label_set.expression_names();
    println!("requested -> read by the judge (rows: requested, columns: judged)");
    println!(
        "{:<10} {}",
        "",
        names
            .iter()
            .map(|n| format!(" {n:>6.6}"))
            .collect::<String>()
    );
    for (name, row) in names.iter().zip(&a.confusion) {
        println!(
            "{name:<10} {}",
            row.iter().map(|c| format!(" {c:>6}")).collect::<String>()
        );
    }
    println!(
        "agreement {}/{} = {:.3} (chance {:.3}); confidence {:.3}; diversity {:.4} (mean squared pixel difference between faces of one expression)",
        a.matched,
        a.total,
        a.rate,
        1.0 / names.len() as f64,
        a.confidence,
        a.diversity
    );
    if let Some(out) = out {
        let json = serde_json::to_string_pretty(&a).expect("agreement serialises");
        mtaffect::io::write_atomic(out, json.as_bytes())?;
        println!("written to {}", out.display());
    }
    Ok(())
}

pub fn sample_cmd(checkpoint: &Path, grid: GridKind, out: &Path, seed: u64) -> Result<()> {
    let mut g = GanTrainer::from_checkpoint(checkpoint)?;
    let (w, h) = gan::write_grid(&mut g, grid, seed, out)?;
    println!("{w}x{h} grid written to {}", out.display());
    Ok(())
}
