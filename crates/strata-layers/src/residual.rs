//! Residual blocks laid out and named as torchvision's (`conv1`, `bn1`, `conv2`, `bn2`,
//! `conv3`, `bn3`, `downsample.0`, `downsample.1`), so a torchvision ResNet `state_dict`
//! loads into them by name: the basic block of ResNet-18/34 and the CIFAR ResNets, and the
//! bottleneck of ResNet-50/101 (stride on the 3x3 convolution, as torchvision's "v1.5").
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_layers::ResidualConfig;
//! let device = Device::flex();
//! let block = ResidualConfig::basic(16, 32, 2).init(&device);
//! let y = block.forward(Tensor::<4>::zeros([2, 16, 8, 8], &device));
//! assert_eq!(y.dims(), [2, 32, 4, 4]);
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use strata_kernels::conv2d_layer;

use crate::batch_norm::{BatchNorm2d, BatchNorm2dConfig};

/// Configuration of a [`Residual`] block.
#[derive(Config, Debug)]
pub struct ResidualConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Width of the block's 3x3 convolution.
    pub width: usize,
    /// Stride of the block (2 halves the spatial size).
    pub stride: usize,
    /// A bottleneck (1x1, 3x3, 1x1 with 4x expansion) rather than two 3x3 convolutions.
    #[config(default = false)]
    pub bottleneck: bool,
    /// Output channels of the first convolution, which only the second reads (default: the
    /// width). Channel pruning makes it smaller: unlike the block's output, no residual
    /// connection ties these channels to another block's.
    #[config(default = "None")]
    pub inner: Option<usize>,
}

impl ResidualConfig {
    /// A basic block: two 3x3 convolutions, `out` channels.
    pub fn basic(in_channels: usize, out: usize, stride: usize) -> Self {
        Self::new(in_channels, out, stride)
    }

    /// A bottleneck block of width `width` and `4 * width` output channels.
    pub fn bottleneck(in_channels: usize, width: usize, stride: usize) -> Self {
        Self::new(in_channels, width, stride).with_bottleneck(true)
    }

    /// Output channels: the width, or 4x it for a bottleneck.
    pub fn out_channels(&self) -> usize {
        if self.bottleneck {
            4 * self.width
        } else {
            self.width
        }
    }

    /// Builds the block. A projection shortcut (`downsample`: 1x1 convolution and batch norm)
    /// is added when the stride or the channel count changes.
    pub fn init(&self, device: &Device) -> Residual {
        let out = self.out_channels();
        let (w, s) = (self.width, self.stride);
        let inner = self.inner.unwrap_or(w);
        let bn = |c| BatchNorm2dConfig::new(c).init(device);
        let downsample = (s != 1 || self.in_channels != out)
            .then(|| (conv(self.in_channels, out, 1, s, device), bn(out)));
        if self.bottleneck {
            Residual {
                conv1: conv(self.in_channels, inner, 1, 1, device),
                bn1: bn(inner),
                conv2: conv(inner, w, 3, s, device),
                bn2: bn(w),
                conv3: Some(conv(w, out, 1, 1, device)),
                bn3: Some(bn(out)),
                downsample,
            }
        } else {
            Residual {
                conv1: conv(self.in_channels, inner, 3, s, device),
                bn1: bn(inner),
                conv2: conv(inner, w, 3, 1, device),
                bn2: bn(w),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }
}

/// A bias-free convolution with "same" padding for odd kernels, initialised as torchvision
/// does (Kaiming normal, fan-out, ReLU gain).
pub fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// A residual block: `relu(body(x) + shortcut(x))`.
#[derive(Module, Debug)]
pub struct Residual {
    /// First convolution (3x3 with the stride; 1x1 in a bottleneck).
    pub conv1: Conv2d,
    /// Its batch norm.
    pub bn1: BatchNorm2d,
    /// Second convolution (3x3; with the stride in a bottleneck).
    pub conv2: Conv2d,
    /// Its batch norm.
    pub bn2: BatchNorm2d,
    /// Third convolution (1x1 expansion), bottleneck only.
    pub conv3: Option<Conv2d>,
    /// Its batch norm.
    pub bn3: Option<BatchNorm2d>,
    /// Projection shortcut (`downsample.0` convolution, `downsample.1` batch norm).
    pub downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl Residual {
    /// Applies the block.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`
    /// - returns `[batch, out_channels, ceil(h / stride), ceil(w / stride)]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some((c, b)) => b.forward(conv2d_layer(c, x.clone())),
            None => x.clone(),
        };
        let y = self.bn1.forward_relu(conv2d_layer(&self.conv1, x));
        let y = match (&self.conv3, &self.bn3) {
            // Bottleneck: the second batch norm is followed by a ReLU too.
            (Some(c), Some(b)) => {
                let y = self.bn2.forward_relu(conv2d_layer(&self.conv2, y));
                b.forward(conv2d_layer(c, y))
            }
            _ => self.bn2.forward(conv2d_layer(&self.conv2, y)),
        };
        relu(y + shortcut)
    }
}
