//! Load-time checks of every image a data set references (readable, not
//! empty, not cut off, a header that decodes to a sane size), so a bad image
//! is found before training starts rather than at the batch, or the first
//! evaluation, that meets it. Images found good are remembered by file size
//! and modification time in a small cache file, so a re-run does not read
//! them again.

use super::image::checked_format;
use super::loader::Dataset;
use super::report::{BadReason, LoadSummary, OnBadSample};
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

/// Images larger than the decoder accepts are refused at the check too.
use super::image::MAX_IMAGE_SIDE as MAX_SIDE;

/// Sets of at least this many images print progress while they are checked.
const PROGRESS_FROM: usize = 5000;

/// Why an image cannot be used: the skip category and the message.
type BadImage = (BadReason, String);

/// File size and modification time in nanoseconds: what a cache entry is keyed by.
type Stamp = (u64, u128);

/// Why one image file cannot be used.
pub fn check_image(path: &Path) -> std::result::Result<(), BadImage> {
    let bytes = std::fs::read(path).map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            BadReason::MissingImage
        } else {
            BadReason::UndecodableImage
        };
        (reason, format!("cannot read {}: {e}", path.display()))
    })?;
    if bytes.is_empty() {
        return Err((
            BadReason::EmptyImage,
            format!("{}: zero-byte image file", path.display()),
        ));
    }
    let fail = |reason, m: String| (reason, format!("{}: {m}", path.display()));
    let format = checked_format(&bytes).map_err(|e| {
        let reason = if e.0.starts_with("truncated") {
            BadReason::TruncatedImage
        } else {
            BadReason::UndecodableImage
        };
        fail(reason, e.0)
    })?;
    let (w, h) = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format)
        .into_dimensions()
        .map_err(|e| fail(BadReason::UndecodableImage, format!("cannot decode: {e}")))?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(fail(
            BadReason::UndecodableImage,
            format!("{w}x{h} pixels; expected 1..={MAX_SIDE} on each side"),
        ));
    }
    Ok(())
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    let t = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((m.len(), t.as_nanos()))
}

/// The cache file of an image folder: one per folder, named by a hash of its
/// absolute path, inside `cache_dir`.
pub fn cache_file(cache_dir: &Path, image_root: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(image_root).unwrap_or_else(|_| image_root.to_path_buf());
    // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
    let h = abs
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
    cache_dir.join(format!("images-{h:016x}.tsv"))
}

/// `size \t mtime_ns \t name` per good image.
fn read_cache(path: &Path) -> HashMap<String, Stamp> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let size = f.next()?.parse().ok()?;
            let mtime = f.next()?.parse().ok()?;
            Some((f.next()?.to_string(), (size, mtime)))
        })
        .collect()
}

/// Checks every image of `ds` (each file once), following `policy`: `Fail`
/// returns the first bad image's error, naming its annotation line; `Skip`
/// drops every sample of a bad image and counts it in `summary`. With
/// `cache`, images whose size and modification time match a cached good
/// check are not read again, and the cache is rewritten with this check's
/// good images (a cache that cannot be written only costs the next run time).
pub fn check_dataset(
    ds: &mut Dataset,
    policy: OnBadSample,
    summary: &mut LoadSummary,
    cache: Option<&Path>,
    quiet: bool,
) -> Result<()> {
    let cached = cache.map(read_cache).unwrap_or_default();
    let mut seen = HashSet::new();
    let names: Vec<&str> = ds
        .samples
        .iter()
        .map(|s| s.image.as_str())
        .filter(|n| seen.insert(*n))
        .collect();
    let done = AtomicUsize::new(0);
    let total = names.len();
    let results: Vec<(&str, Option<Stamp>, Option<BadImage>)> = names
        .par_iter()
        .map(|&name| {
            let path = ds.image_root.join(name);
            let st = stamp(&path);
            let known = st.is_some() && cached.get(name) == st.as_ref();
            let bad = if known {
                None
            } else {
                check_image(&path).err()
            };
            let k = done.fetch_add(1, Ordering::Relaxed) + 1;
            if !quiet && total >= PROGRESS_FROM && k.is_multiple_of(PROGRESS_FROM) {
                eprintln!("checked {k}/{total} images");
            }
            (name, st, bad)
        })
        .collect();
    let mut bad: HashMap<String, BadImage> = HashMap::new();
    let mut good = String::new();
    let mut good_count = 0;
    for (name, st, b) in results {
        match (b, st) {
            (Some(b), _) => {
                bad.insert(name.to_string(), b);
            }
            (None, Some((size, mtime))) => {
                good.push_str(&format!("{size}\t{mtime}\t{name}\n"));
                good_count += 1;
            }
            (None, None) => {}
        }
    }
    // The cache holds exactly this check's good images; rewrite it when that changed.
    let cache_stale = good_count != cached.len()
        || names
            .iter()
            .any(|n| !cached.contains_key(*n) && !bad.contains_key(*n));
    if let Some(c) = cache.filter(|_| cache_stale) {
        let _ = crate::io::write_atomic_creating_dir(c, good.as_bytes());
    }
    if bad.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(ds.samples.len());
    for s in ds.samples.drain(..) {
        match bad.get(&s.image) {
            None => kept.push(s),
            Some((reason, msg)) => {
                let err = Error::Parse {
                    file: s.origin.file.to_path_buf(),
                    line: s.origin.line,
                    field: "image".into(),
                    msg: msg.clone(),
                };
                summary.bad(policy, *reason, err)?;
            }
        }
    }
    ds.samples = kept;
    summary.samples = ds.samples.len();
    Ok(())
}
