//! Atomic file writes, shared by checkpoints, annotation and prediction
//! files and the kernel cache: a reader never sees a half-written file, and a
//! crash leaves the previous version in place.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to [`tmp_path`], fsyncs it, renames it over `path` and
/// fsyncs the directory so the rename itself survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        // Best effort: the target is untouched either way, and a stale .tmp is
        // overwritten by the next save.
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_dir(path)
}

#[cfg(unix)]
fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> Result<()> {
    // Directories cannot be opened for fsync here; the rename is still atomic.
    Ok(())
}

/// [`write_atomic`] after creating `path`'s folder if needed: for outputs a
/// user names (predictions, generated data sets), not for checkpoints, whose
/// folder missing means something is wrong.
pub fn write_atomic_creating_dir(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_atomic(path, bytes)
}

/// `<file>.tmp<pid>` next to `path`: per process, so two processes filling
/// the same cache entry never write into one temporary file.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}
