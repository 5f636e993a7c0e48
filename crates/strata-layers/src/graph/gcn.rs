//! `GcnConv`: Kipf & Welling's graph convolution, `D^-1/2 (A + I) D^-1/2 X W + b`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::edges::Edges;
use super::message::{gather, scatter_sum};

/// Settings of a [`GcnConv`].
#[derive(Config, Debug)]
pub struct GcnConvConfig {
    /// Features per input node.
    pub d_input: usize,
    /// Features per output node.
    pub d_output: usize,
    /// Whether to add a bias (after aggregation).
    #[config(default = true)]
    pub bias: bool,
}

/// A graph convolution (Kipf & Welling 2017), as PyTorch Geometric's `GCNConv` with its
/// defaults: every node's given self loops replaced by one, symmetric normalisation by the
/// looped degrees (edge weights counted), Glorot-initialised `lin.weight`, zero `bias`.
#[derive(Module, Debug)]
pub struct GcnConv {
    /// `X W` (no bias).
    pub lin: Linear,
    /// Added after aggregation.
    pub bias: Option<Param<Tensor<1>>>,
}

impl GcnConvConfig {
    /// The layer, initialised on `device`.
    pub fn init(&self, device: &Device) -> GcnConv {
        GcnConv {
            lin: LinearConfig::new(self.d_input, self.d_output)
                .with_bias(false)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device),
            bias: self
                .bias
                .then(|| Initializer::Zeros.init([self.d_output], device)),
        }
    }
}

impl GcnConv {
    /// Convolves node features over `edges`.
    ///
    /// # Shapes
    /// `x` `[nodes, d_input]` -> `[nodes, d_output]`.
    pub fn forward(&self, x: Tensor<2>, edges: &Edges) -> Tensor<2> {
        let h = self.lin.forward(x);
        let messages = gather(h, &edges.looped_source) * edges.gcn_norm.clone().unsqueeze_dim(1);
        let out = scatter_sum(messages, &edges.looped_target, edges.n_nodes());
        match &self.bias {
            Some(b) => out + b.val().unsqueeze_dim(0),
            None => out,
        }
    }
}
