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
use strata_kernels::{Int8Input, QuantizedConv2d, conv2d_layer, runs_int8};

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
                int8: None,
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
                int8: None,
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

/// `conv` then `norm` (and a ReLU when `relu`) on `x`, or `int8`, their folded int8 copy
/// ([`QuantizedConv2d`]), when given.
pub fn conv_norm(
    conv: &Conv2d,
    norm: &BatchNorm2d,
    relu: bool,
    int8: Option<&QuantizedConv2d>,
    x: Tensor<4>,
) -> Tensor<4> {
    match int8 {
        Some(q) => q.forward(x),
        None if relu => norm.forward_relu(conv2d_layer(conv, x)),
        None => norm.forward(conv2d_layer(conv, x)),
    }
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
    /// Int8 copies of the convolutions for inference ([`quantize_int8`](Self::quantize_int8));
    /// never saved.
    #[module(skip)]
    pub int8: Option<ResidualInt8>,
}

/// The int8 copies of a [`Residual`] block's convolutions, each with its batch norm folded in
/// (and the ReLU after `conv1`, and after `conv2` in a bottleneck, fused).
#[derive(Debug, Clone)]
pub struct ResidualInt8 {
    /// `conv1` and `bn1`, ReLU fused.
    pub conv1: QuantizedConv2d,
    /// `conv2` and `bn2` (ReLU fused in a bottleneck).
    pub conv2: QuantizedConv2d,
    /// `conv3` and `bn3`, bottleneck only.
    pub conv3: Option<QuantizedConv2d>,
    /// The projection shortcut and its batch norm.
    pub downsample: Option<QuantizedConv2d>,
}

impl Residual {
    /// Applies the block.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`
    /// - returns `[batch, out_channels, ceil(h / stride), ceil(w / stride)]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let int8 = self.int8.as_ref().filter(|_| runs_int8(&x.device()));
        let shortcut = match &self.downsample {
            Some((c, b)) => conv_norm(
                c,
                b,
                false,
                int8.and_then(|q| q.downsample.as_ref()),
                x.clone(),
            ),
            None => x.clone(),
        };
        // A bottleneck's second batch norm is followed by a ReLU too.
        let bottleneck = self.conv3.is_some();
        let y = conv_norm(&self.conv1, &self.bn1, true, int8.map(|q| &q.conv1), x);
        let y = conv_norm(
            &self.conv2,
            &self.bn2,
            bottleneck,
            int8.map(|q| &q.conv2),
            y,
        );
        let y = match (&self.conv3, &self.bn3) {
            (Some(c), Some(b)) => conv_norm(c, b, false, int8.and_then(|q| q.conv3.as_ref()), y),
            _ => y,
        };
        relu(y + shortcut)
    }

    /// Keeps int8 copies of the convolutions (one scale per kernel, or per output channel),
    /// batch norms folded in, which inference on a device without autodiff then runs.
    pub fn quantize_int8(&mut self, per_output: bool) {
        let q = |conv: &Conv2d, norm: &BatchNorm2d, relu: bool| {
            QuantizedConv2d::from_conv(conv, Some(norm.stats()), relu, per_output)
        };
        let bottleneck = self.conv3.is_some();
        self.int8 = (|| {
            Some(ResidualInt8 {
                conv1: q(&self.conv1, &self.bn1, true)?,
                conv2: q(&self.conv2, &self.bn2, bottleneck)?,
                conv3: match (&self.conv3, &self.bn3) {
                    (Some(c), Some(b)) => Some(q(c, b, false)?),
                    _ => None,
                },
                downsample: match &self.downsample {
                    Some((c, b)) => Some(q(c, b, false)?),
                    None => None,
                },
            })
        })();
    }

    /// The inputs of the int8 convolutions by name (`conv1`, `conv2`, `conv3`,
    /// `downsample.0`), to observe and calibrate; empty before
    /// [`quantize_int8`](Self::quantize_int8).
    pub fn int8_inputs_mut(&mut self) -> Vec<(&'static str, &mut Int8Input)> {
        let Some(q) = &mut self.int8 else {
            return Vec::new();
        };
        let mut inputs = vec![
            ("conv1", q.conv1.input_mut()),
            ("conv2", q.conv2.input_mut()),
        ];
        if let Some(c) = &mut q.conv3 {
            inputs.push(("conv3", c.input_mut()));
        }
        if let Some(d) = &mut q.downsample {
            inputs.push(("downsample.0", d.input_mut()));
        }
        inputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{autodiff_output, max_gap};
    use burn::module::{Param, RunningState};
    use burn::tensor::Distribution;

    /// Batch norms with statistics far from the defaults, so that folding them matters.
    fn perturb(norm: &mut BatchNorm2d, seed: f32) {
        let n = norm.weight.dims()[0];
        let device = norm.weight.device();
        let t = |f: &dyn Fn(f32) -> f32| {
            let v: Vec<f32> = (0..n).map(|i| f(i as f32 + seed)).collect();
            Tensor::<1>::from_floats(v.as_slice(), &device)
        };
        norm.weight = Param::from_tensor(t(&|i| 0.5 + (i * 0.7).sin().abs()));
        norm.bias = Param::from_tensor(t(&|i| 0.3 * (i * 1.3).cos()));
        norm.running_mean = RunningState::new(t(&|i| 0.2 * (i * 0.9).sin()));
        norm.running_var = RunningState::new(t(&|i| 0.3 + (i * 0.4).cos().abs()));
    }

    /// Basic and bottleneck blocks, with and without a projection: the int8 block stays close
    /// to the float block at inference, and under autodiff the float block runs.
    #[test]
    fn the_int8_block_is_close_to_the_float_block() {
        let d = Device::flex();
        for config in [
            ResidualConfig::basic(8, 8, 1),
            ResidualConfig::basic(8, 16, 2),
            ResidualConfig::bottleneck(16, 4, 1),
            ResidualConfig::bottleneck(8, 4, 2),
        ] {
            let mut block = config.init(&d);
            let mut norms = vec![&mut block.bn1, &mut block.bn2];
            norms.extend(block.bn3.as_mut());
            norms.extend(block.downsample.as_mut().map(|(_, b)| b));
            for (i, norm) in norms.into_iter().enumerate() {
                perturb(norm, i as f32 * 3.0);
            }
            let x = Tensor::<4>::random(
                [3, config.in_channels, 9, 9],
                Distribution::Normal(0.0, 1.0),
                &d,
            );
            let float = block.forward(x.clone());
            let float_train = autodiff_output(&block, &x, Residual::forward);
            block.quantize_int8(true);
            let names: Vec<&str> = block.int8_inputs_mut().iter().map(|(n, _)| *n).collect();
            let want: &[&str] = match (config.bottleneck, config.stride) {
                (false, 1) => &["conv1", "conv2"],
                (false, _) => &["conv1", "conv2", "downsample.0"],
                (true, 1) => &["conv1", "conv2", "conv3"],
                (true, _) => &["conv1", "conv2", "conv3", "downsample.0"],
            };
            assert_eq!(names, want);
            let int8 = block.forward(x.clone());
            assert_eq!(int8.dims(), float.dims());
            let scale = float.clone().abs().max().into_scalar::<f32>();
            let gap = max_gap(float, int8);
            // Two or three int8 convolutions in a row, each within about 1% of its outputs'
            // range (bar set before the first run).
            assert!(
                gap > 0.0 && gap < 0.05 * scale,
                "{config:?}: gap {gap}, outputs up to {scale}"
            );
            let back = max_gap(autodiff_output(&block, &x, Residual::forward), float_train);
            assert!(back < 1e-5, "autodiff runs the float block: {back}");
        }
    }
}
