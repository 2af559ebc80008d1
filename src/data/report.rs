//! What to do with bad input, and the tally of what was dropped and why.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether a bad line or image stops loading (`fail`) or is skipped and counted (`skip`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadSample {
    Skip,
    #[default]
    Fail,
}

impl std::str::FromStr for OnBadSample {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "skip" => Ok(OnBadSample::Skip),
            "fail" => Ok(OnBadSample::Fail),
            _ => Err(Error::Config(format!(
                "on-bad-sample: expected skip|fail, found '{s}'"
            ))),
        }
    }
}

/// Why a sample was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadReason {
    FieldCount,
    NotANumber,
    OutOfRange,
    BadImageName,
    MissingImage,
    /// A zero-byte image file.
    EmptyImage,
    /// A JPEG or PNG whose end is missing.
    TruncatedImage,
    UndecodableImage,
    /// The same video/frame twice with different labels.
    ConflictingDuplicate,
}

/// Counts from one load: kept samples, label-less lines dropped (normal in
/// ABAW files, not an error), and bad samples skipped by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadSummary {
    pub samples: usize,
    pub unlabelled: usize,
    /// Lines repeating an earlier video/frame with the same labels, merged into it.
    pub duplicates_merged: usize,
    pub skipped: BTreeMap<BadReason, usize>,
    /// The first few skip messages verbatim, so a user sees file, line and field.
    pub first_errors: Vec<String>,
}

const KEEP_MESSAGES: usize = 10;

impl LoadSummary {
    pub fn total_skipped(&self) -> usize {
        self.skipped.values().sum()
    }

    /// Applies the policy to one bad sample: `Fail` returns the error, `Skip` counts it.
    pub(crate) fn bad(&mut self, policy: OnBadSample, reason: BadReason, err: Error) -> Result<()> {
        match policy {
            OnBadSample::Fail => Err(err),
            OnBadSample::Skip => {
                *self.skipped.entry(reason).or_default() += 1;
                if self.first_errors.len() < KEEP_MESSAGES {
                    self.first_errors.push(err.to_string());
                }
                Ok(())
            }
        }
    }

    pub fn merge(&mut self, other: &LoadSummary) {
        self.samples += other.samples;
        self.unlabelled += other.unlabelled;
        self.duplicates_merged += other.duplicates_merged;
        for (k, v) in &other.skipped {
            *self.skipped.entry(*k).or_default() += v;
        }
        for m in &other.first_errors {
            if self.first_errors.len() < KEEP_MESSAGES {
                self.first_errors.push(m.clone());
            }
        }
    }
}

impl LoadSummary {
    /// The share of samples skipped as bad, of all the samples read.
    pub fn bad_fraction(&self) -> f64 {
        let bad = self.total_skipped();
        bad as f64 / (bad + self.samples).max(1) as f64
    }

    /// Every skip category with its count, then the first few messages
    /// (each names the file, line and image).
    pub fn skip_report(&self, shown: usize) -> String {
        let mut out = self
            .skipped
            .iter()
            .map(|(k, v)| format!("{v} {}", reason_name(*k)))
            .collect::<Vec<_>>()
            .join(", ");
        for m in self.first_errors.iter().take(shown) {
            out.push_str("\n  ");
            out.push_str(m);
        }
        out
    }
}

/// The snake_case name a reason has in the metrics log.
fn reason_name(r: BadReason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{r:?}"))
}

impl std::fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} samples, {} unlabelled lines dropped",
            self.samples, self.unlabelled
        )?;
        if self.duplicates_merged > 0 {
            write!(f, ", {} duplicate lines merged", self.duplicates_merged)?;
        }
        for (k, v) in &self.skipped {
            write!(f, ", {v} skipped ({k:?})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_parses_from_the_cli_spelling_and_counts_skips() {
        assert_eq!("skip".parse::<OnBadSample>().unwrap(), OnBadSample::Skip);
        assert_eq!("fail".parse::<OnBadSample>().unwrap(), OnBadSample::Fail);
        assert!("Skip"
            .parse::<OnBadSample>()
            .unwrap_err()
            .to_string()
            .contains("skip|fail"));
        let mut s = LoadSummary::default();
        let err = || Error::Config("x".into());
        assert!(s
            .bad(OnBadSample::Fail, BadReason::OutOfRange, err())
            .is_err());
        s.bad(OnBadSample::Skip, BadReason::OutOfRange, err())
            .unwrap();
        s.bad(OnBadSample::Skip, BadReason::MissingImage, err())
            .unwrap();
        let mut t = s.clone();
        t.merge(&s);
        assert_eq!(
            (
                s.total_skipped(),
                t.total_skipped(),
                t.skipped[&BadReason::OutOfRange]
            ),
            (2, 4, 2)
        );
    }
}
