//! `GatConv`: graph attention (Velickovic et al. 2018), multi-head.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};

use super::edges::Edges;
use super::message::{gather, scatter_sum, segment_softmax};

/// Settings of a [`GatConv`].
#[derive(Config, Debug)]
pub struct GatConvConfig {
    /// Features per input node.
    pub d_input: usize,
    /// Features per output node and head.
    pub d_output: usize,
    /// Attention heads.
    #[config(default = 1)]
    pub n_heads: usize,
    /// Concatenate the heads (`[nodes, n_heads * d_output]`), else average them
    /// (`[nodes, d_output]`).
    #[config(default = true)]
    pub concat: bool,
    /// The negative slope of the LeakyReLU on the attention scores.
    #[config(default = 0.2)]
    pub negative_slope: f64,
    /// Dropout on the attention coefficients while training.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Whether to add a bias.
    #[config(default = true)]
    pub bias: bool,
}

impl GatConvConfig {
    /// Output features per node.
    pub fn d_out(&self) -> usize {
        if self.concat {
            self.n_heads * self.d_output
        } else {
            self.d_output
        }
    }

    /// The layer, initialised on `device` (Glorot weights, zero bias, as PyTorch Geometric).
    pub fn init(&self, device: &Device) -> GatConv {
        let (h, c) = (self.n_heads, self.d_output);
        let a = (6.0 / (h + c) as f64).sqrt();
        let att = Initializer::Uniform { min: -a, max: a };
        GatConv {
            lin: LinearConfig::new(self.d_input, h * c)
                .with_bias(false)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device),
            att_src: att.init([h, c], device),
            att_dst: att.init([h, c], device),
            bias: self
                .bias
                .then(|| Initializer::Zeros.init([self.d_out()], device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            n_heads: h,
            d_output: c,
            concat: self.concat,
            negative_slope: self.negative_slope,
        }
    }
}

/// A graph attention layer, as PyTorch Geometric's `GATConv` with its defaults: given self
/// loops replaced by one per node, attention `softmax_j(LeakyReLU(a_src . W x_j + a_dst . W
/// x_i))` over each node's incoming edges, dropout on the coefficients, heads concatenated or
/// averaged, then the bias. Edge weights are not used.
#[derive(Module, Debug)]
pub struct GatConv {
    /// `W`, all heads (no bias).
    pub lin: Linear,
    /// The source half of each head's attention vector, `[heads, d_output]`.
    pub att_src: Param<Tensor<2>>,
    /// The target half, `[heads, d_output]`.
    pub att_dst: Param<Tensor<2>>,
    /// Added last.
    pub bias: Option<Param<Tensor<1>>>,
    /// On the attention coefficients.
    pub dropout: Dropout,
    /// Heads.
    #[module(skip)]
    pub n_heads: usize,
    /// Features per head.
    #[module(skip)]
    pub d_output: usize,
    /// Concatenate (else average) the heads.
    #[module(skip)]
    pub concat: bool,
    /// LeakyReLU slope.
    #[module(skip)]
    pub negative_slope: f64,
}

impl GatConv {
    /// # Shapes
    /// `x` `[nodes, d_input]` -> `[nodes, heads * d_output]` (concatenated) or
    /// `[nodes, d_output]` (averaged).
    pub fn forward(&self, x: Tensor<2>, edges: &Edges) -> Tensor<2> {
        self.forward_with_attention(x, edges).0
    }

    /// The output and the attention coefficient of each looped edge and head (before
    /// dropout), in the order of [`Edges::looped_source`].
    ///
    /// # Shapes
    /// `x` `[nodes, d_input]` -> (as [`forward`](Self::forward), `[looped edges, heads]`).
    pub fn forward_with_attention(&self, x: Tensor<2>, edges: &Edges) -> (Tensor<2>, Tensor<2>) {
        let n = edges.n_nodes();
        let (h, c) = (self.n_heads, self.d_output);
        let z = self.lin.forward(x); // [n, h * c]
        let heads = z.clone().reshape([n, h, c]);
        let score = |att: &Param<Tensor<2>>| {
            (heads.clone() * att.val().unsqueeze_dim::<3>(0))
                .sum_dim(2)
                .reshape([n, h])
        };
        let (s_src, s_dst) = (score(&self.att_src), score(&self.att_dst));
        let e = gather(s_src, &edges.looped_source) + gather(s_dst, &edges.looped_target);
        let alpha = segment_softmax(leaky_relu(e, self.negative_slope), &edges.looped_target, n);
        let weights = strata_kernels::dropout_layer(&self.dropout, alpha.clone());
        let n_edges = edges.n_looped_edges();
        let weights = weights
            .unsqueeze_dim::<3>(2)
            .expand([n_edges, h, c])
            .reshape([n_edges, h * c]);
        let messages = gather(z, &edges.looped_source) * weights;
        let mut out = scatter_sum(messages, &edges.looped_target, n);
        if !self.concat {
            out = out.reshape([n, h, c]).mean_dim(1).reshape([n, c]);
        }
        if let Some(b) = &self.bias {
            out = out + b.val().unsqueeze_dim(0);
        }
        (out, alpha)
    }
}
