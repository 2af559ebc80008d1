//! A run directory: `<runs>/<name>/` holding the resolved `config.toml`, an
//! append-only `metrics.jsonl`, `last.safetensors`, `best.safetensors` and
//! the end-of-run plots.

use crate::{Error, Result};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const LAST_CHECKPOINT: &str = "last.safetensors";
pub const BEST_CHECKPOINT: &str = "best.safetensors";
pub const LOCK_FILE: &str = "run.lock";

#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates a fresh run directory under `runs_dir` and writes `config_toml`
    /// into it. With a `name`, that directory must not exist yet (a new run
    /// never mixes its files with an old one's; resume with [`RunDir::open`]).
    /// Without one, the name is `run-YYYYMMDD-HHMMSS` (UTC), suffixed `-2`,
    /// `-3`, ... when runs start within the same second.
    pub fn create(runs_dir: &Path, name: Option<&str>, config_toml: &str) -> Result<RunDir> {
        let root = new_folder(runs_dir, name)?;
        let cfg = root.join(CONFIG_FILE);
        std::fs::write(&cfg, config_toml).map_err(|e| Error::io(&cfg, e))?;
        Ok(RunDir { root })
    }

    /// An existing run directory, to resume it.
    pub fn open(root: impl Into<PathBuf>) -> Result<RunDir> {
        let root = root.into();
        let cfg = root.join(CONFIG_FILE);
        if !cfg.is_file() {
            return Err(Error::io(
                &root,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("not a run directory (no {CONFIG_FILE})"),
                ),
            ));
        }
        Ok(RunDir { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.root.join(METRICS_FILE)
    }

    pub fn last_checkpoint(&self) -> PathBuf {
        self.root.join(LAST_CHECKPOINT)
    }

    pub fn best_checkpoint(&self) -> PathBuf {
        self.root.join(BEST_CHECKPOINT)
    }

    /// Opens `metrics.jsonl` for appending (created if missing; a resumed
    /// run continues the same file).
    pub fn metrics_log(&self) -> Result<MetricsLog> {
        MetricsLog::open(self.metrics_path())
    }

    /// Takes the run's exclusive lock (`run.lock`, holding the owner's pid),
    /// which the OS releases when the process ends however it ends; a run
    /// directory another process holds is refused, naming that process.
    pub fn lock(&self) -> Result<RunLock> {
        let path = self.root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if let Err(e) = file.try_lock() {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(match e {
                std::fs::TryLockError::WouldBlock => Error::Config(format!(
                    "{}: in use by process {} (another run or --resume of this directory); wait for it or stop it first",
                    self.root.display(),
                    if holder.is_empty() { "?" } else { holder }
                )),
                std::fs::TryLockError::Error(e) => Error::io(&path, e),
            });
        }
        file.set_len(0)
            .and_then(|()| write!(file, "{}", std::process::id()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(RunLock { _file: file })
    }

    /// Removes temporary files that an interrupted atomic write left behind
    /// (`<file>.tmp<pid>`); call it holding the lock, when no write of this
    /// run can be in flight. Returns what it removed.
    pub fn remove_stale_temporaries(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&self.root, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let stale = name
                .rsplit_once(".tmp")
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
            if stale && path.is_file() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// Cuts `metrics.jsonl` back to the records of steps up to `step` (those
    /// a resumed run does not log again), after copying the whole file to
    /// `metrics.jsonl.bak`. A torn last line (a kill mid-write) is dropped;
    /// returns a warning when there was one.
    pub fn truncate_metrics(&self, step: u64) -> Result<Option<String>> {
        let path = self.metrics_path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let backup = self.root.join(format!("{METRICS_FILE}.bak"));
        crate::io::write_atomic(&backup, text.as_bytes())?;
        let mut kept = String::new();
        let mut warning = None;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(r) if r["step"].as_u64().is_some_and(|s| s <= step) => {
                    kept.push_str(line);
                    kept.push('\n');
                }
                Ok(_) => {}
                Err(_) if i + 1 == lines.len() => {
                    warning = Some(format!(
                        "{}: dropped a torn last line (line {})",
                        path.display(),
                        i + 1
                    ));
                }
                Err(e) => {
                    return Err(Error::Parse {
                        file: path.clone(),
                        line: i + 1,
                        field: "record".into(),
                        msg: e.to_string(),
                    })
                }
            }
        }
        crate::io::write_atomic(&path, kept.as_bytes())?;
        Ok(warning)
    }
}

/// Creates `runs_dir/name`, which must not exist yet, or without a name
/// `runs_dir/run-YYYYMMDD-HHMMSS` (UTC; suffixed `-2`, `-3`, ... when
/// folders are made within the same second). Used for run directories and
/// the parent folders of seed sets.
pub fn new_folder(runs_dir: &Path, name: Option<&str>) -> Result<PathBuf> {
    std::fs::create_dir_all(runs_dir).map_err(|e| Error::io(runs_dir, e))?;
    match name {
        Some(n) => {
            let root = runs_dir.join(n);
            std::fs::create_dir(&root).map_err(|e| Error::io(&root, e))?;
            Ok(root)
        }
        None => create_unique(runs_dir, &timestamp_name(SystemTime::now())),
    }
}

/// Holds a run directory's lock while it lives.
pub struct RunLock {
    _file: File,
}

/// Makes `<dir>/<base>`, or `<base>-2`, `<base>-3`, ... if taken. `create_dir`
/// fails on an existing directory, so two processes never share one.
fn create_unique(dir: &Path, base: &str) -> Result<PathBuf> {
    for i in 1u32.. {
        let name = if i == 1 {
            base.to_string()
        } else {
            format!("{base}-{i}")
        };
        let root = dir.join(name);
        match std::fs::create_dir(&root) {
            Ok(()) => return Ok(root),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&root, e)),
        }
    }
    unreachable!("u32 counter exhausted")
}

/// `run-YYYYMMDD-HHMMSS` in UTC.
fn timestamp_name(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "run-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01,
/// counting in 400-year eras of 146097 days that start on March 1st, so the
/// leap day falls at the end of each year.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year
    let mp = (5 * doy + 2) / 153; // March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Append-only JSON-lines log. Each record is one line, flushed when written,
/// so a crash loses at most the line being written and readers (the plotter,
/// `tail -f`) always see whole records.
pub struct MetricsLog {
    path: PathBuf,
    /// `None`: records are dropped (ranks other than 0).
    file: Option<File>,
}

impl MetricsLog {
    pub fn open(path: impl Into<PathBuf>) -> Result<MetricsLog> {
        let path = path.into();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(MetricsLog {
            path,
            file: Some(file),
        })
    }

    /// A log that checks its records and writes none: every rank of a
    /// data-parallel run logs, and only rank 0's log is a file.
    pub fn discard() -> MetricsLog {
        MetricsLog {
            path: PathBuf::new(),
            file: None,
        }
    }

    /// Writes `{"split": split, "step": step, ...fields of values}`.
    /// `values` must serialize to a JSON object (a struct such as
    /// `MtlMetrics`, or a map); its keys must not be `split` or `step`.
    /// Non-finite floats are written as `null` (JSON has no NaN).
    pub fn log(&mut self, split: &str, step: u64, values: &impl Serialize) -> Result<()> {
        let bad = |msg: String| Error::Arg {
            op: "MetricsLog::log",
            msg,
        };
        let serde_json::Value::Object(fields) =
            serde_json::to_value(values).map_err(|e| bad(e.to_string()))?
        else {
            return Err(bad("a metrics record must be a JSON object".into()));
        };
        let mut record = serde_json::Map::new();
        record.insert("split".into(), split.into());
        record.insert("step".into(), step.into());
        for (k, v) in fields {
            if record.contains_key(&k) {
                return Err(bad(format!("metrics field '{k}' is reserved")));
            }
            record.insert(k, v);
        }
        let mut line = serde_json::to_string(&record).map_err(|e| bad(e.to_string()))?;
        line.push('\n');
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        // One write call per line: O_APPEND keeps concurrent lines whole.
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Keeps the best validation score (higher is better, e.g. P_MTL) and says
/// when a new one should be saved as `best.safetensors`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BestTracker {
    best: Option<(f64, u64)>,
}

impl BestTracker {
    /// Resumes from a checkpoint's `TrainProgress::best`.
    pub fn from_best(best: Option<(f64, u64)>) -> Self {
        BestTracker { best }
    }

    /// Records `score` at `step`; true when it beats every earlier score
    /// (ties keep the earlier step). NaN never counts as better.
    pub fn update(&mut self, step: u64, score: f64) -> bool {
        let better = !score.is_nan() && self.best.is_none_or(|(b, _)| score > b);
        if better {
            self.best = Some((score, step));
        }
        better
    }

    /// (score, step) of the best so far.
    pub fn best(&self) -> Option<(f64, u64)> {
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamp_names_are_utc_dates() {
        let at = |s: u64| timestamp_name(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "run-19700101-000000");
        // 2000-02-29 12:34:56 UTC (a leap day in a year divisible by 400).
        assert_eq!(at(951_827_696), "run-20000229-123456");
        // 2026-11-22 14:28:12 UTC.
        assert_eq!(at(1_795_357_692), "run-20261122-142812");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn create_writes_config_and_never_reuses_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("runs");
        let a = RunDir::create(&runs, None, "x = 1\n").unwrap();
        let b = RunDir::create(&runs, None, "x = 2\n").unwrap();
        assert_ne!(a.path(), b.path());
        assert_eq!(std::fs::read_to_string(a.config_path()).unwrap(), "x = 1\n");
        assert_eq!(std::fs::read_to_string(b.config_path()).unwrap(), "x = 2\n");
        let name = a.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("run-20"), "{name}");

        let named = RunDir::create(&runs, Some("exp1"), "").unwrap();
        assert_eq!(named.last_checkpoint(), runs.join("exp1/last.safetensors"));
        assert_eq!(named.best_checkpoint(), runs.join("exp1/best.safetensors"));
        let e = RunDir::create(&runs, Some("exp1"), "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exp1"), "{e}");
        assert_eq!(
            RunDir::open(runs.join("exp1")).unwrap().path(),
            named.path()
        );
        assert!(RunDir::open(&runs).is_err());
    }

    #[test]
    fn metrics_log_appends_one_object_per_line() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), Some("r"), "").unwrap();
        let mut log = run.metrics_log().unwrap();
        log.log("train", 10, &serde_json::json!({"loss": 1.5, "lr": 0.1}))
            .unwrap();
        log.log("val", 20, &crate::metrics::MtlEvaluator::abaw().finish())
            .unwrap();
        assert!(log.log("train", 30, &1.0).is_err());
        assert!(log
            .log("train", 30, &serde_json::json!({"step": 1}))
            .is_err());
        drop(log);
        // Reopening appends rather than truncating (resume).
        let mut log = run.metrics_log().unwrap();
        log.log("train", 40, &serde_json::json!({"loss": f64::NAN}))
            .unwrap();
        let text = std::fs::read_to_string(run.metrics_path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["split"], "train");
        assert_eq!(lines[0]["loss"], 1.5);
        assert_eq!(lines[1]["step"], 20);
        assert_eq!(lines[1]["p_mtl"], 0.0);
        assert!(lines[2]["loss"].is_null());
    }

    #[test]
    fn best_tracker_keeps_the_maximum() {
        let mut t = BestTracker::default();
        assert!(t.update(100, 0.5));
        assert!(!t.update(200, 0.4));
        assert!(!t.update(300, 0.5));
        assert!(!t.update(400, f64::NAN));
        assert!(t.update(500, 0.7));
        assert_eq!(t.best(), Some((0.7, 500)));
        let mut resumed = BestTracker::from_best(t.best());
        assert!(!resumed.update(600, 0.6));
    }

    #[test]
    fn a_locked_run_directory_is_refused_naming_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), Some("r"), "").unwrap();
        let held = run.lock().unwrap();
        // A second open file description conflicts like a second process.
        let e = RunDir::open(run.path())
            .unwrap()
            .lock()
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("in use by process") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(held);
        run.lock().unwrap();
    }

    #[test]
    fn stale_temporaries_go_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), Some("r"), "").unwrap();
        for f in [
            "last.safetensors.tmp4242",
            "best.safetensors.tmp7",
            "notes.tmp",
            "a.tmpx",
        ] {
            std::fs::write(run.path().join(f), "x").unwrap();
        }
        let mut gone: Vec<_> = run
            .remove_stale_temporaries()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        gone.sort();
        assert_eq!(gone, ["best.safetensors.tmp7", "last.safetensors.tmp4242"]);
        assert!(run.path().join("notes.tmp").is_file());
        assert!(run.path().join("a.tmpx").is_file());
        assert!(run.config_path().is_file());
    }

    #[test]
    fn metrics_are_cut_back_to_the_checkpoint_with_a_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path(), Some("r"), "").unwrap();
        let whole = "{\"split\":\"baseline\",\"step\":0}\n\
                     {\"split\":\"train\",\"step\":2}\n\
                     {\"split\":\"val\",\"step\":2}\n\
                     {\"split\":\"train\",\"step\":3}\n\
                     {\"split\":\"tra";
        std::fs::write(run.metrics_path(), whole).unwrap();
        let warning = run.truncate_metrics(2).unwrap().unwrap();
        assert!(warning.contains("torn last line (line 5)"), "{warning}");
        let kept = std::fs::read_to_string(run.metrics_path()).unwrap();
        assert_eq!(kept.lines().count(), 3);
        assert!(!kept.contains("\"step\":3"));
        let backup = run.path().join("metrics.jsonl.bak");
        assert_eq!(std::fs::read_to_string(backup).unwrap(), whole);
        // A torn line that is not the last is an error, not a silent loss.
        std::fs::write(run.metrics_path(), "{\"split\n{\"step\":1}\n").unwrap();
        let e = run.truncate_metrics(2).unwrap_err().to_string();
        assert!(e.contains("metrics.jsonl:1"), "{e}");
    }
}
