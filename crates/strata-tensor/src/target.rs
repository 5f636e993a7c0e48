//! Targets of a batch in tensor form, shared by the batchers (which make them) and the losses
//! (which consume them).

use burn::tensor::{Int, Tensor};

/// The targets of one batch.
#[derive(Debug, Clone)]
pub enum TargetBatch {
    /// Class indices, shape `[batch]`.
    Classes(Tensor<1, Int>),
    /// Real values, shape `[batch, n_outputs]`.
    Values(Tensor<2>),
}

impl TargetBatch {
    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        match self {
            TargetBatch::Classes(t) => t.dims()[0],
            TargetBatch::Values(t) => t.dims()[0],
        }
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
