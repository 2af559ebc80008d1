//! Temporal multi-task models over per-frame embeddings of a frame model:
//! a shared encoder (GRU, stateful LSTM or Transformer), optionally a
//! per-task encoder on top of it (shared-bottom), and per-task heads with
//! feature or label feedback between tasks.

mod encoder;
mod heads;
mod label_feed;
mod positional;
mod task;
mod transformer;

pub use encoder::{Carry, Encoder, EncoderKind, EncoderSpec};
pub use heads::{Feedback, FeedbackMode, TaskHeads};
pub use label_feed::LabelFeed;
pub use positional::sinusoidal;
pub use task::Task;
pub use transformer::TransformerLayer;

use super::footprint::{product, Footprint};
use super::MtlOutput;
use crate::nn::{Ctx, Scope};
use crate::{ops, Error, Params, Result, Rng, Var};
use serde::{Deserialize, Serialize};

/// The `[model]` section of a temporal run config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemporalNetConfig {
    pub encoder: EncoderKind,
    /// Hidden size of every encoder layer.
    pub d_model: usize,
    /// Layers shared by all tasks (the bottom).
    pub shared_layers: usize,
    /// Layers of a separate encoder per task on top of the shared ones; 0 = fully shared.
    pub task_layers: usize,
    /// Attention heads and feed-forward width (Transformer).
    pub heads: usize,
    pub d_ff: usize,
    pub dropout: f64,
    /// Hidden width of each task head (the features that feedback passes on,
    /// and the width of a label embedding).
    pub head_hidden: usize,
    pub feedback: Vec<Feedback>,
    /// Teacher forcing of label feedback: the probability that a training
    /// frame shows its source label rather than the prediction goes
    /// linearly from `label_feedback_start` at step 0 to
    /// `label_feedback_end` at `train.steps`.
    pub label_feedback_start: f64,
    pub label_feedback_end: f64,
    pub n_aus: usize,
    pub n_expr: usize,
}

impl Default for TemporalNetConfig {
    fn default() -> Self {
        TemporalNetConfig {
            encoder: EncoderKind::Gru,
            d_model: 64,
            shared_layers: 2,
            task_layers: 0,
            heads: 4,
            d_ff: 128,
            dropout: 0.3,
            head_hidden: 32,
            feedback: Vec::new(),
            label_feedback_start: 1.0,
            label_feedback_end: 0.0,
            n_aus: 12,
            n_expr: 8,
        }
    }
}

impl TemporalNetConfig {
    /// Parameters and training activations per frame, lower bounds
    /// ([`Footprint`]), for inputs of `in_features` values: per encoder
    /// layer the recurrent weights (and, per frame, the gate pre-activations
    /// and the state) or the attention and feed-forward weights (and, per
    /// frame, q, k, v, the output, the feed-forward hidden values and the
    /// attention's log-sum-exp per head: the CUDA kernels keep no weights,
    /// so nothing grows with the chunk's length; the CPU reference keeps a
    /// row of weights per head over the chunk, above this bound); the
    /// heads' first layers. Biases, norms and the heads' second layers are
    /// left out.
    pub fn footprint(&self, in_features: usize) -> Footprint {
        let (h, mut f) = (self.d_model, Footprint::default());
        let mut stack = |input: usize, layers: usize| {
            if layers == 0 {
                return;
            }
            let (params, per_layer) = match self.encoder {
                EncoderKind::Gru | EncoderKind::Lstm => {
                    let g = if self.encoder == EncoderKind::Gru {
                        3
                    } else {
                        4
                    };
                    // The first layer reads `input` values, the others `h`.
                    let first = product(&[g, h, input]).saturating_add(product(&[g, h, h]));
                    (
                        product(&[layers - 1, g, h, h, 2]).saturating_add(first),
                        product(&[g + 1, h]),
                    )
                }
                EncoderKind::Transformer => {
                    let weights = product(&[4, h, h]).saturating_add(product(&[2, h, self.d_ff]));
                    let per_frame = product(&[4, h])
                        .saturating_add(self.d_ff as u128)
                        .saturating_add(self.heads as u128);
                    (
                        weights
                            .saturating_mul(layers as u128)
                            .saturating_add(product(&[input, h])),
                        per_frame,
                    )
                }
            };
            f.add(params, per_layer.saturating_mul(layers as u128));
        };
        stack(in_features, self.shared_layers);
        let bottom = if self.shared_layers > 0 {
            h
        } else {
            in_features
        };
        for _ in Task::ALL {
            stack(bottom, self.task_layers);
        }
        let top = if self.task_layers > 0 { h } else { bottom };
        f.add(
            product(&[Task::ALL.len(), top, self.head_hidden]),
            product(&[Task::ALL.len(), self.head_hidden]).saturating_add(in_features as u128),
        );
        f
    }

    /// Sizes, dropout, the teacher-forcing probabilities, and feedback
    /// pairs that can be ordered (each source computed before its targets).
    pub fn validate(&self) -> Result<()> {
        if self.d_model == 0 || self.head_hidden == 0 || !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Config(format!(
                "model: d_model = {}, head_hidden = {} must be > 0 and dropout = {} in [0, 1)",
                self.d_model, self.head_hidden, self.dropout
            )));
        }
        for (key, p) in [
            ("label_feedback_start", self.label_feedback_start),
            ("label_feedback_end", self.label_feedback_end),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::Config(format!(
                    "model.{key} = {p}: a probability, must be in [0, 1]"
                )));
            }
        }
        heads::order(&self.feedback).map(|_| ())
    }

    /// The teacher-forcing probability of label feedback at `step` of a
    /// `steps`-step run (a function of the step alone, so a resumed run
    /// draws as the uninterrupted one).
    pub fn label_feedback_p(&self, step: u64, steps: u64) -> f64 {
        let done = if steps == 0 {
            1.0
        } else {
            step.min(steps) as f64 / steps as f64
        };
        self.label_feedback_start + (self.label_feedback_end - self.label_feedback_start) * done
    }
}

#[derive(Clone, Debug)]
pub struct TemporalNet {
    pub config: TemporalNetConfig,
    shared: Option<Encoder>,
    /// One per task in [`Task::ALL`] order when `task_layers > 0`.
    per_task: Vec<Encoder>,
    heads: TaskHeads,
}

impl TemporalNet {
    pub fn new(
        config: &TemporalNetConfig,
        in_features: usize,
        p: &mut Params,
        rng: &mut Rng,
    ) -> Result<Self> {
        let c = config;
        c.validate()?;
        let spec = |in_features, layers| EncoderSpec {
            kind: c.encoder,
            in_features,
            dim: c.d_model,
            layers,
            heads: c.heads,
            ff: c.d_ff,
            dropout: c.dropout,
        };
        let enc = Scope::root().pp("enc");
        let shared = (c.shared_layers > 0)
            .then(|| {
                Encoder::new(
                    p,
                    &enc.pp("shared"),
                    spec(in_features, c.shared_layers),
                    rng,
                )
            })
            .transpose()?;
        let bottom = shared.as_ref().map_or(in_features, Encoder::out_features);
        let per_task = if c.task_layers > 0 {
            Task::ALL
                .iter()
                .map(|t| Encoder::new(p, &enc.pp(t.name()), spec(bottom, c.task_layers), rng))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let top = if per_task.is_empty() {
            bottom
        } else {
            c.d_model
        };
        let heads = TaskHeads::new(
            p,
            [top; 4],
            [1, 1, c.n_expr, c.n_aus],
            c.head_hidden,
            &c.feedback,
            c.dropout,
            rng,
        )?;
        Ok(TemporalNet {
            config: c.clone(),
            shared,
            per_task,
            heads,
        })
    }

    /// Features x [N, T, F] with `mask[n·T + t]` false at padded frames ->
    /// per-frame outputs with rows n·T + t: va [N·T, 2] (tanh), AU and
    /// expression logits, and the shared features [N·T, E]. LSTM states are
    /// read from and written to `carry`. `labels` (the batch's ground truth,
    /// rows n·T + t) feeds label feedback in training; evaluation and
    /// inference pass None.
    pub fn forward(
        &self,
        cx: &mut Ctx,
        x: &Var,
        mask: &[bool],
        carry: &mut Carry,
        labels: Option<&LabelFeed>,
    ) -> Result<MtlOutput> {
        let &[n, t, _] = x.dims() else {
            return Err(Error::shape(
                "temporal_net",
                format!("input {} must be [N, T, F]", x.shape()),
            ));
        };
        if mask.len() != n * t {
            return Err(Error::shape(
                "temporal_net",
                format!(
                    "mask of {} entries for input {}: expected {}",
                    mask.len(),
                    x.shape(),
                    n * t
                ),
            ));
        }
        let bottom = match &self.shared {
            Some(e) => e.forward(cx, x, mask, carry)?,
            None => x.clone(),
        };
        let features: [Var; 4] = if self.per_task.is_empty() {
            [(); 4].map(|_| bottom.clone())
        } else {
            let mut f = Vec::with_capacity(4);
            for e in &self.per_task {
                f.push(e.forward(cx, &bottom, mask, carry)?);
            }
            f.try_into().expect("four task encoders")
        };
        let [v, a, expr, au] = self.heads.forward(cx, &features, labels)?;
        let rows = |cx: &mut Ctx, y: &Var| -> Result<Var> {
            let w = y.dims()[2];
            ops::reshape(cx.tape, y, [n * t, w])
        };
        let va = ops::tanh(cx.tape, &ops::concat(cx.tape, &[&v, &a], -1)?)?;
        Ok(MtlOutput {
            va: rows(cx, &va)?,
            au: rows(cx, &au)?,
            expr: rows(cx, &expr)?,
            features: rows(cx, &bottom)?,
            real_fake: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teacher_forcing_decays_linearly_over_the_run_and_then_holds() {
        let c = TemporalNetConfig {
            label_feedback_start: 0.9,
            label_feedback_end: 0.1,
            ..TemporalNetConfig::default()
        };
        let p: Vec<f64> = [0, 25, 50, 100, 150]
            .map(|s| c.label_feedback_p(s, 100))
            .to_vec();
        let want = [0.9, 0.7, 0.5, 0.1, 0.1];
        assert!(
            p.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{p:?}"
        );
    }
}
