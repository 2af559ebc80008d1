use super::{Gradients, ParamId, Params, Precision, ProductFlops};
use crate::{Error, Result, Shape, Tensor};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

/// A backward rule: given the gradient of the op's output and which inputs
/// need a gradient, return one gradient per input (`None` where not needed).
/// It owns whatever the forward saved; calling it consumes and frees that.
pub type BackwardFn = Box<dyn FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>>>;

/// A backward rule recorded with [`Tape::record_accumulating`]: as
/// [`BackwardFn`], and it may add its input gradients onto the gradients
/// those inputs already received ([`Pending`]).
pub type AccumulatingBackwardFn =
    Box<dyn FnOnce(&Tensor, &[bool], &mut Pending) -> Result<Vec<Option<Tensor>>>>;

/// The gradients an op's inputs have received so far from the ops recorded
/// after it (a value consumed twice, as a residual block's input), handed to
/// a rule recorded with [`Tape::record_accumulating`]. Without it the tape
/// adds the two gradients in a separate pass that reads both and writes the
/// sum; a rule whose kernel can add onto an existing gradient in its own
/// epilogue takes it instead, and then returns the sum as that input's
/// gradient.
#[derive(Default)]
pub struct Pending {
    slots: Vec<Option<Tensor>>,
}

impl Pending {
    /// Input `i`'s gradient so far, if any, leaving the tape nothing to add:
    /// the rule must return the sum (this gradient plus its own) for input `i`.
    pub fn take(&mut self, i: usize) -> Option<Tensor> {
        self.slots.get_mut(i).and_then(Option::take)
    }
}

enum NodeKind {
    Param(ParamId),
    Op {
        name: &'static str,
        inputs: Vec<Option<usize>>,
        backward: Option<AccumulatingBackwardFn>,
    },
}

struct Node {
    kind: NodeKind,
    shape: Shape,
}

/// A value flowing through a computation: the tensor plus, when it depends
/// on a parameter and the tape records, the tape node that produced it.
#[derive(Clone, Debug)]
pub struct Var {
    value: Tensor,
    node: Option<(u64, usize)>,
}

impl Var {
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    pub fn into_value(self) -> Tensor {
        self.value
    }

    pub fn shape(&self) -> &Shape {
        self.value.shape()
    }

    pub fn dims(&self) -> &[usize] {
        self.value.dims()
    }

    /// Whether gradients will flow back through this value.
    pub fn requires_grad(&self) -> bool {
        self.node.is_some()
    }
}

/// The record of one forward pass. Create one per step; eval uses
/// [`Tape::no_grad`], which records nothing.
pub struct Tape {
    id: u64,
    recording: bool,
    nodes: RefCell<Vec<Node>>,
    consumed: Cell<bool>,
    /// What the convolutions recorded on (or run through) this tape compute in.
    precision: Cell<Precision>,
    /// What the products run through this tape compute ([`Tape::count_product`]).
    products: Cell<ProductFlops>,
}

static NEXT_TAPE_ID: AtomicU64 = AtomicU64::new(1);

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

impl Tape {
    /// A tape that records ops for a backward pass.
    pub fn new() -> Self {
        Tape {
            id: NEXT_TAPE_ID.fetch_add(1, Ordering::Relaxed),
            recording: true,
            nodes: RefCell::new(Vec::new()),
            consumed: Cell::new(false),
            precision: Cell::new(Precision::F32),
            products: Cell::new(ProductFlops::default()),
        }
    }

    /// Eval / inference: ops run, nothing is recorded, nothing is saved.
    pub fn no_grad() -> Self {
        Tape {
            recording: false,
            ..Tape::new()
        }
    }

    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Sets what the ops run through this tape from now on compute in
    /// (see [`Precision`]); a new tape starts in f32.
    pub fn set_precision(&self, p: Precision) {
        self.precision.set(p);
    }

    pub fn precision(&self) -> Precision {
        self.precision.get()
    }

    /// Counts a product (convolution, matrix product) of `macs`
    /// multiply-adds over `operands`, its two factors: the forward, and a
    /// backward pass for each factor recorded on this tape. The product ops
    /// call it, recording or not (eval counts its forward).
    pub fn count_product(&self, macs: u64, operands: [&Var; 2]) {
        self.count_inner_product(macs, operands.map(|v| self.needs_grad(v)));
    }

    /// [`Tape::count_product`] for a product inside an op whose factors are
    /// not its inputs (attention's weights, a recurrent state): `grads`
    /// says which factors' gradients the op's backward computes.
    pub fn count_inner_product(&self, macs: u64, grads: [bool; 2]) {
        self.products.set(self.products.get().add(macs, grads));
    }

    /// Whether a backward of this tape computes `v`'s gradient.
    pub fn needs_grad(&self, v: &Var) -> bool {
        self.recording && matches!(v.node, Some((t, _)) if t == self.id)
    }

    /// The products counted so far on this tape.
    pub fn product_flops(&self) -> ProductFlops {
        self.products.get()
    }

    /// Number of recorded nodes (parameters and ops).
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An activation or input: gradients never flow into it.
    pub fn constant(&self, t: Tensor) -> Var {
        Var {
            value: t,
            node: None,
        }
    }

    /// A parameter as a leaf of this tape; its gradient is reported under
    /// `id`. A frozen parameter ([`Params::set_frozen`]) enters as a constant.
    pub fn param(&self, params: &Params, id: ParamId) -> Var {
        let value = params.get(id).clone();
        if !self.recording || params.is_frozen(id) {
            return self.constant(value);
        }
        let node = self.push(Node {
            kind: NodeKind::Param(id),
            shape: value.shape().clone(),
        });
        Var {
            value,
            node: Some((self.id, node)),
        }
    }

    /// Records an op. `backward` is kept only if some input requires grad
    /// and the tape records; otherwise it is dropped at once with what it saved.
    pub fn record<F>(
        &self,
        name: &'static str,
        inputs: &[&Var],
        output: Tensor,
        backward: F,
    ) -> Result<Var>
    where
        F: FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + 'static,
    {
        self.record_accumulating(name, inputs, output, move |g, needs, _| backward(g, needs))
    }

    /// [`Tape::record`] for a rule that may add its input gradients onto
    /// those the inputs already have ([`Pending`]).
    pub fn record_accumulating<F>(
        &self,
        name: &'static str,
        inputs: &[&Var],
        output: Tensor,
        backward: F,
    ) -> Result<Var>
    where
        F: FnOnce(&Tensor, &[bool], &mut Pending) -> Result<Vec<Option<Tensor>>> + 'static,
    {
        if !self.recording {
            // Eval mode: values from any tape are welcome, nothing is kept.
            return Ok(self.constant(output));
        }
        let mut ids = Vec::with_capacity(inputs.len());
        for v in inputs {
            match v.node {
                Some((tape, n)) if tape == self.id => ids.push(Some(n)),
                Some(_) => {
                    return Err(Error::Tape(format!(
                        "{name}: an input was recorded on a different tape"
                    )))
                }
                None => ids.push(None),
            }
        }
        if ids.iter().all(Option::is_none) {
            return Ok(self.constant(output));
        }
        let node = self.push(Node {
            kind: NodeKind::Op {
                name,
                inputs: ids,
                backward: Some(Box::new(backward)),
            },
            shape: output.shape().clone(),
        });
        Ok(Var {
            value: output,
            node: Some((self.id, node)),
        })
    }

    fn push(&self, node: Node) -> usize {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(node);
        nodes.len() - 1
    }

    /// Gradients of a scalar `loss` with respect to every parameter it depends on.
    pub fn backward(&self, loss: &Var) -> Result<Gradients> {
        if loss.value.numel() != 1 {
            return Err(Error::Tape(format!(
                "backward needs a scalar loss, found shape {}; use backward_with_seed for non-scalar outputs",
                loss.shape()
            )));
        }
        let seed = Tensor::ones(loss.shape().clone(), loss.value.dtype())
            .to_device(&loss.value.device())?;
        self.backward_with_seed(loss, seed)
    }

    /// Vector-Jacobian product: backpropagates `seed` (shaped like `out`).
    pub fn backward_with_seed(&self, out: &Var, seed: Tensor) -> Result<Gradients> {
        if !self.recording {
            return Err(Error::Tape(
                "backward on a no_grad tape (eval mode records nothing)".into(),
            ));
        }
        if self.consumed.replace(true) {
            return Err(Error::Tape(
                "backward was already called on this tape; its saved tensors are freed. Record a new tape per step".into(),
            ));
        }
        crate::tensor::check_same_shape("backward seed", &out.value, &seed)?;
        let root = match out.node {
            Some((tape, n)) if tape == self.id => n,
            Some(_) => {
                return Err(Error::Tape(
                    "backward: output belongs to a different tape".into(),
                ))
            }
            None => {
                return Err(Error::Tape(
                    "backward: the output does not depend on any parameter".into(),
                ))
            }
        };

        let mut nodes = self.nodes.borrow_mut();
        let mut grads: Vec<Option<Tensor>> = vec![None; root + 1];
        grads[root] = Some(seed);
        let mut out_grads = Gradients::new();
        for i in (0..=root).rev() {
            let Some(g) = grads[i].take() else { continue };
            match &mut nodes[i].kind {
                NodeKind::Param(pid) => out_grads.accumulate(*pid, g)?,
                NodeKind::Op {
                    name,
                    inputs,
                    backward,
                } => {
                    let rule = backward.take().expect("each node is visited once");
                    let needs: Vec<bool> = inputs.iter().map(Option::is_some).collect();
                    // An input that appears twice in one op hands its earlier
                    // gradient over once, at its first position.
                    let mut pending = Pending {
                        slots: (0..inputs.len())
                            .map(|p| match inputs[p] {
                                Some(j) if !inputs[..p].contains(&Some(j)) => grads[j].take(),
                                _ => None,
                            })
                            .collect(),
                    };
                    let offered: Vec<bool> = pending.slots.iter().map(Option::is_some).collect();
                    let input_grads = rule(&g, &needs, &mut pending)?;
                    if input_grads.len() != inputs.len() {
                        return Err(Error::Tape(format!(
                            "{name}: backward returned {} gradients for {} inputs",
                            input_grads.len(),
                            inputs.len()
                        )));
                    }
                    let (name, inputs) = (*name, inputs.clone());
                    for (p, (j, gj)) in inputs.into_iter().zip(input_grads).enumerate() {
                        let Some(j) = j else { continue };
                        let left = pending.slots[p].take();
                        if offered[p] && left.is_none() && gj.is_none() {
                            return Err(Error::Tape(format!(
                                "{name}: backward took input {p}'s earlier gradient but returned no sum for it"
                            )));
                        }
                        if let Some(gj) = &gj {
                            if gj.shape() != &nodes[j].shape {
                                return Err(Error::Tape(format!(
                                    "{name}: backward produced a gradient of shape {} for an input of shape {}",
                                    gj.shape(),
                                    nodes[j].shape
                                )));
                            }
                        }
                        for part in [left, gj].into_iter().flatten() {
                            grads[j] = Some(match grads[j].take() {
                                None => part,
                                Some(prev) => crate::tensor_math::add_same_shape(&prev, &part)?,
                            });
                        }
                    }
                }
            }
        }
        Ok(out_grads)
    }
}
