//! A model chosen at run time by name, with one entry point over flat feature rows.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::capsnet::{CapsNet, CapsNetConfig};
use crate::cnn::{Cnn, CnnConfig};
use crate::error::{Error, Result, check_size};
use crate::mlp::{Mlp, MlpConfig};
use crate::recurrent::{SequenceModel, SequenceModelConfig};
use crate::resnet::{RESNETS, ResNet, ResNetConfig};
use crate::transformer::{TransformerClassifier, TransformerClassifierConfig};
use crate::vgg::{VGGS, Vgg, VggConfig};

/// The architectures a run can name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum NetworkConfig {
    /// A multi-layer perceptron.
    Mlp(MlpConfig),
    /// A LeNet-style CNN.
    Cnn(CnnConfig),
    /// A recurrent sequence classifier or forecaster (RNN, LSTM or GRU).
    Recurrent(SequenceModelConfig),
    /// A transformer encoder classifier over tokens, image patches (ViT) or tabular features
    /// (FT-Transformer).
    Transformer(TransformerClassifierConfig),
    /// A residual network over images of `height x width`.
    #[serde(rename = "resnet")]
    ResNet {
        /// The network (its name is `name`).
        resnet: ResNetConfig,
        /// Its name (`resnet20`, `resnet18`, ...).
        name: String,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
    },
    /// A VGG over images of `height x width` (at least 32x32).
    #[serde(rename = "vgg")]
    Vgg {
        /// The network (its name is `name`).
        vgg: VggConfig,
        /// Its name (`vgg11`, `vgg16_bn`, ...).
        name: String,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
    },
    /// A capsule network (its outputs are the class capsules' lengths).
    #[serde(rename = "capsnet")]
    CapsNet(CapsNetConfig),
}

impl NetworkConfig {
    /// The model's name.
    pub fn name(&self) -> &'static str {
        match self {
            NetworkConfig::Mlp(_) => "mlp",
            NetworkConfig::Cnn(_) => "cnn",
            NetworkConfig::Recurrent(c) => cell_name(c.rnn.cell),
            NetworkConfig::Transformer(c) => c.input.model_name(),
            NetworkConfig::ResNet { name, .. } => RESNETS
                .iter()
                .find(|n| **n == name.as_str())
                .copied()
                .unwrap_or("resnet"),
            NetworkConfig::Vgg { name, .. } => VGGS
                .iter()
                .find(|n| **n == name.as_str())
                .copied()
                .unwrap_or("vgg"),
            NetworkConfig::CapsNet(_) => "capsnet",
        }
    }

    /// Number of inputs per sample (flattened).
    pub fn d_input(&self) -> usize {
        match self {
            NetworkConfig::Mlp(c) => c.d_input,
            NetworkConfig::Cnn(c) => c.in_channels * c.height * c.width,
            NetworkConfig::Recurrent(c) => c.seq_len * c.rnn.d_input,
            NetworkConfig::Transformer(c) => c.input.d_input(),
            NetworkConfig::ResNet {
                resnet,
                height,
                width,
                ..
            } => resnet.in_channels * height * width,
            NetworkConfig::Vgg {
                vgg, height, width, ..
            } => vgg.in_channels * height * width,
            NetworkConfig::CapsNet(c) => c.in_channels * c.height * c.width,
        }
    }

    /// Number of outputs per sample.
    pub fn d_output(&self) -> usize {
        match self {
            NetworkConfig::Mlp(c) => c.d_output,
            NetworkConfig::Cnn(c) => c.n_classes,
            NetworkConfig::Recurrent(c) => c.d_output,
            NetworkConfig::Transformer(c) => c.n_classes,
            NetworkConfig::ResNet { resnet, .. } => resnet.n_classes,
            NetworkConfig::Vgg { vgg, .. } => vgg.n_classes,
            NetworkConfig::CapsNet(c) => c.n_classes,
        }
    }

    /// Builds the network.
    ///
    /// # Errors
    /// The configuration's validation errors.
    pub fn init(&self, device: &Device) -> Result<Network> {
        Ok(match self {
            NetworkConfig::Mlp(c) => Network::Mlp(c.init(device)?),
            NetworkConfig::Cnn(c) => Network::Cnn(c.init(device)?),
            NetworkConfig::Recurrent(c) => Network::Recurrent(c.init(device)?),
            NetworkConfig::Transformer(c) => Network::Transformer(c.init(device)?),
            NetworkConfig::ResNet {
                resnet,
                height,
                width,
                ..
            } => Network::ResNet(ImageResNet {
                resnet: resnet.init(device)?,
                shape: [resnet.in_channels, *height, *width],
            }),
            NetworkConfig::Vgg {
                vgg, height, width, ..
            } => {
                let net = vgg.init(device)?;
                net.check_input(*height, *width)?;
                Network::Vgg(ImageVgg {
                    vgg: net,
                    shape: [vgg.in_channels, *height, *width],
                })
            }
            NetworkConfig::CapsNet(c) => Network::CapsNet(c.init(device)?),
        })
    }

    /// Checks the configuration without building it.
    ///
    /// # Errors
    /// The configuration's validation errors.
    pub fn validate(&self) -> Result<()> {
        match self {
            NetworkConfig::Mlp(c) => c.validate(),
            NetworkConfig::Cnn(c) => c.validate(),
            NetworkConfig::Recurrent(c) => c.validate(),
            NetworkConfig::Transformer(c) => c.validate(),
            NetworkConfig::ResNet {
                resnet,
                height,
                width,
                ..
            } => {
                check_size("height", *height)?;
                check_size("width", *width)?;
                resnet.validate()
            }
            NetworkConfig::Vgg {
                vgg, height, width, ..
            } => {
                vgg.validate()?;
                vgg.check_input(*height, *width)
            }
            NetworkConfig::CapsNet(c) => c.validate(),
        }
    }
}

/// A network of any architecture.
// The variants differ in size, but a model is built once per run and never moved in a hot loop.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    /// A multi-layer perceptron.
    Mlp(Mlp),
    /// A LeNet-style CNN.
    Cnn(Cnn),
    /// A recurrent sequence model.
    Recurrent(SequenceModel),
    /// A transformer encoder classifier.
    Transformer(TransformerClassifier),
    /// A residual network.
    ResNet(ImageResNet),
    /// A VGG.
    Vgg(ImageVgg),
    /// A capsule network.
    CapsNet(CapsNet),
}

/// `prefix.` before each name.
fn prefixed<T>(prefix: &str, named: Vec<(String, T)>) -> Vec<(String, T)> {
    named
        .into_iter()
        .map(|(n, t)| (format!("{prefix}.{n}"), t))
        .collect()
}

/// A VGG reading flat rows as images.
#[derive(Module, Debug)]
pub struct ImageVgg {
    /// The network.
    pub vgg: Vgg,
    /// `[channels, height, width]` of a row.
    #[module(skip)]
    pub shape: [usize; 3],
}

/// How a model divides for transfer learning: burn-store path prefixes of its backbone's
/// stages in input order (the stem belongs to the first) and of its head. A prefix names a
/// parameter and everything under it (`layer1` covers `layer1.0.conv1.weight`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferParts {
    /// Each stage's prefixes.
    pub stages: Vec<Vec<String>>,
    /// The head's prefixes.
    pub head: Vec<String>,
}

impl TransferParts {
    /// Every stage's prefixes: the whole backbone.
    pub fn backbone(&self) -> Vec<String> {
        self.stages.concat()
    }

    /// The prefixes of the first `n` stages.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `n` is 0 or more than the stages there are.
    pub fn first_stages(&self, n: usize) -> Result<Vec<String>> {
        if n == 0 || n > self.stages.len() {
            return Err(Error::Invalid(format!(
                "cannot freeze {n} stages: this model has {} (freeze 1 to {0}, or the backbone)",
                self.stages.len()
            )));
        }
        Ok(self.stages[..n].concat())
    }

    /// The same parts inside a field: `prefix.` before every prefix.
    pub fn under(self, prefix: &str) -> Self {
        let add = |v: Vec<String>| v.into_iter().map(|p| format!("{prefix}.{p}")).collect();
        Self {
            stages: self.stages.into_iter().map(add).collect(),
            head: add(self.head),
        }
    }
}

/// A residual network reading flat rows as images.
#[derive(Module, Debug)]
pub struct ImageResNet {
    /// The network.
    pub resnet: ResNet,
    /// `[channels, height, width]` of a row.
    #[module(skip)]
    pub shape: [usize; 3],
}

impl Network {
    /// Keeps int8 copies of the linear layers of an MLP, or the convolutions (batch norms
    /// folded in) and linear layers of a CNN, ResNet or VGG (one scale per matrix, or per
    /// output channel), which inference on a device without autodiff then runs
    /// ([`strata_kernels::QuantizedLinear`], [`strata_kernels::QuantizedConv2d`]). Returns
    /// whether this network has them; other architectures keep computing in f32.
    pub fn quantize_int8(&mut self, per_output: bool) -> bool {
        match self {
            Network::Mlp(m) => m.quantize_int8(per_output),
            Network::Cnn(m) => m.quantize_int8(per_output),
            Network::ResNet(m) => m.resnet.quantize_int8(per_output),
            Network::Vgg(m) => m.vgg.quantize_int8(per_output),
            _ => return false,
        }
        true
    }

    /// The inputs of the int8 layers ([`quantize_int8`](Self::quantize_int8)) by name, to
    /// observe and calibrate (static quantisation); empty for other architectures or before
    /// quantising.
    pub fn int8_inputs_mut(&mut self) -> Vec<(String, &mut strata_kernels::Int8Input)> {
        match self {
            Network::Mlp(m) => m.int8_inputs_mut(),
            Network::Cnn(m) => m.int8_inputs_mut(),
            // Named as the weights are in the run's file.
            Network::ResNet(m) => prefixed("resnet", m.resnet.int8_inputs_mut()),
            Network::Vgg(m) => prefixed("vgg", m.vgg.int8_inputs_mut()),
            _ => Vec::new(),
        }
    }

    /// Outputs for flattened inputs.
    ///
    /// # Shapes
    /// - input: `[batch, d_input]` (images flattened row-major `C x H x W`)
    /// - output: `[batch, d_output]`
    ///
    /// # Panics
    /// When the row length does not match the configuration.
    pub fn forward_flat(&self, input: Tensor<2>) -> Tensor<2> {
        match self {
            Network::Mlp(m) => m.forward(input),
            Network::Cnn(m) => m.forward_flat(input),
            Network::Recurrent(m) => m.forward_flat(input),
            Network::Transformer(m) => m.forward_flat(input),
            Network::ResNet(m) => {
                let [c, h, w] = m.shape;
                let b = input.dims()[0];
                m.resnet.forward(input.reshape([b, c, h, w]))
            }
            Network::Vgg(m) => {
                let [c, h, w] = m.shape;
                let b = input.dims()[0];
                m.vgg.forward(input.reshape([b, c, h, w]))
            }
            Network::CapsNet(m) => m.forward_flat(input),
        }
    }

    /// The convolutional layers whose activations Grad-CAM can explain, by name, first to
    /// last: a CNN's stages `features.{i}`, a ResNet's non-empty stages `layer1`..`layer4`, a
    /// VGG's convolution and ReLU slots `features.{i}` (torchvision's positions); empty for
    /// networks without convolutions.
    pub fn conv_layers(&self) -> Vec<String> {
        match self {
            Network::Cnn(m) => (0..m.features.len())
                .map(|i| format!("features.{i}"))
                .collect(),
            Network::ResNet(m) => (0..4)
                .filter(|&i| !m.resnet.stages()[i].is_empty())
                .map(|i| format!("layer{}", i + 1))
                .collect(),
            Network::Vgg(m) => m
                .vgg
                .features
                .iter()
                .enumerate()
                .filter(|(_, s)| s.norm.is_none() && s.pool.is_none())
                .map(|(i, _)| format!("features.{i}"))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The network cut after the convolutional layer `layer` (one of
    /// [`conv_layers`](Self::conv_layers)) into the two parts Grad-CAM reads
    /// (`strata_train::grad_cam`): flat rows to the layer's activations, and those to the
    /// outputs.
    ///
    /// # Errors
    /// A network without convolutional layers, or a layer it does not have (the message lists
    /// those it has).
    #[allow(clippy::type_complexity)]
    pub fn split_at<'a>(
        &'a self,
        layer: &str,
    ) -> Result<(
        Box<dyn Fn(Tensor<2>) -> Tensor<4> + 'a>,
        Box<dyn Fn(Tensor<4>) -> Tensor<2> + 'a>,
    )> {
        let layers = self.conv_layers();
        if layers.is_empty() {
            return Err(Error::Invalid(
                "this network has no convolutional layers for Grad-CAM".into(),
            ));
        }
        if !layers.iter().any(|l| l == layer) {
            return Err(Error::Invalid(format!(
                "no convolutional layer `{layer}`; the network's layers: {}",
                layers.join(", ")
            )));
        }
        let index = |prefix: &str| {
            layer
                .strip_prefix(prefix)
                .and_then(|i| i.parse::<usize>().ok())
                .expect("a listed layer")
        };
        let images = |shape: [usize; 3], x: Tensor<2>| {
            let [c, h, w] = shape;
            let b = x.dims()[0];
            x.reshape([b, c, h, w])
        };
        Ok(match self {
            Network::Cnn(m) => {
                let i = index("features.");
                let shape = m.input_shape;
                (
                    Box::new(move |x| m.forward_to(images(shape, x), i)),
                    Box::new(move |a| m.forward_from(a, i)),
                )
            }
            Network::ResNet(m) => {
                let i = index("layer") - 1;
                (
                    Box::new(move |x| m.resnet.forward_to(images(m.shape, x), i)),
                    Box::new(move |a| m.resnet.forward_from(a, i)),
                )
            }
            Network::Vgg(m) => {
                let i = index("features.");
                (
                    Box::new(move |x| m.vgg.forward_to(images(m.shape, x), i)),
                    Box::new(move |a| m.vgg.forward_from(a, i)),
                )
            }
            _ => unreachable!("only convolutional networks list layers"),
        })
    }

    /// The penultimate features of flat rows, what the output layer reads: an MLP's last
    /// hidden layer, a CNN's hidden dense layer (its flattened convolutional features when it
    /// has none). A GAN's samples are measured in these (Frechet distance, precision and
    /// recall) by a classifier trained on the same data.
    ///
    /// # Shapes
    /// - input: `[batch, d_input]`
    /// - output: `[batch, d_features]`
    ///
    /// # Errors
    /// Other architectures, whose features Strata does not expose.
    pub fn features_flat(&self, input: Tensor<2>) -> Result<Tensor<2>> {
        match self {
            Network::Mlp(m) => Ok(m.hidden.iter().fold(input, |x, block| block.forward(x))),
            Network::Cnn(m) => Ok(m.features_flat(input)),
            other => Err(Error::Invalid(format!(
                "features are exposed for mlp and cnn classifiers, not {}",
                match other {
                    Network::Recurrent(_) => "a recurrent model",
                    Network::Transformer(_) => "a transformer",
                    Network::ResNet(_) => "a ResNet",
                    Network::CapsNet(_) => "a capsule network",
                    _ => "a VGG",
                }
            ))),
        }
    }

    /// The backbone's stages and the head, for freezing and partial loading (names as
    /// burn-store gives them for this network: `ResNet.resnet.layer1`); `None` for
    /// architectures without that split.
    pub fn transfer_parts(&self) -> Option<TransferParts> {
        match self {
            Network::ResNet(m) => Some(m.resnet.transfer_parts().under("ResNet.resnet")),
            Network::Vgg(m) => Some(m.vgg.transfer_parts().under("Vgg.vgg")),
            _ => None,
        }
    }
}

/// The name users give a recurrent cell on the command line (`rnn` is the tanh RNN).
pub fn cell_name(cell: strata_layers::CellKind) -> &'static str {
    use strata_layers::CellKind;
    match cell {
        CellKind::RnnTanh => "rnn",
        CellKind::RnnRelu => "rnn-relu",
        CellKind::Lstm => "lstm",
        CellKind::Gru => "gru",
    }
}

/// Checks that `input_len` features per sample fit the configuration.
///
/// # Errors
/// [`Error::Invalid`] naming both sizes.
pub fn check_input(config: &NetworkConfig, input_len: usize) -> Result<()> {
    if config.d_input() != input_len {
        return Err(Error::Invalid(format!(
            "{} expects {} features per sample, data has {input_len}",
            config.name(),
            config.d_input()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::resnet::Stem;

    fn networks(device: &Device) -> Vec<(Network, usize)> {
        let cnn = NetworkConfig::Cnn(CnnConfig::new(1, 8, 8, 3));
        let resnet = NetworkConfig::ResNet {
            resnet: ResNetConfig::new(1, 3, vec![1, 1], vec![4, 8]).with_stem(Stem::Cifar),
            name: "resnet-tiny".into(),
            height: 8,
            width: 8,
        };
        let vgg = NetworkConfig::Vgg {
            vgg: VggConfig::new(1, 3, vec![4, 0, 8, 0])
                .with_batch_norm(true)
                .with_d_hidden(8),
            name: "vgg-tiny".into(),
            height: 32,
            width: 32,
        };
        [cnn, resnet, vgg]
            .into_iter()
            .map(|c| (c.init(device).unwrap(), c.d_input()))
            .collect()
    }

    /// Cut at any of its convolutional layers, a network's two parts compose to its forward
    /// pass.
    #[test]
    fn split_parts_compose_to_the_forward_pass() {
        let device = Device::flex();
        device.seed(3);
        for (net, d) in networks(&device) {
            let x = Tensor::<2>::random([2, d], Distribution::Uniform(0.0, 1.0), &device);
            let want = strata_tensor::convert::to_vec(net.forward_flat(x.clone()));
            let layers = net.conv_layers();
            assert!(!layers.is_empty());
            for layer in &layers {
                let (head, tail) = net.split_at(layer).unwrap();
                let a = head(x.clone());
                assert_eq!(a.dims()[0], 2, "{layer}");
                let got = strata_tensor::convert::to_vec(tail(a));
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{layer}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_layers_are_named_with_the_network_s_own() {
        let device = Device::flex();
        let (cnn, _) = networks(&device).remove(0);
        assert_eq!(cnn.conv_layers(), ["features.0", "features.1"]);
        let e = cnn.split_at("conv9").err().unwrap().to_string();
        assert!(
            e.contains("`conv9`") && e.contains("features.0, features.1"),
            "{e}"
        );
        let mlp = NetworkConfig::Mlp(MlpConfig::new(4, 2))
            .init(&device)
            .unwrap();
        assert!(mlp.conv_layers().is_empty());
        let e = mlp.split_at("features.0").err().unwrap().to_string();
        assert!(e.contains("no convolutional layers"), "{e}");
    }
}
