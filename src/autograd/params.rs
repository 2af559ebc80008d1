use crate::{DType, Device, Error, Result, Tensor};

/// Handle to a parameter in a [`Params`] registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub(crate) usize);

impl ParamId {
    pub fn index(self) -> usize {
        self.0
    }
}

/// The trainable tensors of a model, by name. Activations never live here;
/// this is what optimizers update and checkpoints save.
#[derive(Default, Clone, Debug)]
pub struct Params {
    names: Vec<String>,
    values: Vec<Tensor>,
    /// Entries the tape takes as constants: no gradient, so no update.
    frozen: Vec<bool>,
}

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a parameter; names must be unique (they key checkpoints).
    pub fn add(&mut self, name: impl Into<String>, value: Tensor) -> Result<ParamId> {
        let name = name.into();
        if self.names.contains(&name) {
            return Err(Error::arg(
                "params",
                format!("duplicate parameter name '{name}'"),
            ));
        }
        self.names.push(name);
        self.values.push(value);
        self.frozen.push(false);
        Ok(ParamId(self.values.len() - 1))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn get(&self, id: ParamId) -> &Tensor {
        &self.values[id.0]
    }

    pub fn get_mut(&mut self, id: ParamId) -> &mut Tensor {
        &mut self.values[id.0]
    }

    /// Two distinct entries mutably at once (a BN layer's running mean and var).
    pub fn get_pair_mut(&mut self, a: ParamId, b: ParamId) -> Result<(&mut Tensor, &mut Tensor)> {
        if a == b {
            return Err(Error::arg(
                "params",
                format!("get_pair_mut needs two different entries, got {a:?} twice"),
            ));
        }
        let (lo, hi) = (a.0.min(b.0), a.0.max(b.0));
        let (left, right) = self.values.split_at_mut(hi);
        let (x, y) = (&mut left[lo], &mut right[0]);
        Ok(if a.0 < b.0 { (x, y) } else { (y, x) })
    }

    /// Replaces a parameter's value; the shape and dtype must stay the same.
    pub fn set(&mut self, id: ParamId, value: Tensor) -> Result<()> {
        let old = &self.values[id.0];
        if old.shape() != value.shape() || old.dtype() != value.dtype() {
            return Err(Error::shape(
                "params.set",
                format!(
                    "'{}' is {} {}, new value is {} {}",
                    self.names[id.0],
                    old.dtype(),
                    old.shape(),
                    value.dtype(),
                    value.shape()
                ),
            ));
        }
        self.values[id.0] = value;
        Ok(())
    }

    /// Freezes (or thaws) a parameter: [`Tape::param`](crate::Tape::param)
    /// then records it as a constant, so backward computes no gradient for
    /// it and no optimizer touches it.
    pub fn set_frozen(&mut self, id: ParamId, frozen: bool) {
        self.frozen[id.0] = frozen;
    }

    pub fn is_frozen(&self, id: ParamId) -> bool {
        self.frozen[id.0]
    }

    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.names.iter().position(|n| n == name).map(ParamId)
    }

    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.values.len()).map(ParamId)
    }

    /// Moves every value to `device` (explicit copies; values already there
    /// are shared, not copied).
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        for v in &mut self.values {
            *v = v.to_device(device)?;
        }
        Ok(())
    }

    /// The registry with every value in `dtype`, on the host, under the
    /// same names and ids (the gradient checks run a model built in f32 in
    /// f64).
    pub fn to_dtype(&self, dtype: DType) -> Params {
        let mut out = self.clone();
        for v in &mut out.values {
            *v = v.to_dtype(dtype);
        }
        out
    }

    /// Where the values live (the host for an empty registry).
    pub fn device(&self) -> Device {
        self.values.first().map_or(Device::Cpu, Tensor::device)
    }

    /// Total number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.values.iter().map(Tensor::numel).sum()
    }
}
