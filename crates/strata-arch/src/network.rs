//! A model chosen at run time by name, with one entry point over flat feature rows.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::cnn::{Cnn, CnnConfig};
use crate::error::{Error, Result, check_size};
use crate::mlp::{Mlp, MlpConfig};
use crate::recurrent::{SequenceModel, SequenceModelConfig};
use crate::resnet::{RESNETS, ResNet, ResNetConfig};
use crate::transformer::{TransformerClassifier, TransformerClassifierConfig};

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
}

/// The names [`NetworkConfig`] accepts.
pub const MODELS: [(&str, &str); 11] = [
    (
        "mlp",
        "feed-forward network: hidden layers, activation, dropout, batch norm",
    ),
    (
        "cnn",
        "LeNet-style CNN: conv stages (batch norm, pooling), dense head; needs image data",
    ),
    (
        "rnn",
        "Elman RNN (tanh): classifier, forecaster or character LM; stacked, bidirectional",
    ),
    ("rnn-relu", "Elman RNN with ReLU: as rnn"),
    (
        "lstm",
        "LSTM: classifier, forecaster or character LM; stacked, bidirectional",
    ),
    (
        "gru",
        "GRU: classifier, forecaster or character LM; stacked, bidirectional",
    ),
    (
        "transformer-lm",
        "decoder-only transformer character LM (GPT-style), key-value cache for generation",
    ),
    (
        "vit",
        "Vision Transformer: image patches, class token, encoder layers; needs image data",
    ),
    (
        "tab-transformer",
        "FT-Transformer for tables: a token per numeric feature and per category; adult, table:PATH",
    ),
    (
        "seq2seq",
        "encoder-decoder transformer, greedy and beam-search decoding; reverse, sort, copy",
    ),
    (
        "resnet20|32|56|18|34|50|101",
        "ResNet: CIFAR-style (20/32/56) or torchvision's (18/34/50/101), batch norm; image data",
    ),
];

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
