//! Scoped parameter names: a module hands each child the scope it builds
//! under (`Scope::root().pp("layer1").pp(0)`), and a layer names its own
//! tensors from it (`scope.name("weight")` -> "layer1.0.conv1.weight"), so
//! no call site formats a dotted name by hand. Checkpoints key tensors by
//! these names.

use std::fmt::{self, Display};

/// A dotted name prefix; the root scope is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    prefix: String,
}

impl Scope {
    /// The empty prefix: names are used as given.
    pub fn root() -> Self {
        Scope::default()
    }

    /// The child scope `self.part` (a module name or a block index).
    pub fn pp(&self, part: impl Display) -> Scope {
        Scope {
            prefix: self.name(&part.to_string()),
        }
    }

    /// The full name of `leaf` in this scope.
    pub fn name(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{leaf}", self.prefix)
        }
    }
}

/// The prefix itself, for messages.
impl Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Scope;

    #[test]
    fn names_join_with_dots_below_the_root() {
        let s = Scope::root().pp("layer1").pp(0);
        assert_eq!(s.name("conv1"), "layer1.0.conv1");
        assert_eq!(s.pp("bn1").name("weight"), "layer1.0.bn1.weight");
        assert_eq!(Scope::root().name("fc"), "fc");
        assert_eq!(s.to_string(), "layer1.0");
    }
}
