//! `GinConv`: the graph isomorphism network layer (Xu et al. 2019),
//! `MLP((1 + eps) x_i + sum_j x_j)`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::edges::Edges;
use super::message::{gather, scatter_sum};
use crate::{ActivationKind, DenseBlock, DenseBlockConfig};

/// Settings of a [`GinConv`].
#[derive(Config, Debug)]
pub struct GinConvConfig {
    /// Features per input node.
    pub d_input: usize,
    /// Width of the MLP's hidden layer.
    pub d_hidden: usize,
    /// Features per output node.
    pub d_output: usize,
    /// Batch norm in the MLP (after its first linear layer), as Xu et al.
    #[config(default = false)]
    pub batch_norm: bool,
    /// Whether `eps` is learned (else fixed at its initial value).
    #[config(default = true)]
    pub train_eps: bool,
    /// The initial `eps`.
    #[config(default = 0.0)]
    pub eps: f64,
}

/// A GIN layer, as PyTorch Geometric's `GINConv(nn, train_eps=True)` with `nn` a two-layer
/// MLP `Linear -> [BatchNorm] -> ReLU -> Linear`. Sum aggregation over the edges as given (a
/// self loop adds the node once more; weights are not used).
#[derive(Module, Debug)]
pub struct GinConv {
    /// `Linear -> [BatchNorm] -> ReLU`.
    pub hidden: DenseBlock,
    /// The MLP's last linear layer.
    pub out: Linear,
    /// `eps`, one value.
    pub eps: Param<Tensor<1>>,
}

impl GinConvConfig {
    /// The layer, initialised on `device`.
    pub fn init(&self, device: &Device) -> GinConv {
        let eps = Initializer::Constant { value: self.eps }.init([1], device);
        GinConv {
            hidden: DenseBlockConfig::new(self.d_input, self.d_hidden)
                .with_activation(ActivationKind::Relu)
                .with_batch_norm(self.batch_norm)
                .init(device),
            out: LinearConfig::new(self.d_hidden, self.d_output).init(device),
            eps: if self.train_eps {
                eps
            } else {
                eps.set_require_grad(false)
            },
        }
    }
}

impl GinConv {
    /// # Shapes
    /// `x` `[nodes, d_input]` -> `[nodes, d_output]`.
    pub fn forward(&self, x: Tensor<2>, edges: &Edges) -> Tensor<2> {
        let agg = scatter_sum(
            gather(x.clone(), &edges.source),
            &edges.target,
            edges.n_nodes(),
        );
        let h = x * (self.eps.val() + 1.0).unsqueeze_dim(0) + agg;
        self.out.forward(self.hidden.forward(h))
    }
}
