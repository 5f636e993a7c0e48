//! `SageConv`: GraphSAGE (Hamilton et al. 2017), `W_l aggregate(x_j) + W_r x_i`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::edges::Edges;
use super::message::{gather, scatter_max, scatter_mean};

/// How GraphSAGE combines a node's neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Aggregator {
    /// The mean of the neighbours' features.
    #[default]
    Mean,
    /// Their element-wise maximum.
    Max,
}

/// Settings of a [`SageConv`].
#[derive(Config, Debug)]
pub struct SageConvConfig {
    /// Features per input node.
    pub d_input: usize,
    /// Features per output node.
    pub d_output: usize,
    /// The neighbour aggregator.
    #[config(default = "Aggregator::Mean")]
    pub aggregator: Aggregator,
}

/// A GraphSAGE layer, as PyTorch Geometric's `SAGEConv` with its defaults (root weight, no
/// projection, no normalisation): `lin_l` (with bias) on the aggregated neighbours plus
/// `lin_r` (without) on the node itself. Edges count as given (a self loop is a neighbour;
/// weights are not used); a node with no edges in aggregates to 0.
#[derive(Module, Debug)]
pub struct SageConv {
    /// On the aggregated neighbours.
    pub lin_l: Linear,
    /// On the node itself.
    pub lin_r: Linear,
    /// The aggregator.
    #[module(skip)]
    pub aggregator: Aggregator,
}

impl SageConvConfig {
    /// The layer, initialised on `device`.
    pub fn init(&self, device: &Device) -> SageConv {
        SageConv {
            lin_l: LinearConfig::new(self.d_input, self.d_output).init(device),
            lin_r: LinearConfig::new(self.d_input, self.d_output)
                .with_bias(false)
                .init(device),
            aggregator: self.aggregator,
        }
    }
}

impl SageConv {
    /// # Shapes
    /// `x` `[nodes, d_input]` -> `[nodes, d_output]`.
    pub fn forward(&self, x: Tensor<2>, edges: &Edges) -> Tensor<2> {
        let messages = gather(x.clone(), &edges.source);
        let agg = match self.aggregator {
            Aggregator::Mean => scatter_mean(messages, &edges.target, &edges.degree),
            Aggregator::Max => scatter_max(messages, &edges.target, edges.n_nodes()),
        };
        self.lin_l.forward(agg) + self.lin_r.forward(x)
    }
}
