//! Label sets and the per-frame record every reader produces.
//!
//! Invalid markers follow the ABAW files: valence/arousal -5, expression -1,
//! action units -1. In memory a missing label is `None`; the markers come back
//! only where the downstream losses expect them (batch tensors, files).

use serde::{Deserialize, Serialize};

/// Valence/arousal marker for "not annotated" in files and batch tensors.
pub const VA_INVALID: f32 = -5.0;
/// Expression and AU marker for "not annotated" in files and batch tensors.
pub const LABEL_INVALID: i32 = -1;

/// Which challenge's label definitions a file follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelSet {
    /// ABAW 2022 multi-task learning: 12 AUs, 8 expressions (with Other).
    #[default]
    Abaw2022,
    /// ABAW 2020 (MTANet was trained on it): 8 AUs, 7 expressions without Other.
    Abaw2020,
}

const AUS_2022: [&str; 12] = [
    "AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26",
];
const AUS_2020: [&str; 8] = ["AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25"];
const EXPRS: [&str; 8] = [
    "Neutral",
    "Anger",
    "Disgust",
    "Fear",
    "Happiness",
    "Sadness",
    "Surprise",
    "Other",
];

impl LabelSet {
    pub fn au_names(self) -> &'static [&'static str] {
        match self {
            LabelSet::Abaw2022 => &AUS_2022,
            LabelSet::Abaw2020 => &AUS_2020,
        }
    }

    pub fn num_aus(self) -> usize {
        self.au_names().len()
    }

    pub fn expression_names(self) -> &'static [&'static str] {
        match self {
            LabelSet::Abaw2022 => &EXPRS,
            LabelSet::Abaw2020 => &EXPRS[..7],
        }
    }

    pub fn num_expressions(self) -> usize {
        self.expression_names().len()
    }
}

/// One annotated frame. `image` is relative to the `cropped_aligned` root,
/// e.g. `video1/00001.jpg`; `aus` has `LabelSet::num_aus` entries when present.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub image: String,
    pub video: String,
    /// 1-based frame number, as in the file name.
    pub frame: u32,
    pub va: Option<[f32; 2]>,
    pub expr: Option<u8>,
    pub aus: Option<Vec<u8>>,
    /// Where the labels came from, so decode errors later can name file and line.
    pub origin: Origin,
}

/// Annotation file and 1-based line a sample was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: std::sync::Arc<std::path::Path>,
    pub line: usize,
}

impl Sample {
    /// A frame with no label yet (labels are filled in by the caller).
    pub fn unlabelled(image: String, video: &str, frame: u32, origin: Origin) -> Sample {
        Sample {
            image,
            video: video.to_string(),
            frame,
            va: None,
            expr: None,
            aus: None,
            origin,
        }
    }

    /// A frame `v/00001.jpg` with the given labels, for unit tests of code
    /// that reads samples.
    #[cfg(test)]
    pub(crate) fn for_test(va: Option<[f32; 2]>, expr: Option<u8>, aus: Option<Vec<u8>>) -> Sample {
        Sample {
            va,
            expr,
            aus,
            ..Sample::unlabelled(
                "v/00001.jpg".into(),
                "v",
                1,
                Origin {
                    file: std::sync::Arc::from(std::path::Path::new("test.txt")),
                    line: 2,
                },
            )
        }
    }

    pub fn has_any_label(&self) -> bool {
        self.va.is_some() || self.expr.is_some() || self.aus.is_some()
    }
}

/// Splits `video/00042.jpg` into ("video", 42); None if the name is not of that form.
pub fn split_image_name(image: &str) -> Option<(&str, u32)> {
    let (video, file) = image.rsplit_once('/')?;
    let stem = file
        .strip_suffix(".jpg")
        .or_else(|| file.strip_suffix(".png"))?;
    if video.is_empty() || stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((video, stem.parse().ok()?))
}

/// The image name Aff-Wild2 uses for frame `frame` (1-based) of `video`.
pub fn image_name(video: &str, frame: u32) -> String {
    format!("{video}/{frame:05}.jpg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_have_the_challenge_sizes() {
        assert_eq!(LabelSet::Abaw2022.num_aus(), 12);
        assert_eq!(LabelSet::Abaw2022.num_expressions(), 8);
        assert_eq!(LabelSet::Abaw2020.num_aus(), 8);
        assert_eq!(LabelSet::Abaw2020.num_expressions(), 7);
        assert_eq!(LabelSet::Abaw2020.au_names()[6], "AU20");
    }

    #[test]
    fn image_names_round_trip() {
        assert_eq!(
            image_name("10-60-1280x720_right", 7),
            "10-60-1280x720_right/00007.jpg"
        );
        assert_eq!(
            split_image_name("10-60-1280x720_right/00007.jpg"),
            Some(("10-60-1280x720_right", 7))
        );
        assert_eq!(split_image_name("noslash.jpg"), None);
        assert_eq!(split_image_name("v/abc.jpg"), None);
    }
}
