//! Seed sets: one configuration trained once per seed, sequentially, each
//! run in its own directory `<parent>/seed-<s>/`, and the spread of every
//! validation metric over the runs in `<parent>/summary.json`.
//!
//! A seed (`train.seed`) drives every random stream of a run: the model's
//! initialisation, the data order, the augmentation, dropout, and for the
//! GAN the noise and the sampled conditions. It does not choose the data:
//! the synthetic set has its own `data.synth_seed`, so the runs of a set
//! see the same images and are scored on the same validation frames.

use super::plot::read_series;
use super::run_dir::{new_folder, CONFIG_FILE, LAST_CHECKPOINT, METRICS_FILE};
use super::runner::{RunOutcome, RunnableConfig};
use super::RunDir;
use crate::stats::Spread;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The list of seeds, in `<parent>/seeds.json`.
pub const SEEDS_FILE: &str = "seeds.json";
/// The spread of the metrics, in `<parent>/summary.json`.
pub const SUMMARY_FILE: &str = "summary.json";
/// The record kinds summarised: validation metrics, and the GAN's
/// selection readings.
const SPLITS: [&str; 2] = ["val", "select"];

/// `--seeds`: a count `N` (seeds 0 to N-1) or a comma-separated list.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let bad = |why: &str| {
        Error::Config(format!(
            "--seeds {text:?}: {why} (a count such as 3, or a list such as 0,1,2)"
        ))
    };
    let seeds: Vec<u64> = if text.contains(',') {
        text.split(',')
            .map(|s| s.trim().parse::<u64>().map_err(|_| bad("not a seed")))
            .collect::<Result<_>>()?
    } else {
        let n: u64 = text.trim().parse().map_err(|_| bad("not a count"))?;
        (0..n).collect()
    };
    if seeds.is_empty() {
        return Err(bad("no seeds"));
    }
    let mut sorted = seeds.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(bad("a seed is named twice"));
    }
    Ok(seeds)
}

/// True for the parent folder of a seed set.
pub fn is_seed_set(dir: &Path) -> bool {
    dir.join(SEEDS_FILE).is_file()
}

/// The run folder of `seed` inside a seed set.
pub fn member_name(seed: u64) -> String {
    format!("seed-{seed}")
}

/// Checkpoints named on a command line, with folders opened up: a seed
/// set gives each member's `best.safetensors`, a run directory its own;
/// a file is taken as it is.
pub fn expand_checkpoints(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
        } else if is_seed_set(p) {
            for seed in read_manifest(p)?.seeds {
                out.push(RunDir::open(p.join(member_name(seed)))?.best_checkpoint());
            }
        } else {
            out.push(RunDir::open(p)?.best_checkpoint());
        }
    }
    Ok(out)
}

/// The fields of the summarised records that count things rather than
/// measure them.
fn is_count(metric: &str) -> bool {
    let field = metric.split_once('.').map_or(metric, |(_, f)| f);
    field == "samples"
        || field.starts_with("valid_")
        || field.ends_with("_matched")
        || field.ends_with("_total")
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    seeds: Vec<u64>,
}

/// One metric over the runs of a set: at the last evaluation of each run,
/// and at the evaluation each run kept as `best.safetensors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSpread {
    #[serde(rename = "final")]
    pub last: Spread,
    /// Absent when a run has no best checkpoint or did not log the metric
    /// at that step.
    pub at_best: Option<Spread>,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedSummary {
    pub seeds: Vec<u64>,
    /// Run folders, relative to the parent, in the seeds' order.
    pub runs: Vec<String>,
    /// The step of each run's best checkpoint.
    pub best_steps: Vec<Option<u64>>,
    /// `<split>.<field>` (e.g. `val.p_mtl`) -> spread. A metric missing or
    /// undefined in some run is left out.
    pub metrics: BTreeMap<String, MetricSpread>,
}

impl SeedSummary {
    pub fn read(parent: &Path) -> Result<SeedSummary> {
        let path = parent.join(SUMMARY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Parse {
            file: path,
            line: e.line(),
            field: "summary".into(),
            msg: e.to_string(),
        })
    }

    /// The metric named `name`: a full key (`val.p_mtl`) or a field that
    /// only one split has (`p_mtl`).
    pub fn metric(&self, name: &str) -> Result<(&str, &MetricSpread)> {
        if let Some((k, m)) = self.metrics.get_key_value(name) {
            return Ok((k, m));
        }
        let hits: Vec<_> = self
            .metrics
            .iter()
            .filter(|(k, _)| k.split_once('.').is_some_and(|(_, f)| f == name))
            .collect();
        match hits.as_slice() {
            [(k, m)] => Ok((k.as_str(), m)),
            _ => Err(Error::Config(format!(
                "metric {name:?}: {}; known: {}",
                if hits.is_empty() {
                    "not in the summary"
                } else {
                    "ambiguous"
                },
                self.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The console table: one row per metric, the mean ± sd and range at
    /// the last evaluation and at the best checkpoint. Counts (samples
    /// scored, faces judged) are left to the JSON file.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:>26} {:>19}   {}\n",
            "metric (seeds)", "final: mean ± sd", "[min, max]", "at best checkpoint: mean ± sd"
        );
        for (name, m) in &self.metrics {
            if is_count(name) {
                continue;
            }
            let best = m.at_best.as_ref().map_or("n/a".into(), Spread::display);
            out.push_str(&format!(
                "{name:<28} {:>26} {:>19}   {best}\n",
                m.last.display(),
                format!("[{:.4}, {:.4}]", m.last.min, m.last.max)
            ));
        }
        out
    }
}

/// Runs `cfg` once per seed in a new parent folder under `run.runs_dir`
/// (named `run.name`, or by the time), then summarises. `one` trains a
/// single run: a fresh one (`None`) or continuing a run directory.
pub fn run_seed_set<C: RunnableConfig>(
    cfg: &C,
    seeds: &[u64],
    one: impl FnMut(&C, Option<&Path>) -> Result<RunOutcome>,
) -> Result<(PathBuf, SeedSummary)> {
    let r = cfg.run_config();
    let parent = new_folder(&r.runs_dir, (!r.name.is_empty()).then_some(r.name.as_str()))?;
    let write = |name: &str, bytes: &[u8]| crate::io::write_atomic(&parent.join(name), bytes);
    write(CONFIG_FILE, cfg.to_toml().as_bytes())?;
    let manifest = serde_json::to_string_pretty(&Manifest {
        seeds: seeds.to_vec(),
    })
    .expect("seed list serialises");
    write(SEEDS_FILE, manifest.as_bytes())?;
    let summary = run_members(&parent, cfg, seeds, one)?;
    Ok((parent, summary))
}

/// Continues the seed set in `parent`: finished runs are read as they are,
/// an interrupted one resumes from its last checkpoint, a missing one
/// starts. `quiet` is this process's console choice.
pub fn resume_seed_set<C: RunnableConfig>(
    parent: &Path,
    quiet: bool,
    one: impl FnMut(&C, Option<&Path>) -> Result<RunOutcome>,
) -> Result<SeedSummary> {
    let manifest = read_manifest(parent)?;
    let mut cfg = C::load(&parent.join(CONFIG_FILE))?;
    cfg.run_config_mut().quiet = quiet;
    run_members(parent, &cfg, &manifest.seeds, one)
}

fn read_manifest(parent: &Path) -> Result<Manifest> {
    let path = parent.join(SEEDS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Parse {
        file: path.clone(),
        line: e.line(),
        field: "seeds".into(),
        msg: e.to_string(),
    })
}

fn run_members<C: RunnableConfig>(
    parent: &Path,
    base: &C,
    seeds: &[u64],
    mut one: impl FnMut(&C, Option<&Path>) -> Result<RunOutcome>,
) -> Result<SeedSummary> {
    let mut best_steps = Vec::new();
    for (i, &seed) in seeds.iter().enumerate() {
        let name = member_name(seed);
        let dir = parent.join(&name);
        let mut cfg = base.clone();
        cfg.loop_config_mut().seed = seed;
        let run = cfg.run_config_mut();
        run.runs_dir = parent.to_path_buf();
        run.name = name.clone();
        let resume = if dir.join(LAST_CHECKPOINT).is_file() {
            Some(dir.clone())
        } else {
            if dir.exists() {
                // Started but stopped before its first checkpoint: nothing
                // to continue from. The lock keeps a live run's folder.
                let lock = RunDir::open(&dir)?.lock()?;
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                drop(lock);
                eprintln!("{}: no checkpoint yet, starting it again", dir.display());
            }
            None
        };
        println!(
            "seed {seed} ({} of {}): {}",
            i + 1,
            seeds.len(),
            dir.display()
        );
        let out = one(&cfg, resume.as_deref()).map_err(|e| match e {
            Error::Interrupted(m) => Error::Interrupted(format!(
                "{m}; the whole seed set continues with --resume {}",
                parent.display()
            )),
            other => other,
        })?;
        best_steps.push(out.best.map(|(_, step)| step));
    }
    let summary = summarize(parent, seeds, &best_steps)?;
    let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
    crate::io::write_atomic(&parent.join(SUMMARY_FILE), json.as_bytes())?;
    Ok(summary)
}

/// The spread of every numeric field of the summarised records over the
/// member runs of `parent`.
pub fn summarize(parent: &Path, seeds: &[u64], best_steps: &[Option<u64>]) -> Result<SeedSummary> {
    let runs: Vec<String> = seeds.iter().map(|&s| member_name(s)).collect();
    // name -> per run (final value, value at the best step)
    let mut per_metric: BTreeMap<String, Vec<(f64, Option<f64>)>> = BTreeMap::new();
    for (run, best) in runs.iter().zip(best_steps) {
        let log = parent.join(run).join(METRICS_FILE);
        for split in SPLITS {
            for s in read_series(&log, split, |k| k != "step")? {
                let Some(&(_, last)) = s.points.last() else {
                    continue;
                };
                let at_best = best.and_then(|b| {
                    s.points
                        .iter()
                        .rev()
                        .find(|(step, _)| *step == b as f64)
                        .map(|p| p.1)
                });
                per_metric
                    .entry(format!("{split}.{}", s.name))
                    .or_default()
                    .push((last, at_best));
            }
        }
    }
    let mut metrics = BTreeMap::new();
    for (name, rows) in per_metric {
        if rows.len() != runs.len() {
            continue;
        }
        let last: Vec<f64> = rows.iter().map(|r| r.0).collect();
        let at_best: Option<Vec<f64>> = rows.iter().map(|r| r.1).collect();
        metrics.insert(
            name,
            MetricSpread {
                last: Spread::of(&last)?,
                at_best: at_best.map(|v| Spread::of(&v)).transpose()?,
            },
        );
    }
    Ok(SeedSummary {
        seeds: seeds.to_vec(),
        runs,
        best_steps: best_steps.to_vec(),
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::MetricsLog;
    use serde_json::json;

    #[test]
    fn seeds_parse_as_a_count_or_a_list() {
        assert_eq!(parse_seeds("3").unwrap(), [0, 1, 2]);
        assert_eq!(parse_seeds("4, 7,1").unwrap(), [4, 7, 1]);
        for bad in ["0", "", "1,1", "a", "1,,2", "-1"] {
            let e = parse_seeds(bad).unwrap_err().to_string();
            assert!(e.contains("--seeds"), "{bad}: {e}");
        }
    }

    #[test]
    fn summary_statistics_match_a_hand_computation() {
        let parent = tempfile::tempdir().unwrap();
        // Two seeds; P_MTL 1.0 then 1.6 (best at 20) and 1.2 then 1.1 (best at 10).
        let runs = [(3u64, [1.0, 1.6], 20u64), (5, [1.2, 1.1], 10)];
        for (seed, p, _) in runs {
            let dir = parent.path().join(member_name(seed));
            std::fs::create_dir(&dir).unwrap();
            let mut log = MetricsLog::open(dir.join(METRICS_FILE)).unwrap();
            log.log("train", 10, &json!({"loss": 9.0})).unwrap();
            log.log(
                "val",
                10,
                &json!({"p_mtl": p[0], "samples": 50, "ccc_valence": null}),
            )
            .unwrap();
            log.log("val", 20, &json!({"p_mtl": p[1], "samples": 50}))
                .unwrap();
        }
        let s = summarize(parent.path(), &[3, 5], &[Some(20), Some(10)]).unwrap();
        assert_eq!(s.runs, ["seed-3", "seed-5"]);
        let p = &s.metrics["val.p_mtl"];
        // Final: 1.6 and 1.1 -> mean 1.35, sd |1.6 - 1.1| / sqrt(2).
        assert_eq!(p.last.values, [1.6, 1.1]);
        assert!((p.last.mean - 1.35).abs() < 1e-12);
        assert!((p.last.sd.unwrap() - 0.5 / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!((p.last.min, p.last.max), (1.1, 1.6));
        // At best: 1.6 (step 20) and 1.2 (step 10) -> mean 1.4.
        let b = p.at_best.as_ref().unwrap();
        assert_eq!(b.values, [1.6, 1.2]);
        assert!((b.mean - 1.4).abs() < 1e-12);
        // Only the summarised splits, and only metrics every run has.
        assert!(!s.metrics.contains_key("train.loss"));
        assert!(!s.metrics.contains_key("val.ccc_valence"));
        assert!(!s.metrics.contains_key("val.step"));
        assert_eq!(s.metric("p_mtl").unwrap().0, "val.p_mtl");
        assert!(s.metric("loss").is_err());
        // Constant counts stay out of the table.
        let t = s.table();
        assert!(t.contains("val.p_mtl") && !t.contains("val.samples"), "{t}");
    }
}
