//! The multilayer perceptron: any rows of numbers, and windows of a series.

use strata_arch::{MlpConfig, NetworkConfig};

use super::Family;
use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::Result;

/// `mlp`.
pub struct Mlp;

impl Family for Mlp {
    fn name(&self) -> &'static str {
        "mlp"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "mlp",
            "feed-forward network: hidden layers, activation, dropout, batch norm",
        )]
    }

    fn has(&self, model: &str) -> bool {
        model == "mlp"
    }

    fn network(&self, config: &RunConfig, pre: &Preprocess, n_out: usize) -> Result<NetworkConfig> {
        let n = &config.network;
        Ok(NetworkConfig::Mlp(
            MlpConfig::new(pre.n_features, n_out)
                .with_d_hidden(n.hidden.clone())
                .with_activation(n.activation)
                .with_dropout(n.dropout)
                .with_batch_norm(n.batch_norm),
        ))
    }
}
