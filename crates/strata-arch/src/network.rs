//! A model chosen at run time by name, with one entry point over flat feature rows.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::cnn::{Cnn, CnnConfig};
use crate::error::{Error, Result};
use crate::mlp::{Mlp, MlpConfig};

/// The architectures a run can name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum NetworkConfig {
    /// A multi-layer perceptron.
    Mlp(MlpConfig),
    /// A LeNet-style CNN.
    Cnn(CnnConfig),
}

/// The names [`NetworkConfig`] accepts.
pub const MODELS: [(&str, &str); 2] = [
    (
        "mlp",
        "feed-forward network: hidden layers, activation, dropout, batch norm",
    ),
    (
        "cnn",
        "LeNet-style CNN: conv stages (batch norm, pooling), dense head; needs image data",
    ),
];

impl NetworkConfig {
    /// The model's name.
    pub fn name(&self) -> &'static str {
        match self {
            NetworkConfig::Mlp(_) => "mlp",
            NetworkConfig::Cnn(_) => "cnn",
        }
    }

    /// Number of inputs per sample (flattened).
    pub fn d_input(&self) -> usize {
        match self {
            NetworkConfig::Mlp(c) => c.d_input,
            NetworkConfig::Cnn(c) => c.in_channels * c.height * c.width,
        }
    }

    /// Number of outputs per sample.
    pub fn d_output(&self) -> usize {
        match self {
            NetworkConfig::Mlp(c) => c.d_output,
            NetworkConfig::Cnn(c) => c.n_classes,
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
        }
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
