//! Residual networks (He et al. 2016), named as torchvision's (`conv1`, `bn1`, `layer1.0.conv1`,
//! `layer2.0.downsample.0`, `fc`), so that a torchvision `state_dict` loads by name:
//! ResNet-18/34 (basic blocks), ResNet-50/101 (bottlenecks) with the ImageNet stem (7x7
//! convolution, stride 2, 3x3 max pool), and the small CIFAR ResNets (ResNet-20/32/56: a 3x3
//! stem and three stages of 16, 32 and 64 channels) for 28x28 and 32x32 inputs. Any input
//! channel count and class count; [`ResNet::features`] and the `fc` head split the backbone
//! from the classifier.
//!
//! The CIFAR ResNets here use projection shortcuts (a 1x1 convolution with batch norm, as
//! torchvision's `downsample`) where the paper's CIFAR models pad with zeros (option A).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_arch::ResNetConfig;
//! let device = Device::flex();
//! let model = ResNetConfig::by_name("resnet20", 1, 10)?.init(&device)?;
//! let logits = model.forward(Tensor::<4>::zeros([2, 1, 28, 28], &device));
//! assert_eq!(logits.dims(), [2, 10]);
//! # Ok::<(), strata_arch::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use strata_kernels::{
    Int8Input, QuantizedConv2d, QuantizedLinear, linear_or_int8, max_pool2d_layer, runs_int8,
};
use strata_layers::{BatchNorm2d, BatchNorm2dConfig, Residual, ResidualConfig, conv, conv_norm};

use crate::error::{Error, check_size};
use crate::network::TransferParts;

/// The first layers, before the residual stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// 7x7 convolution of 64 channels, stride 2, then a 3x3 max pool, stride 2 (ImageNet).
    ImageNet,
    /// 3x3 convolution, stride 1, as wide as the first stage; no pooling (CIFAR).
    Cifar,
}

/// Configuration of a [`ResNet`].
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Classes.
    pub n_classes: usize,
    /// Blocks per stage, e.g. `[2, 2, 2, 2]` for ResNet-18.
    pub blocks: Vec<usize>,
    /// Width of each stage, e.g. `[64, 128, 256, 512]`.
    pub widths: Vec<usize>,
    /// Bottleneck blocks (4x expansion) rather than basic ones.
    #[config(default = false)]
    pub bottleneck: bool,
    /// The stem.
    #[config(default = "Stem::ImageNet")]
    pub stem: Stem,
    /// Output channels of each block's first convolution, block by block through the stages
    /// (empty: each stage's width). Channel pruning writes it.
    #[config(default = "Vec::new()")]
    pub inner: Vec<usize>,
}

/// The ResNet names [`ResNetConfig::by_name`] knows.
pub const RESNETS: [&str; 7] = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet20",
    "resnet32",
    "resnet56",
];

impl ResNetConfig {
    /// torchvision's ResNet-18/34/50/101 or the CIFAR ResNet-20/32/56, for `in_channels`
    /// inputs and `n_classes` classes.
    ///
    /// # Errors
    /// [`Error::Invalid`] for another name.
    pub fn by_name(name: &str, in_channels: usize, n_classes: usize) -> crate::Result<Self> {
        let imagenet = |blocks: Vec<usize>, bottleneck| {
            Self::new(in_channels, n_classes, blocks, vec![64, 128, 256, 512])
                .with_bottleneck(bottleneck)
        };
        let cifar = |n: usize| {
            Self::new(in_channels, n_classes, vec![n; 3], vec![16, 32, 64]).with_stem(Stem::Cifar)
        };
        Ok(match name {
            "resnet18" => imagenet(vec![2, 2, 2, 2], false),
            "resnet34" => imagenet(vec![3, 4, 6, 3], false),
            "resnet50" => imagenet(vec![3, 4, 6, 3], true),
            "resnet101" => imagenet(vec![3, 4, 23, 3], true),
            "resnet20" => cifar(3),
            "resnet32" => cifar(5),
            "resnet56" => cifar(9),
            other => {
                return Err(Error::Invalid(format!(
                    "unknown ResNet `{other}`: expected one of {}",
                    RESNETS.join(", ")
                )));
            }
        })
    }

    /// Checks sizes: 1 to 4 stages, as many widths as stages, no zero.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the problem.
    pub fn validate(&self) -> crate::Result<()> {
        check_size("in_channels", self.in_channels)?;
        check_size("n_classes", self.n_classes)?;
        if self.blocks.is_empty() || self.blocks.len() > 4 || self.blocks.len() != self.widths.len()
        {
            return Err(Error::Invalid(format!(
                "a ResNet has 1 to 4 stages with a width each, got blocks {:?} and widths {:?}",
                self.blocks, self.widths
            )));
        }
        for (&b, &w) in self.blocks.iter().zip(&self.widths) {
            check_size("blocks per stage", b)?;
            check_size("stage width", w)?;
        }
        let blocks: usize = self.blocks.iter().sum();
        if !self.inner.is_empty() && self.inner.len() != blocks {
            return Err(Error::Invalid(format!(
                "a ResNet's inner widths name each of its {blocks} blocks, got {}",
                self.inner.len()
            )));
        }
        for &w in &self.inner {
            check_size("inner width", w)?;
        }
        Ok(())
    }

    /// Channels of the pooled features, the head's input.
    pub fn n_features(&self) -> usize {
        let last = *self.widths.last().unwrap_or(&0);
        if self.bottleneck { 4 * last } else { last }
    }

    /// Builds the network.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<ResNet> {
        self.validate()?;
        let (stem_width, conv1) = match self.stem {
            Stem::ImageNet => (64, conv(self.in_channels, 64, 7, 2, device)),
            Stem::Cifar => (
                self.widths[0],
                conv(self.in_channels, self.widths[0], 3, 1, device),
            ),
        };
        let mut channels = stem_width;
        let mut stages: Vec<Vec<Residual>> = Vec::with_capacity(4);
        for (i, (&n, &w)) in self.blocks.iter().zip(&self.widths).enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            let mut stage = Vec::with_capacity(n);
            for j in 0..n {
                let block = stages.iter().map(Vec::len).sum::<usize>() + j;
                let c = ResidualConfig::new(channels, w, if j == 0 { stride } else { 1 })
                    .with_bottleneck(self.bottleneck)
                    .with_inner(self.inner.get(block).copied());
                channels = c.out_channels();
                stage.push(c.init(device));
            }
            stages.push(stage);
        }
        stages.resize_with(4, Vec::new);
        let mut stages = stages.into_iter();
        let mut next = || stages.next().unwrap_or_default();
        Ok(ResNet {
            conv1,
            bn1: BatchNorm2dConfig::new(stem_width).init(device),
            maxpool: (self.stem == Stem::ImageNet).then(|| {
                MaxPool2dConfig::new([3, 3])
                    .with_strides([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init()
            }),
            layer1: next(),
            layer2: next(),
            layer3: next(),
            layer4: next(),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(channels, self.n_classes).init(device),
            conv1_int8: None,
            fc_int8: None,
        })
    }
}

/// A residual network.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem convolution.
    pub conv1: Conv2d,
    /// Stem batch norm.
    pub bn1: BatchNorm2d,
    /// Stem max pool (ImageNet stem).
    pub maxpool: Option<MaxPool2d>,
    /// Stage 1.
    pub layer1: Vec<Residual>,
    /// Stage 2.
    pub layer2: Vec<Residual>,
    /// Stage 3.
    pub layer3: Vec<Residual>,
    /// Stage 4 (empty in the CIFAR ResNets).
    pub layer4: Vec<Residual>,
    /// Global average pool.
    pub avgpool: AdaptiveAvgPool2d,
    /// The classification head.
    pub fc: Linear,
    /// Int8 copy of the stem convolution, `bn1` and the ReLU folded in
    /// ([`quantize_int8`](Self::quantize_int8)); never saved.
    #[module(skip)]
    pub conv1_int8: Option<QuantizedConv2d>,
    /// Int8 copy of the head; never saved.
    #[module(skip)]
    pub fc_int8: Option<QuantizedLinear>,
}

impl ResNet {
    /// The stages, in order.
    pub fn stages(&self) -> [&Vec<Residual>; 4] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }

    /// The backbone: pooled features before the head.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`
    /// - returns `[batch, n_features]`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        self.pooled(self.blocks(self.stem(x), 0..4))
    }

    /// The activations after stage `layer{stage + 1}` (`stage` from 0), for Grad-CAM.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`
    /// - returns the stage's output `[batch, c, h', w']`
    pub fn forward_to(&self, x: Tensor<4>, stage: usize) -> Tensor<4> {
        self.blocks(self.stem(x), 0..stage + 1)
    }

    /// The logits from the activations after stage `stage`: the rest of
    /// [`forward`](Self::forward).
    pub fn forward_from(&self, activations: Tensor<4>, stage: usize) -> Tensor<2> {
        let features = self.pooled(self.blocks(activations, stage + 1..4));
        linear_or_int8(&self.fc, self.fc_int8.as_ref(), features)
    }

    /// The stem: convolution, batch norm and ReLU, and the ImageNet stem's max pool.
    fn stem(&self, x: Tensor<4>) -> Tensor<4> {
        let int8 = self.conv1_int8.as_ref().filter(|_| runs_int8(&x.device()));
        let x = conv_norm(&self.conv1, &self.bn1, true, int8, x);
        match &self.maxpool {
            Some(p) => max_pool2d_layer(p, x),
            None => x,
        }
    }

    /// The residual blocks of the stages `stages` (0-based).
    fn blocks(&self, x: Tensor<4>, stages: std::ops::Range<usize>) -> Tensor<4> {
        self.stages()[stages]
            .iter()
            .flat_map(|s| s.iter())
            .fold(x, |x, block| block.forward(x))
    }

    /// Global average pooling, flattened.
    fn pooled(&self, x: Tensor<4>) -> Tensor<2> {
        let [b, c, _, _] = x.dims();
        self.avgpool.forward(x).reshape([b, c])
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`
    /// - returns `[batch, n_classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        linear_or_int8(&self.fc, self.fc_int8.as_ref(), self.features(x))
    }

    /// Keeps int8 copies of every convolution (batch norms folded in, one scale per kernel or
    /// per output channel) and of the head, which inference on a device without autodiff then
    /// runs.
    pub fn quantize_int8(&mut self, per_output: bool) {
        self.conv1_int8 =
            QuantizedConv2d::from_conv(&self.conv1, Some(self.bn1.stats()), true, per_output);
        for block in [
            &mut self.layer1,
            &mut self.layer2,
            &mut self.layer3,
            &mut self.layer4,
        ]
        .into_iter()
        .flatten()
        {
            block.quantize_int8(per_output);
        }
        self.fc_int8 = Some(QuantizedLinear::from_linear(&self.fc, per_output));
    }

    /// The inputs of the int8 layers by name (`conv1`, `layer1.0.conv1`, ...,
    /// `layer2.0.downsample.0`, `fc`), to observe and calibrate; empty before
    /// [`quantize_int8`](Self::quantize_int8).
    pub fn int8_inputs_mut(&mut self) -> Vec<(String, &mut Int8Input)> {
        let mut inputs = Vec::new();
        if let Some(q) = &mut self.conv1_int8 {
            inputs.push(("conv1".to_string(), q.input_mut()));
        }
        // Field by field: the stages and the int8 copies beside them are borrowed apart.
        let stages = [
            &mut self.layer1,
            &mut self.layer2,
            &mut self.layer3,
            &mut self.layer4,
        ];
        for (s, stage) in stages.into_iter().enumerate() {
            for (i, block) in stage.iter_mut().enumerate() {
                for (name, input) in block.int8_inputs_mut() {
                    inputs.push((format!("layer{}.{i}.{name}", s + 1), input));
                }
            }
        }
        if let Some(q) = &mut self.fc_int8 {
            inputs.push(("fc".to_string(), q.input_mut()));
        }
        inputs
    }

    /// For transfer learning: the stages `layer1..` (the stem `conv1`, `bn1` with the first)
    /// and the head `fc`, by torchvision's names.
    pub fn transfer_parts(&self) -> TransferParts {
        let mut stages = vec![vec!["conv1".to_string(), "bn1".to_string()]];
        for (i, stage) in self.stages().iter().enumerate() {
            if stage.is_empty() {
                continue;
            }
            let name = format!("layer{}", i + 1);
            match i {
                0 => stages[0].push(name),
                _ => stages.push(vec![name]),
            }
        }
        TransferParts {
            stages,
            head: vec!["fc".into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;

    #[test]
    fn every_named_resnet_builds_with_torchvision_names() {
        let d = Device::flex();
        for name in ["resnet18", "resnet20", "resnet50"] {
            let m = ResNetConfig::by_name(name, 3, 7).unwrap().init(&d).unwrap();
            let y = m.forward(Tensor::<4>::zeros([1, 3, 32, 32], &d));
            assert_eq!(y.dims(), [1, 7], "{name}");
        }
        let m = ResNetConfig::by_name("resnet18", 3, 1000)
            .unwrap()
            .init(&d)
            .unwrap();
        // torchvision's resnet18 has 11,689,512 parameters; burn also counts the running mean
        // and variance of its 4800 batch-norm channels.
        assert_eq!(m.num_params(), 11_689_512 + 2 * 4800);
        let m50 = ResNetConfig::by_name("resnet50", 3, 1000)
            .unwrap()
            .init(&d)
            .unwrap();
        // resnet50: 25,557,032 parameters and 26,560 batch-norm channels.
        assert_eq!(m50.num_params(), 25_557_032 + 2 * 26_560);
        let m20 = ResNetConfig::by_name("resnet20", 1, 10)
            .unwrap()
            .init(&d)
            .unwrap();
        assert_eq!(m20.layer4.len(), 0);
        assert!(m20.layer2[0].downsample.is_some() && m20.layer1[0].downsample.is_none());
    }

    /// A whole ResNet in int8 (stem, every block, projections, head): the logits stay close to
    /// the float network's, the layers are named as in a run's weights, and the split at a
    /// stage (Grad-CAM) gives the same logits as the whole.
    #[test]
    fn an_int8_resnet_is_close_to_the_float_one() {
        use burn::tensor::Distribution;
        let d = Device::flex();
        let mut m = ResNetConfig::by_name("resnet20", 3, 10)
            .unwrap()
            .init(&d)
            .unwrap();
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &d);
        let float = m.forward(x.clone());
        m.quantize_int8(false);
        let names: Vec<String> = m.int8_inputs_mut().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 1 + 9 * 2 + 2 + 1);
        assert_eq!(names[..3], ["conv1", "layer1.0.conv1", "layer1.0.conv2"]);
        assert!(names.contains(&"layer3.0.downsample.0".to_string()));
        assert_eq!(names.last().map(String::as_str), Some("fc"));
        let int8 = m.forward(x.clone());
        let scale = float.clone().abs().max().into_scalar::<f32>();
        let gap = float.sub(int8.clone()).abs().max().into_scalar::<f32>();
        // Twenty int8 layers in a row, each within about 1% (bar set before the first run).
        assert!(
            gap > 0.0 && gap < 0.1 * scale,
            "gap {gap}, logits up to {scale}"
        );
        let split = m.forward_from(m.forward_to(x, 1), 1);
        let apart = split.sub(int8).abs().max().into_scalar::<f32>();
        assert!(apart < 1e-5, "split at a stage: {apart}");
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(ResNetConfig::by_name("resnet19", 3, 10).is_err());
        let d = Device::flex();
        let e = ResNetConfig::new(3, 10, vec![2, 2], vec![64])
            .init(&d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 to 4 stages"), "{e}");
        assert!(ResNetConfig::new(3, 0, vec![1], vec![8]).init(&d).is_err());
    }
}
