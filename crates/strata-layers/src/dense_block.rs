//! `Linear -> [BatchNorm1d] -> activation -> [Dropout]`: the hidden layer of an MLP.

use burn::config::Config;
use burn::module::Module;
use burn::nn::activation::Activation;
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::activation::ActivationKind;

/// Configuration of a [`DenseBlock`].
#[derive(Config, Debug)]
pub struct DenseBlockConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Activation after the (normalised) linear map.
    #[config(default = "ActivationKind::Relu")]
    pub activation: ActivationKind,
    /// Dropout probability after the activation (0 = none).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Batch normalisation between the linear map and the activation.
    #[config(default = false)]
    pub batch_norm: bool,
}

/// A fully connected hidden layer with optional batch norm and dropout.
#[derive(Module, Debug)]
pub struct DenseBlock {
    /// The linear map (`weight`, `bias` as in PyTorch's `nn.Linear`).
    pub linear: Linear,
    /// Optional batch normalisation.
    pub norm: Option<BatchNorm>,
    /// The activation.
    pub activation: Activation,
    /// Dropout (identity outside training).
    pub dropout: Dropout,
    /// An int8 copy of `linear` for inference ([`DenseBlock::quantize_int8`]); not saved.
    #[module(skip)]
    pub int8: Option<strata_kernels::QuantizedLinear>,
}

impl DenseBlockConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> DenseBlock {
        DenseBlock {
            linear: LinearConfig::new(self.d_input, self.d_output).init(device),
            norm: self
                .batch_norm
                .then(|| BatchNormConfig::new(self.d_output).init(device)),
            activation: self.activation.init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            int8: None,
        }
    }
}

impl DenseBlock {
    /// Applies the block.
    ///
    /// # Shapes
    /// - input: `[batch, d_input]`
    /// - output: `[batch, d_output]`
    ///
    /// # Panics
    /// When the last axis of the input is not `d_input`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let mut x = strata_kernels::linear_or_int8(&self.linear, self.int8.as_ref(), input);
        if let Some(norm) = &self.norm {
            x = strata_kernels::batch_norm_layer(norm, x);
        }
        strata_kernels::dropout_layer(&self.dropout, self.activation.forward(x))
    }
}

impl DenseBlock {
    /// Keeps an int8 copy of the linear map (one scale for the matrix, or one per output),
    /// which inference then runs ([`strata_kernels::linear_or_int8`]).
    pub fn quantize_int8(&mut self, per_output: bool) {
        self.int8 = Some(strata_kernels::QuantizedLinear::from_linear(
            &self.linear,
            per_output,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let d = Device::flex();
        let b = DenseBlockConfig::new(5, 3)
            .with_batch_norm(true)
            .with_dropout(0.5)
            .init(&d);
        let y = b.forward(Tensor::<2>::ones([4, 5], &d));
        assert_eq!(y.dims(), [4, 3]);
    }
}
