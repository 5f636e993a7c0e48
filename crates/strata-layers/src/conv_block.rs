//! `Conv2d -> [BatchNorm2d] -> activation -> [pool]`: the stage of a LeNet / VGG-style CNN.

use burn::config::Config;
use burn::module::Module;
use burn::nn::activation::Activation;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use strata_kernels::{
    BatchNormStats, QuantizedConv2d, batch_norm_layer, batch_norm_relu_layer, conv2d_layer,
    max_pool2d_layer, runs_int8,
};

use crate::activation::ActivationKind;

/// Spatial pooling after a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// 2x2 max pooling, stride 2 (default).
    #[default]
    Max,
    /// 2x2 average pooling, stride 2.
    Avg,
    /// No pooling.
    None,
}

/// Configuration of a [`ConvBlock`].
#[derive(Config, Debug)]
pub struct ConvBlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel size; padding keeps the spatial size ("same").
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Activation.
    #[config(default = "ActivationKind::Relu")]
    pub activation: ActivationKind,
    /// Batch normalisation after the convolution.
    #[config(default = false)]
    pub batch_norm: bool,
    /// Pooling after the activation.
    #[config(default = "Pooling::Max")]
    pub pooling: Pooling,
}

/// One convolutional stage.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// The convolution (`weight` `[out, in, k, k]`, `bias`, as PyTorch's `nn.Conv2d`).
    pub conv: Conv2d,
    /// Optional batch normalisation.
    pub norm: Option<BatchNorm>,
    /// The activation.
    pub activation: Activation,
    /// Max pooling, when chosen.
    pub max_pool: Option<MaxPool2d>,
    /// Average pooling, when chosen.
    pub avg_pool: Option<AvgPool2d>,
    /// An int8 copy of the convolution, with the batch norm folded in and a ReLU fused, for
    /// inference ([`ConvBlock::quantize_int8`]); not saved.
    #[module(skip)]
    pub conv_int8: Option<QuantizedConv2d>,
}

impl ConvBlockConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> ConvBlock {
        let k = self.kernel_size;
        let pad_lo = (k - 1) / 2;
        let pad_hi = k - 1 - pad_lo;
        ConvBlock {
            conv: Conv2dConfig::new([self.in_channels, self.out_channels], [k, k])
                .with_padding(PaddingConfig2d::Explicit(pad_lo, pad_lo, pad_hi, pad_hi))
                .init(device),
            norm: self
                .batch_norm
                .then(|| BatchNormConfig::new(self.out_channels).init(device)),
            activation: self.activation.init(device),
            max_pool: (self.pooling == Pooling::Max)
                .then(|| MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
            avg_pool: (self.pooling == Pooling::Avg)
                .then(|| AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
            conv_int8: None,
        }
    }

    /// The spatial size after this block for an input of `size` (pooling halves it, rounding
    /// down).
    pub fn output_size(&self, size: usize) -> usize {
        match self.pooling {
            Pooling::None => size,
            Pooling::Max | Pooling::Avg => size / 2,
        }
    }
}

impl ConvBlock {
    /// Applies the block.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, out_channels, height', width']`, halved when pooling
    ///
    /// # Panics
    /// When the input has the wrong channel count.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = match &self.conv_int8 {
            // Batch norm folded in; the ReLU fused, or the other activation after.
            Some(q) if runs_int8(&input.device()) => {
                let x = q.forward(input);
                if q.relu() {
                    x
                } else {
                    self.activation.forward(x)
                }
            }
            _ => {
                let x = conv2d_layer(&self.conv, input);
                match (&self.norm, &self.activation) {
                    // The ReLU fused into the batch norm's passes.
                    (Some(norm), Activation::Relu(_)) => batch_norm_relu_layer(norm, x),
                    (Some(norm), activation) => activation.forward(batch_norm_layer(norm, x)),
                    (None, activation) => activation.forward(x),
                }
            }
        };
        if let Some(pool) = &self.max_pool {
            x = max_pool2d_layer(pool, x);
        }
        if let Some(pool) = &self.avg_pool {
            x = pool.forward(x);
        }
        x
    }
}

impl ConvBlock {
    /// Keeps an int8 copy of the convolution (one scale for the kernel, or one per output
    /// channel) with the batch norm's inference statistics folded in and a ReLU fused, which
    /// inference then runs ([`QuantizedConv2d`]).
    pub fn quantize_int8(&mut self, per_output: bool) {
        let relu = matches!(self.activation, Activation::Relu(_));
        self.conv_int8 = QuantizedConv2d::from_conv(
            &self.conv,
            self.norm.as_ref().map(BatchNormStats::of),
            relu,
            per_output,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{autodiff_output, max_gap};

    #[test]
    fn same_padding_then_pool_halves() {
        let d = Device::flex();
        for (k, pooling, want) in [
            (3, Pooling::Max, 4),
            (5, Pooling::Avg, 4),
            (4, Pooling::None, 8),
        ] {
            let c = ConvBlockConfig::new(1, 6)
                .with_kernel_size(k)
                .with_pooling(pooling)
                .with_batch_norm(true);
            let y = c.init(&d).forward(Tensor::<4>::ones([2, 1, 8, 8], &d));
            assert_eq!(y.dims(), [2, 6, want, want]);
            assert_eq!(c.output_size(8), want);
        }
    }

    /// The int8 copy (batch norm folded in, ReLU fused or the activation after) stays within
    /// the roundings of the float block at inference, is not the float block itself, and
    /// under autodiff the float block runs.
    #[test]
    fn the_int8_block_is_close_to_the_float_block() {
        use burn::module::{Param, RunningState};
        use burn::tensor::Distribution;
        let d = Device::flex();
        for (activation, batch_norm, per_output) in [
            (ActivationKind::Relu, true, true),
            (ActivationKind::Tanh, true, false),
            (ActivationKind::Relu, false, false),
        ] {
            let mut block = ConvBlockConfig::new(3, 6)
                .with_activation(activation)
                .with_batch_norm(batch_norm)
                .init(&d);
            if let Some(norm) = &mut block.norm {
                // Statistics far from the defaults, so that folding them matters.
                let t = |v: [f32; 6]| Tensor::<1>::from_floats(v, &d);
                norm.gamma = Param::from_tensor(t([0.5, 2.0, -1.0, 1.5, 0.1, 3.0]));
                norm.beta = Param::from_tensor(t([0.1, -0.2, 0.3, 0.0, 1.0, -1.0]));
                norm.running_mean = RunningState::new(t([0.2, -0.1, 0.0, 0.5, -0.4, 0.05]));
                norm.running_var = RunningState::new(t([0.04, 1.0, 0.25, 2.0, 0.5, 0.1]));
            }
            let x = Tensor::<4>::random([4, 3, 10, 10], Distribution::Normal(0.0, 1.0), &d);
            let float = block.forward(x.clone());
            // Under autodiff the batch norm uses the batch's statistics: the float block's
            // training output, to compare against once the int8 copy exists.
            let float_train = autodiff_output(&block, &x, ConvBlock::forward);
            block.quantize_int8(per_output);
            let q = block.conv_int8.as_ref().expect("an int8 convolution");
            assert_eq!(q.relu(), activation == ActivationKind::Relu);
            let int8 = block.forward(x.clone());
            assert_eq!(int8.dims(), float.dims());
            // The activations are 1-Lipschitz: the gap is measured against the largest input
            // to the activation (a tanh caps the outputs at 1 while its inputs reach ~10).
            let pre = block.conv.forward(x.clone());
            let pre = match &block.norm {
                Some(norm) => norm.forward(pre),
                None => pre,
            };
            let scale = pre.abs().max().into_scalar::<f32>();
            let gap = max_gap(float.clone(), int8);
            assert!(
                gap > 0.0 && gap < 0.05 * scale,
                "{activation:?} {batch_norm}: gap {gap}, activation inputs up to {scale}"
            );
            let back = max_gap(autodiff_output(&block, &x, ConvBlock::forward), float_train);
            assert!(back < 1e-5, "autodiff runs the float block: {back}");
        }
    }
}
