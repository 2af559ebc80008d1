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
    UndecodableImage,
}

/// Counts from one load: kept samples, label-less lines dropped (normal in
/// ABAW files, not an error), and bad samples skipped by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadSummary {
    pub samples: usize,
    pub unlabelled: usize,
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

impl std::fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} samples, {} unlabelled lines dropped",
            self.samples, self.unlabelled
        )?;
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
