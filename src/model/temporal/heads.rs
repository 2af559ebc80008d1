//! Per-task heads with feedback between tasks (the ABAW4 winner's task
//! correlation, e.g. "valence and AU into arousal"): each head is Linear ->
//! ReLU -> Dropout -> Linear, and a target head reads its own encoder
//! features concatenated with, per source, either the source head's
//! *detached* hidden (penultimate) features (feature feedback) or an
//! embedding of the source's labels (label feedback, see
//! [`super::label_feed`]). Nothing the target reads is differentiable
//! towards the sources, so the target's loss does not train them.

use super::label_feed::{self, LabelFeed};
use super::task::Task;
use crate::nn::{Ctx, Linear, Scope};
use crate::{ops, Error, Params, Result, Rng, Var};
use serde::{Deserialize, Serialize};

/// What `source` passes to the head of `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    pub source: Task,
    pub target: Task,
    /// Absent in configs written before label feedback: feature feedback.
    #[serde(default)]
    pub mode: FeedbackMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackMode {
    /// The source head's detached hidden features.
    #[default]
    Feature,
    /// A learned embedding (Linear to `head_hidden`) of the source's labels
    /// in training, teacher-forced, and of its predictions otherwise.
    Label,
}

#[derive(Clone, Debug)]
struct Head {
    fc1: Linear,
    fc2: Linear,
    /// The label embedding of each label-feedback source, in feedback order.
    labels: Vec<Linear>,
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
            let fc1 = Linear::new(p, &s.pp("fc1"), in_features[k] + extra, hidden, true, rng)?;
            let fc2 = Linear::new(p, &s.pp("fc2"), hidden, outputs[k], true, rng)?;
            // Made after fc1 and fc2, so models without label feedback draw
            // the same initial weights as before it existed.
            let labels = feedback
                .iter()
                .filter(|f| f.target == task && f.mode == FeedbackMode::Label)
                .map(|f| {
                    let width = outputs[f.source.index()];
                    Linear::new(
                        p,
                        &s.pp("label").pp(f.source.name()),
                        width,
                        hidden,
                        true,
                        rng,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            heads.push(Head { fc1, fc2, labels });
        }
        Ok(TaskHeads {
            heads,
            order,
            feedback: feedback.to_vec(),
            dropout,
        })
    }

    /// `features[k]` [.., in_features[k]] per task -> each task's output.
    /// `labels` feeds label feedback in training (ignored otherwise).
    pub fn forward(
        &self,
        cx: &mut Ctx,
        features: &[Var; 4],
        labels: Option<&LabelFeed>,
    ) -> Result<HeadOutputs> {
        let mut hidden: [Option<Var>; 4] = Default::default();
        let mut out: [Option<Var>; 4] = Default::default();
        for &task in &self.order {
            let k = task.index();
            let head = &self.heads[k];
            let mut parts = vec![features[k].clone()];
            let mut embeddings = head.labels.iter();
            for f in self.feedback.iter().filter(|f| f.target == task) {
                let (hidden, out) = (&hidden[f.source.index()], &out[f.source.index()]);
                let expect = "order puts sources first";
                parts.push(match f.mode {
                    FeedbackMode::Feature => cx
                        .tape
                        .constant(hidden.as_ref().expect(expect).value().clone()),
                    FeedbackMode::Label => {
                        let logits = out.as_ref().expect(expect);
                        let x = label_feed::source_input(cx, f.source, logits, labels)?;
                        let embed = embeddings.next().expect("one embedding per label source");
                        embed.forward(cx, &x)?
                    }
                });
            }
            let x = if parts.len() == 1 {
                parts.remove(0)
            } else {
                ops::concat(cx.tape, &parts.iter().collect::<Vec<_>>(), -1)?
            };
            let h = ops::relu(cx.tape, &head.fc1.forward(cx, &x)?)?;
            let d = ops::dropout(cx.tape, &h, self.dropout, cx.training, cx.rng)?;
            out[k] = Some(head.fc2.forward(cx, &d)?);
            hidden[k] = Some(h);
        }
        Ok(out.map(|o| o.expect("every task is in the order")))
    }
}

/// Tasks ordered so every feedback source comes before its target, whatever
/// its mode; a cycle, a self-loop or a pair listed twice in the same mode is
/// a config error.
pub(super) fn order(feedback: &[Feedback]) -> Result<Vec<Task>> {
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
        Feedback {
            source,
            target,
            mode: FeedbackMode::Feature,
        }
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
        // Label pairs order their tasks too; a pair may pass both features
        // and labels, but not the same thing twice.
        let label = |source, target| Feedback {
            mode: FeedbackMode::Label,
            ..fb(source, target)
        };
        let o = order(&[
            label(Task::Expr, Task::Valence),
            fb(Task::Expr, Task::Valence),
        ])
        .unwrap();
        let pos = |t| o.iter().position(|&x| x == t).unwrap();
        assert!(pos(Task::Expr) < pos(Task::Valence));
        let e = order(&[label(Task::Au, Task::Expr), fb(Task::Expr, Task::Au)]).unwrap_err();
        assert!(e.to_string().contains("cycle"), "{e}");
        let twice = [label(Task::Au, Task::Expr), label(Task::Au, Task::Expr)];
        assert!(order(&twice).unwrap_err().to_string().contains("twice"));
    }
}
