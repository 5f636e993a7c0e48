//! The blocks of a convolutional autoencoder: [`Downsample`] (a 3x3 convolution of stride 2
//! that halves the height and width) and [`Upsample`] (a 3x3 transposed convolution of stride
//! 2 that doubles them), each followed by an activation (none on the last layer of a decoder,
//! which gives logits).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_layers::{DownsampleConfig, UpsampleConfig};
//! let d = Device::flex();
//! let down = DownsampleConfig::new(1, 8).init(&d);
//! let up = UpsampleConfig::new(8, 1).init(&d);
//! let x = Tensor::<4>::zeros([2, 1, 28, 28], &d);
//! let h = down.forward(x);
//! assert_eq!(h.dims(), [2, 8, 14, 14]);
//! assert_eq!(up.forward(h).dims(), [2, 1, 28, 28]);
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::activation::Activation;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::{Device, Tensor};
use strata_kernels::conv2d_layer;

use crate::activation::ActivationKind;

/// Configuration of a [`Downsample`] block.
#[derive(Config, Debug)]
pub struct DownsampleConfig {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Activation after the convolution.
    #[config(default = "ActivationKind::Relu")]
    pub activation: ActivationKind,
}

/// `Conv2d(3x3, stride 2, padding 1) -> activation`: `[C, H, W]` to `[C', H/2, W/2]` for even
/// `H` and `W` (PyTorch's `nn.Conv2d(c_in, c_out, 3, 2, 1)`).
#[derive(Module, Debug)]
pub struct Downsample {
    /// The strided convolution.
    pub conv: Conv2d,
    /// The activation.
    pub activation: Activation,
}

impl DownsampleConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> Downsample {
        Downsample {
            conv: Conv2dConfig::new([self.c_in, self.c_out], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            activation: self.activation.init(device),
        }
    }
}

impl Downsample {
    /// Applies the block.
    ///
    /// # Shapes
    /// - input: `[batch, c_in, h, w]`
    /// - output: `[batch, c_out, ceil(h / 2), ceil(w / 2)]`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        self.activation.forward(conv2d_layer(&self.conv, input))
    }
}

/// Configuration of an [`Upsample`] block.
#[derive(Config, Debug)]
pub struct UpsampleConfig {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Activation after the transposed convolution; `None` for a decoder's output layer.
    #[config(default = "Some(ActivationKind::Relu)")]
    pub activation: Option<ActivationKind>,
}

/// `ConvTranspose2d(3x3, stride 2, padding 1, output padding 1) -> [activation]`: `[C, H, W]`
/// to `[C', 2H, 2W]` (PyTorch's `nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1)`).
#[derive(Module, Debug)]
pub struct Upsample {
    /// The transposed convolution.
    pub conv: ConvTranspose2d,
    /// The activation, if any.
    pub activation: Option<Activation>,
}

impl UpsampleConfig {
    /// Builds the block on `device`.
    pub fn init(&self, device: &Device) -> Upsample {
        Upsample {
            conv: ConvTranspose2dConfig::new([self.c_in, self.c_out], [3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_padding_out([1, 1])
                .init(device),
            activation: self.activation.map(|a| a.init(device)),
        }
    }
}

impl Upsample {
    /// Applies the block.
    ///
    /// # Shapes
    /// - input: `[batch, c_in, h, w]`
    /// - output: `[batch, c_out, 2h, 2w]`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(input);
        match &self.activation {
            Some(a) => a.forward(x),
            None => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10))]
        /// Down halves even sides, up doubles any side, channels as configured.
        #[test]
        fn halves_and_doubles(b in 1usize..3, c in 1usize..4, k in 1usize..4, h in 1usize..9, w in 1usize..9) {
            let d = Device::flex();
            let x = Tensor::<4>::ones([b, c, 2 * h, 2 * w], &d);
            let y = DownsampleConfig::new(c, k).init(&d).forward(x);
            prop_assert_eq!(y.dims(), [b, k, h, w]);
            let z = UpsampleConfig::new(k, c).with_activation(None).init(&d).forward(y);
            prop_assert_eq!(z.dims(), [b, c, 2 * h, 2 * w]);
        }
    }
}
