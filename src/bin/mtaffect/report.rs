//! What the commands print: metric tables, the line a finished run ends
//! with, and a seed set's summary.

use mtaffect::metrics::MtlMetrics;
use mtaffect::train::runner::RunOutcome;
use mtaffect::train::seeds::{SeedSummary, SUMMARY_FILE};
use mtaffect::train::temporal::SmoothedEval;
use std::path::Path;

pub fn print_metrics(m: &MtlMetrics) {
    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    println!("{:<22} {:>8}", "metric", "value");
    println!("{:<22} {:>8}", "CCC valence", f(m.ccc_valence));
    println!("{:<22} {:>8}", "CCC arousal", f(m.ccc_arousal));
    println!("{:<22} {:>8.4}", "F1 expression (macro)", m.expr_f1);
    println!("{:<22} {:>8}", "expression accuracy", f(m.expr_accuracy));
    println!("{:<22} {:>8.4}", "F1 AU (mean)", m.au_f1);
    println!("{:<22} {:>8.4}", "P_MTL", m.p_mtl);
    println!("{:<22} {:>8}", "samples", m.samples);
}

pub fn print_smoothed(e: &SmoothedEval) {
    print_metrics(&e.raw);
    let [w_va, w_expr, w_au] = e.windows_va_expr_au;
    println!("smoothed (windows VA {w_va}, expr {w_expr}, AU {w_au}, chosen on this set):");
    print_metrics(&e.smoothed);
}

/// The line every finished run prints first.
pub fn finished(out: &RunOutcome, what: &str) {
    println!(
        "finished {} {what} in {:.0} s; run directory {}",
        out.steps,
        out.seconds,
        out.run_dir.display()
    );
}

pub fn print_summary(parent: &Path, s: &SeedSummary) {
    println!(
        "\nseed set {} ({} runs: seeds {:?})",
        parent.display(),
        s.runs.len(),
        s.seeds
    );
    print!("{}", s.table());
    println!("summary written to {}", parent.join(SUMMARY_FILE).display());
}
