//! A model's trainable tensors, in one fixed order (sorted by name) that every
//! rank agrees on: the layout of the fused gradient buffer and of checkpoints.

use tch::nn::VarStore;
use tch::Tensor;

pub struct Params {
    pub names: Vec<String>,
    pub tensors: Vec<Tensor>,
}

impl Params {
    /// The trainable variables of `vs`, sorted by name.
    pub fn trainable(vs: &VarStore) -> Params {
        Self::select(vs, true)
    }

    /// Every variable of `vs` (trainable or not), sorted by name.
    pub fn all(vs: &VarStore) -> Params {
        Self::select(vs, false)
    }

    fn select(vs: &VarStore, trainable_only: bool) -> Params {
        let mut named: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| !trainable_only || t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, tensors) = named.into_iter().unzip();
        Params { names, tensors }
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.tensors.iter().map(|t| t.numel()).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.names.iter().zip(self.tensors.iter())
    }

    /// Sets every gradient to zero (undefined gradients stay undefined).
    pub fn zero_grad(&self) {
        for t in &self.tensors {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }
}
