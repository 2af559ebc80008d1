//! The input of label feedback: what a source task says about each frame,
//! as the label embedding of its target head reads it. In training a frame
//! shows its ground-truth label with probability `p` (teacher forcing) and
//! the source head's detached prediction otherwise; frames without a label,
//! evaluation and inference show the prediction. Predictions pass through
//! the activation that puts them on the labels' scale (tanh for valence and
//! arousal, softmax for the expression one-hot, sigmoid for the binary AUs),
//! so the embedding reads the same kind of input either way.

use super::task::Task;
use crate::data::labels::VA_INVALID;
use crate::nn::Ctx;
use crate::{ops, Error, Result, Tensor, Var};

/// The ground truth of a training batch, with rows n·T + t as the network's
/// outputs, and the teacher-forcing probability of this step.
#[derive(Clone, Copy, Debug)]
pub struct LabelFeed<'a> {
    /// [N·T, 2] valence and arousal, [`VA_INVALID`] where missing.
    pub va: &'a Tensor,
    /// Expression classes, negative where missing.
    pub expr: &'a [i64],
    /// [N·T, n_aus] binary AUs, negative where missing.
    pub au: &'a Tensor,
    /// Probability that a frame with a label shows it.
    pub p: f64,
}

impl LabelFeed<'_> {
    /// Frame `r`'s label of `task` written into `out` (zeros, its width), or
    /// None, with `out` untouched, where the frame has none.
    fn write(&self, task: Task, r: usize, va: &[f64], au: &[f64], out: &mut [f64]) -> Option<()> {
        match task {
            Task::Valence | Task::Arousal => {
                let v = va[2 * r + usize::from(task == Task::Arousal)];
                (v != f64::from(VA_INVALID)).then(|| out[0] = v)
            }
            Task::Expr => {
                let c = usize::try_from(self.expr[r])
                    .ok()
                    .filter(|&c| c < out.len())?;
                out[c] = 1.0;
                Some(())
            }
            Task::Au => {
                let row = &au[r * out.len()..(r + 1) * out.len()];
                row.iter()
                    .all(|&a| a >= 0.0)
                    .then(|| out.copy_from_slice(row))
            }
        }
    }
}

/// What the target head's label embedding reads of `source` ([N, T, w]):
/// the detached prediction from its logits, with the frames that show their
/// label replaced when `feed` is given in training. Draws one Bernoulli(p)
/// per frame from `cx.rng` whatever the labels hold, so the labels never
/// shift the dropout masks drawn after it.
pub fn source_input(
    cx: &mut Ctx,
    source: Task,
    logits: &Var,
    feed: Option<&LabelFeed>,
) -> Result<Var> {
    let logits = cx.tape.constant(logits.value().clone());
    let pred = match source {
        Task::Valence | Task::Arousal => ops::tanh(cx.tape, &logits)?,
        Task::Expr => ops::softmax(cx.tape, &logits)?,
        Task::Au => ops::sigmoid(cx.tape, &logits)?,
    };
    let Some(feed) = feed.filter(|_| cx.training) else {
        return Ok(pred);
    };
    let w = pred.dims()[pred.dims().len() - 1];
    let rows = pred.value().numel() / w;
    if feed.expr.len() != rows || feed.va.numel() != 2 * rows || feed.au.dims()[0] != rows {
        return Err(Error::shape(
            "label_feedback",
            format!(
                "labels for {} frames ({} expression) given to outputs {}",
                feed.va.numel() / 2,
                feed.expr.len(),
                pred.shape()
            ),
        ));
    }
    let (va, au) = (feed.va.to_f64_vec(), feed.au.to_f64_vec());
    // pred · keep + shown: keep is 0 and shown the label where a frame shows it.
    let mut keep = vec![1.0; rows * w];
    let mut shown = vec![0.0; rows * w];
    for r in 0..rows {
        // The draw comes first: it is made for every frame.
        let show = cx.rng.bernoulli(feed.p);
        if show
            && feed
                .write(source, r, &va, &au, &mut shown[r * w..(r + 1) * w])
                .is_some()
        {
            keep[r * w..(r + 1) * w].fill(0.0);
        }
    }
    let (dtype, device) = (pred.value().dtype(), pred.value().device());
    let constant = |v: &[f64]| -> Result<Var> {
        let t = Tensor::from_f64s(v, pred.shape(), dtype)?.to_device(&device)?;
        Ok(cx.tape.constant(t))
    };
    let (keep, shown) = (constant(&keep)?, constant(&shown)?);
    ops::add(cx.tape, &ops::mul(cx.tape, &pred, &keep)?, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn labels_decode_to_the_prediction_scale_and_missing_ones_to_none() {
        let t = |v: &[f64], s: [usize; 2]| Tensor::from_f64s(v, s, DType::F32).unwrap();
        // Frame 0 has every label; frame 1 none (one AU missing is enough).
        let va = t(&[0.5, -0.25, -5.0, -5.0], [2, 2]);
        let au = t(&[1.0, 0.0, 1.0, -1.0], [2, 2]);
        let feed = LabelFeed {
            va: &va,
            expr: &[2, -1],
            au: &au,
            p: 1.0,
        };
        let (vv, av) = (va.to_f64_vec(), au.to_f64_vec());
        let read = |task: Task, r: usize, w: usize| {
            let mut out = vec![0.0; w];
            feed.write(task, r, &vv, &av, &mut out).map(|()| out)
        };
        assert_eq!(read(Task::Valence, 0, 1), Some(vec![0.5]));
        assert_eq!(read(Task::Arousal, 0, 1), Some(vec![-0.25]));
        assert_eq!(read(Task::Expr, 0, 3), Some(vec![0.0, 0.0, 1.0]));
        assert_eq!(read(Task::Expr, 0, 2), None, "class 2 of 2 classes");
        assert_eq!(read(Task::Au, 0, 2), Some(vec![1.0, 0.0]));
        for task in Task::ALL {
            assert_eq!(read(task, 1, if task == Task::Expr { 3 } else { 2 }), None);
        }
    }
}
