//! The LeNet-style convolutional network: images.

use strata_arch::{CnnConfig, NetworkConfig};

use super::Family;
use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::{Error, Result};

/// `cnn`.
pub struct Cnn;

impl Family for Cnn {
    fn name(&self) -> &'static str {
        "cnn"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "cnn",
            "LeNet-style CNN: conv stages (batch norm, pooling), dense head; needs image data",
        )]
    }

    fn has(&self, model: &str) -> bool {
        model == "cnn"
    }

    /// Dropout 0.25 and batch norm (tuned on the digits).
    fn recipe(&self, _model: &str, _dataset: &str, c: &mut RunConfig) {
        c.network.dropout = 0.25;
        c.network.batch_norm = true;
    }

    fn check_series(&self, config: &RunConfig) -> Result<()> {
        Err(Error::Usage(format!(
            "model cnn needs images; forecast `{}` with rnn, lstm, gru or mlp",
            config.dataset
        )))
    }

    fn network(&self, config: &RunConfig, pre: &Preprocess, n_out: usize) -> Result<NetworkConfig> {
        let n = &config.network;
        let [c, h, w] = pre.image_shape.ok_or_else(|| {
            Error::Usage(format!(
                "model cnn needs image data (digits, fashion-mnist); `{}` is tabular: use --model mlp",
                config.dataset
            ))
        })?;
        Ok(NetworkConfig::Cnn(
            CnnConfig::new(c, h, w, n_out)
                .with_channels(n.channels.clone())
                .with_kernel_size(n.kernel_size)
                .with_pooling(n.pooling)
                .with_d_hidden(n.d_hidden)
                .with_activation(n.activation)
                .with_dropout(n.dropout)
                .with_batch_norm(n.batch_norm),
        ))
    }
}
