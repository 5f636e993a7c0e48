//! Graph readouts: the sum, mean or maximum of each graph's node rows in a batch.

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::message::{scatter_max, scatter_mean, scatter_sum};
use crate::error::{Error, Result};

/// Which graph of a batch each node belongs to, on the device.
///
/// ```
/// use burn::tensor::Device;
/// use strata_layers::{GraphIndex, Readout};
/// use strata_tensor::convert::{matrix, to_vec};
/// let d = Device::flex();
/// let g = GraphIndex::new(&[0, 0, 1], 2, &d)?;
/// let x = matrix(vec![1.0, 3.0, 5.0], 3, 1, &d);
/// assert_eq!(to_vec(Readout::Sum.apply(x.clone(), &g)), vec![4.0, 5.0]);
/// assert_eq!(to_vec(Readout::Mean.apply(x.clone(), &g)), vec![2.0, 5.0]);
/// assert_eq!(to_vec(Readout::Max.apply(x, &g)), vec![3.0, 5.0]);
/// # Ok::<(), strata_layers::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GraphIndex {
    /// The graph of each node, `[n]`.
    pub index: Tensor<1, Int>,
    /// Nodes per graph (at least 1), `[g, 1]`.
    pub count: Tensor<2>,
    /// Number of graphs.
    pub n_graphs: usize,
}

impl GraphIndex {
    /// The graph index of nodes `graph_of` (each below `n_graphs`) on `device`.
    ///
    /// # Errors
    /// A node of a graph beyond `n_graphs`, or no graphs.
    pub fn new(graph_of: &[usize], n_graphs: usize, device: &Device) -> Result<Self> {
        if n_graphs == 0 {
            return Err(Error::Graph("a batch needs at least one graph".into()));
        }
        if let Some(i) = graph_of.iter().position(|&g| g >= n_graphs) {
            return Err(Error::Graph(format!(
                "node {i} belongs to graph {} of {n_graphs}",
                graph_of[i]
            )));
        }
        let mut count = vec![0usize; n_graphs];
        for &g in graph_of {
            count[g] += 1;
        }
        let count: Vec<f32> = count.iter().map(|&c| c.max(1) as f32).collect();
        let index: Vec<i64> = graph_of.iter().map(|&g| g as i64).collect();
        Ok(Self {
            index: Tensor::from_data(TensorData::new(index, [graph_of.len()]), device),
            count: Tensor::from_data(TensorData::new(count, [n_graphs, 1]), device),
            n_graphs,
        })
    }
}

/// How a graph's node rows become one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Readout {
    /// The sum (GIN's: it tells multisets apart).
    #[default]
    Sum,
    /// The mean.
    Mean,
    /// The element-wise maximum.
    Max,
}

impl Readout {
    /// One row per graph of `graphs`.
    ///
    /// # Shapes
    /// `x` `[n, f]` -> `[g, f]`.
    pub fn apply(self, x: Tensor<2>, graphs: &GraphIndex) -> Tensor<2> {
        match self {
            Readout::Sum => scatter_sum(x, &graphs.index, graphs.n_graphs),
            Readout::Mean => scatter_mean(x, &graphs.index, &graphs.count),
            Readout::Max => scatter_max(x, &graphs.index, graphs.n_graphs),
        }
    }
}
