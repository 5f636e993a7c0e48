//! Activation names as users write them (`relu`, `tanh`, ...), mapped to burn's activations.

use std::fmt;
use std::str::FromStr;

use burn::nn::LeakyReluConfig;
use burn::nn::activation::{Activation, ActivationConfig};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// An element-wise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    /// `max(0, x)` (default).
    #[default]
    Relu,
    /// `max(0.01 x, x)`.
    LeakyRelu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// Gaussian error linear unit.
    Gelu,
    /// Scaled exponential linear unit.
    Selu,
    /// Exponential linear unit.
    Elu,
}

impl ActivationKind {
    /// Every activation, in the order `strata list` shows them.
    pub const ALL: [ActivationKind; 7] = [
        ActivationKind::Relu,
        ActivationKind::LeakyRelu,
        ActivationKind::Tanh,
        ActivationKind::Sigmoid,
        ActivationKind::Gelu,
        ActivationKind::Selu,
        ActivationKind::Elu,
    ];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ActivationKind::Relu => "relu",
            ActivationKind::LeakyRelu => "leaky_relu",
            ActivationKind::Tanh => "tanh",
            ActivationKind::Sigmoid => "sigmoid",
            ActivationKind::Gelu => "gelu",
            ActivationKind::Selu => "selu",
            ActivationKind::Elu => "elu",
        }
    }

    /// burn's configuration for this activation.
    pub fn config(self) -> ActivationConfig {
        match self {
            ActivationKind::Relu => ActivationConfig::Relu,
            ActivationKind::LeakyRelu => ActivationConfig::LeakyRelu(LeakyReluConfig::new()),
            ActivationKind::Tanh => ActivationConfig::Tanh,
            ActivationKind::Sigmoid => ActivationConfig::Sigmoid,
            ActivationKind::Gelu => ActivationConfig::Gelu,
            ActivationKind::Selu => ActivationConfig::Selu,
            ActivationKind::Elu => ActivationConfig::Elu(burn::nn::EluConfig::new()),
        }
    }

    /// burn's activation module.
    pub fn init(self, device: &Device) -> Activation {
        self.config().init(device)
    }
}

impl fmt::Display for ActivationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ActivationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        ActivationKind::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ActivationKind::ALL.iter().map(|a| a.name()).collect();
                format!(
                    "unknown activation `{s}`: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tensor;

    #[test]
    fn names_parse_and_apply() {
        for a in ActivationKind::ALL {
            assert_eq!(a.name().parse::<ActivationKind>().unwrap(), a);
        }
        assert!("softmax2".parse::<ActivationKind>().is_err());
        let d = Device::flex();
        let x = Tensor::<1>::from_floats([-1.0, 2.0], &d);
        let y = strata_tensor::convert::to_vec(ActivationKind::Relu.init(&d).forward(x));
        assert_eq!(y, vec![0.0, 2.0]);
    }
}
