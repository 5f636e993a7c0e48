//! Message passing on burn's ops: gather node rows by edge ([`gather`]), add them up at the
//! targets ([`scatter_sum`], burn's `select_assign` with `Add`), their mean ([`scatter_mean`])
//! and maximum ([`scatter_max`]), and the softmax of edge scores over each target's edges
//! ([`segment_softmax`]).
//!
//! burn's own max scatter has no defined gradient when a target repeats, so the maximum here
//! is found on detached values and the gradient routed by an equality mask: each edge that
//! attains its target's maximum gets an equal share (as PyTorch's `scatter_reduce("amax")`).
//! The softmax subtracts a detached per-target maximum before `exp`, which leaves its value
//! and gradient unchanged and keeps `exp` finite.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_layers::{Edges, scatter_max, scatter_sum, gather};
//! use strata_tensor::convert::{matrix, to_vec};
//! let d = Device::flex();
//! let e = Edges::new(3, &[0, 1, 2], &[2, 2, 0], None, &d)?;
//! let x = matrix(vec![1.0, 5.0, 3.0], 3, 1, &d);
//! let m = gather(x, &e.source);
//! assert_eq!(to_vec(scatter_sum(m.clone(), &e.target, 3)), vec![3.0, 0.0, 6.0]);
//! assert_eq!(to_vec(scatter_max(m, &e.target, 3)), vec![3.0, 0.0, 5.0]);
//! # Ok::<(), strata_layers::Error>(())
//! ```

use burn::tensor::{IndexingUpdateOp, Int, Tensor};

/// The rows of `x` named by `index`.
///
/// # Shapes
/// `x` `[n, f]`, `index` `[e]` -> `[e, f]`.
pub fn gather(x: Tensor<2>, index: &Tensor<1, Int>) -> Tensor<2> {
    x.select(0, index.clone())
}

/// The sum of the rows of `messages` at their `index`, for `n` rows (0 where none arrive).
///
/// # Shapes
/// `messages` `[e, f]`, `index` `[e]` -> `[n, f]`.
pub fn scatter_sum(messages: Tensor<2>, index: &Tensor<1, Int>, n: usize) -> Tensor<2> {
    let [e, f] = messages.dims();
    let zeros = Tensor::zeros([n, f], &messages.device());
    if e == 0 {
        return zeros;
    }
    zeros.select_assign(0, index.clone(), messages, IndexingUpdateOp::Add)
}

/// The mean of the rows of `messages` at their `index`, given each target's count (at least
/// 1) as `count` (0 where none arrive).
///
/// # Shapes
/// `messages` `[e, f]`, `index` `[e]`, `count` `[n, 1]` -> `[n, f]`.
pub fn scatter_mean(messages: Tensor<2>, index: &Tensor<1, Int>, count: &Tensor<2>) -> Tensor<2> {
    let n = count.dims()[0];
    scatter_sum(messages, index, n) / count.clone()
}

/// The element-wise maximum of the rows of `messages` at their `index`, for `n` rows (0 where
/// none arrive). The gradient goes to the messages that attain the maximum, split evenly
/// between ties.
///
/// # Shapes
/// `messages` `[e, f]`, `index` `[e]` -> `[n, f]`.
pub fn scatter_max(messages: Tensor<2>, index: &Tensor<1, Int>, n: usize) -> Tensor<2> {
    let [e, f] = messages.dims();
    let device = messages.device();
    if e == 0 {
        return Tensor::zeros([n, f], &device);
    }
    let fixed = messages.clone().detach();
    let max = Tensor::<2>::full([n, f], f32::NEG_INFINITY, &device).select_assign(
        0,
        index.clone(),
        fixed.clone(),
        IndexingUpdateOp::Max,
    );
    let hit = fixed.equal(max.select(0, index.clone())).float();
    let ties = scatter_sum(hit.clone(), index, n);
    // Every target that receives a message has at least one hit in each column.
    let share = hit / ties.select(0, index.clone()).clamp_min(1.0);
    scatter_sum(messages * share, index, n)
}

/// The softmax of each column of `scores` over the edges that share a target: the attention
/// of a target over its incoming edges.
///
/// # Shapes
/// `scores` `[e, h]`, `index` `[e]` -> `[e, h]`.
pub fn segment_softmax(scores: Tensor<2>, index: &Tensor<1, Int>, n: usize) -> Tensor<2> {
    let [e, h] = scores.dims();
    let device = scores.device();
    if e == 0 {
        return scores;
    }
    let max = Tensor::<2>::full([n, h], f32::NEG_INFINITY, &device).select_assign(
        0,
        index.clone(),
        scores.clone().detach(),
        IndexingUpdateOp::Max,
    );
    let exp = (scores - max.select(0, index.clone())).exp();
    let sum = scatter_sum(exp.clone(), index, n);
    exp / sum.select(0, index.clone())
}
