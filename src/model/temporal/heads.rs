//! Per-task heads with feature feedback: each head is Linear -> ReLU ->
//! Dropout -> Linear, and its hidden (penultimate) features can feed other
//! heads. A target head reads its own encoder features concatenated with the
//! *detached* penultimate features of its source heads, so the target's loss
//! does not train the sources through that path (the ABAW4 winner's
//! "valence and AU into arousal" correlation).

use crate::nn::{Ctx, Linear, Scope};
use crate::{ops, Error, Params, Result, Rng, Var};
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

    fn index(self) -> usize {
        self as usize
    }
}

/// The detached penultimate features of `source` feed the head of `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    pub source: Task,
    pub target: Task,
}

#[derive(Clone, Debug)]
struct Head {
    fc1: Linear,
    fc2: Linear,
}

/// The four heads and the order that computes every source before its targets.
#[derive(Clone, Debug)]
pub struct TaskHeads {
    heads: Vec<Head>,
    order: Vec<Task>,
    feedback: Vec<Feedback>,
    dropout: f64,
}

/// Head outputs in [`Task::ALL`] order, each [.., out] (logits; no tanh yet).
pub type HeadOutputs = [Var; 4];

impl TaskHeads {
    /// `in_features[k]` is what task k's encoder gives; `outputs[k]` its output width.
    pub fn new(
        p: &mut Params,
        in_features: [usize; 4],
        outputs: [usize; 4],
        hidden: usize,
        feedback: &[Feedback],
        dropout: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        let order = order(feedback)?;
        let mut heads = Vec::with_capacity(4);
        for task in Task::ALL {
            let k = task.index();
            let extra = feedback.iter().filter(|f| f.target == task).count() * hidden;
            let s = Scope::root().pp("head").pp(task.name());
            heads.push(Head {
                fc1: Linear::new(p, &s.pp("fc1"), in_features[k] + extra, hidden, true, rng)?,
                fc2: Linear::new(p, &s.pp("fc2"), hidden, outputs[k], true, rng)?,
            });
        }
        Ok(TaskHeads {
            heads,
            order,
            feedback: feedback.to_vec(),
            dropout,
        })
    }

    /// `features[k]` [.., in_features[k]] per task -> each task's output.
    pub fn forward(&self, cx: &mut Ctx, features: &[Var; 4]) -> Result<HeadOutputs> {
        let mut hidden: [Option<Var>; 4] = Default::default();
        let mut out: [Option<Var>; 4] = Default::default();
        for &task in &self.order {
            let k = task.index();
            let mut parts = vec![features[k].clone()];
            for f in self.feedback.iter().filter(|f| f.target == task) {
                let src = hidden[f.source.index()]
                    .as_ref()
                    .expect("order puts sources first");
                parts.push(cx.tape.constant(src.value().clone()));
            }
            let x = if parts.len() == 1 {
                parts.remove(0)
            } else {
                ops::concat(cx.tape, &parts.iter().collect::<Vec<_>>(), -1)?
            };
            let head = &self.heads[k];
            let h = ops::relu(cx.tape, &head.fc1.forward(cx, &x)?)?;
            let d = ops::dropout(cx.tape, &h, self.dropout, cx.training, cx.rng)?;
            out[k] = Some(head.fc2.forward(cx, &d)?);
            hidden[k] = Some(h);
        }
        Ok(out.map(|o| o.expect("every task is in the order")))
    }
}

/// Tasks ordered so every feedback source comes before its target; a cycle,
/// a self-loop or a repeated pair is a config error.
fn order(feedback: &[Feedback]) -> Result<Vec<Task>> {
    for (i, f) in feedback.iter().enumerate() {
        if f.source == f.target || feedback[..i].contains(f) {
            return Err(Error::Config(format!(
                "model.feedback: {} -> {} is a self-loop or listed twice",
                f.source.name(),
                f.target.name()
            )));
        }
    }
    let mut done: Vec<Task> = Vec::with_capacity(4);
    while done.len() < 4 {
        let ready = Task::ALL.into_iter().find(|t| {
            !done.contains(t)
                && feedback
                    .iter()
                    .filter(|f| f.target == *t)
                    .all(|f| done.contains(&f.source))
        });
        match ready {
            Some(t) => done.push(t),
            None => {
                return Err(Error::Config(
                    "model.feedback: the source -> target pairs form a cycle".into(),
                ))
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(source: Task, target: Task) -> Feedback {
        Feedback { source, target }
    }

    #[test]
    fn sources_come_first_and_cycles_are_refused() {
        let o = order(&[
            fb(Task::Valence, Task::Arousal),
            fb(Task::Au, Task::Arousal),
            fb(Task::Arousal, Task::Expr),
        ])
        .unwrap();
        let pos = |t| o.iter().position(|&x| x == t).unwrap();
        assert!(pos(Task::Valence) < pos(Task::Arousal) && pos(Task::Au) < pos(Task::Arousal));
        assert!(pos(Task::Arousal) < pos(Task::Expr));
        let e = order(&[fb(Task::Au, Task::Expr), fb(Task::Expr, Task::Au)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cycle"), "{e}");
        let e = order(&[fb(Task::Au, Task::Au)]).unwrap_err().to_string();
        assert!(e.contains("au -> au"), "{e}");
    }
}
