use crate::{Error, Result, Tensor};

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
#[derive(Default, Clone)]
pub struct Params {
    names: Vec<String>,
    values: Vec<Tensor>,
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

    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.names.iter().position(|n| n == name).map(ParamId)
    }

    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.values.len()).map(ParamId)
    }

    /// Total number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.values.iter().map(Tensor::numel).sum()
    }
}
