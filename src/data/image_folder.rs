//! Any folder of face images as unlabelled samples, for self-supervised
//! pretraining: every `.jpg`, `.jpeg` and `.png` below the root (recursive,
//! case-insensitive extension), in sorted path order so a run's data does
//! not depend on the file system's listing order. The ABAW
//! `cropped_aligned/<video>/<frame>.jpg` layout is one such folder: a file
//! directly under a sub-folder keeps that folder as its video and its frame
//! number when its name is one.

use super::labels::{split_image_name, Origin, Sample};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Every image file below `root`, as paths relative to it, sorted. Symbolic
/// links to folders are not followed (a link cycle would never end).
fn image_paths(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = root.join(&rel);
        for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let e = e.map_err(|e| Error::io(&dir, e))?;
            let kind = e.file_type().map_err(|err| Error::io(e.path(), err))?;
            let path = rel.join(e.file_name());
            if kind.is_dir() {
                todo.push(path);
            } else if is_image(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The images below `root` as unlabelled samples (names relative to `root`
/// with `/` separators). A folder that is missing, unreadable, or holds no
/// image is an error naming it.
pub fn scan_images(root: &Path) -> Result<Vec<Sample>> {
    let paths = image_paths(root).map_err(|e| {
        Error::Config(format!(
            "image folder {}: {e} (a folder of face images, searched recursively)",
            root.display()
        ))
    })?;
    if paths.is_empty() {
        return Err(Error::Config(format!(
            "image folder {}: no .jpg, .jpeg or .png files below it",
            root.display()
        )));
    }
    let origin = Origin {
        file: Arc::from(root),
        line: 0,
    };
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let image = p
                .to_str()
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{}: the file name is not UTF-8",
                        root.join(p).display()
                    ))
                })?
                .replace(std::path::MAIN_SEPARATOR, "/");
            let (video, frame) = match split_image_name(&image) {
                Some((v, f)) => (v.to_string(), f),
                None => {
                    let v = image.rsplit_once('/').map_or("", |(v, _)| v).to_string();
                    (v, i as u32)
                }
            };
            Ok(Sample::unlabelled(image, &video, frame, origin.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn finds_images_recursively_in_sorted_order() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "b/00002.jpg",
            "b/00001.jpg",
            "a/deep/face.PNG",
            "a/x.jpeg",
            "a/notes.txt",
            "top.png",
        ] {
            touch(d.path(), f);
        }
        let s = scan_images(d.path()).unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.image.as_str()).collect();
        assert_eq!(
            names,
            [
                "a/deep/face.PNG",
                "a/x.jpeg",
                "b/00001.jpg",
                "b/00002.jpg",
                "top.png"
            ]
        );
        // The ABAW layout keeps its video and frame; other names get their position.
        assert_eq!((s[2].video.as_str(), s[2].frame), ("b", 1));
        assert_eq!((s[0].video.as_str(), s[0].frame), ("a/deep", 0));
        assert_eq!((s[4].video.as_str(), s[4].frame), ("", 4));
        assert!(s.iter().all(|s| !s.has_any_label()));
    }

    #[test]
    fn empty_and_missing_folders_are_errors_naming_them() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "readme.txt");
        let e = scan_images(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("no .jpg, .jpeg or .png") && e.contains(&d.path().display().to_string())
        );
        let missing = d.path().join("nope");
        let e = scan_images(&missing).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("image folder"), "{e}");
    }
}
