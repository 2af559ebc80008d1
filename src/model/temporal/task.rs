//! The four tasks a temporal model's heads predict, in the order their
//! outputs are kept; heads and label feedback both speak of them.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Valence,
    Arousal,
    Expr,
    Au,
}

impl Task {
    pub const ALL: [Task; 4] = [Task::Valence, Task::Arousal, Task::Expr, Task::Au];

    pub fn name(self) -> &'static str {
        match self {
            Task::Valence => "valence",
            Task::Arousal => "arousal",
            Task::Expr => "expr",
            Task::Au => "au",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}
