//! What the command-line tests share: running the binary, its whole output,
//! and a fresh scratch folder per test.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn mtaffect<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mtaffect"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `--set` pairs for each `key=value`.
#[allow(dead_code)] // Not every test binary overrides keys this way.
pub fn sets(kv: &[String]) -> Vec<String> {
    kv.iter()
        .flat_map(|s| ["--set".to_string(), s.clone()])
        .collect()
}

/// Standard output, then standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An empty folder `mtaffect-<tag>-<pid>` in the temporary directory.
pub fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mtaffect-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The one run folder a test's runs directory holds.
#[allow(dead_code)] // Only the tests that train through the CLI look.
pub fn only_run(runs: &Path) -> PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}
