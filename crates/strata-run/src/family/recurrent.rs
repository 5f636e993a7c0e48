//! Recurrent networks (Elman RNN with tanh or ReLU, LSTM, GRU): classifiers of rows or images
//! read row by row, one-step-ahead forecasters of a series, character language models.

use strata_arch::{
    CellKind, CharLmConfig, NetworkConfig, RecurrentConfig, SequenceHead, SequenceModelConfig,
};
use strata_optim::{ScheduleConfig, ScheduleKind};
use strata_train::{EarlyStopping, Monitor};

use super::Family;
use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::{Error, Result};
use crate::language::LmConfig;

/// `rnn`, `rnn-relu`, `lstm`, `gru`.
pub struct Recurrent;

/// The model names and their cells.
const CELLS: [(&str, CellKind); 4] = [
    ("rnn", CellKind::RnnTanh),
    ("rnn-relu", CellKind::RnnRelu),
    ("lstm", CellKind::Lstm),
    ("gru", CellKind::Gru),
];

impl Family for Recurrent {
    fn name(&self) -> &'static str {
        "recurrent"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &[
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
        ]
    }

    fn has(&self, model: &str) -> bool {
        CELLS.iter().any(|(name, _)| *name == model)
    }

    fn default_dataset(&self, _model: &str) -> &'static str {
        "airline"
    }

    fn reads_text(&self, _model: &str) -> bool {
        true
    }

    /// Gradient clipping on, as users of RNNs expect; Adam; sizes per data set.
    fn recipe(&self, _model: &str, dataset: &str, c: &mut RunConfig) {
        c.optimizer.clip = Some(strata_optim::Clipping::Norm(1.0));
        c.network.dropout = 0.0;
        c.network.batch_norm = false;
        c.fit.batch_size = 16;
        c.fit.epochs = 300;
        c.fit.early_stopping = Some(EarlyStopping {
            monitor: Monitor::ValidLoss,
            patience: 40,
            min_delta: 0.0,
        });
        c.optimizer.lr = 0.005;
        c.schedule = ScheduleConfig {
            kind: ScheduleKind::Constant,
            warmup_epochs: 0,
        };
        let base = dataset.split(':').next().unwrap_or(dataset);
        match base {
            "airline" | "co2" => {
                c.network.hidden = vec![64];
                c.network.seq_len = 24;
            }
            "sunspots" => {
                c.network.hidden = vec![32];
                c.network.seq_len = 22;
            }
            "shakespeare" | "text" => {
                c.network.hidden = vec![256];
                c.network.layers = 2;
                c.network.seq_len = 100;
                c.network.dropout = 0.1;
                c.fit.batch_size = 32;
                c.fit.epochs = 50;
                c.fit.early_stopping = None;
                c.optimizer.lr = 0.003;
                c.optimizer.clip = Some(strata_optim::Clipping::Norm(5.0));
                c.steps_per_epoch = Some(100);
            }
            _ => {
                // Classification of rows (images as sequences of rows, CSV rows).
                c.network.hidden = vec![128];
                c.fit.batch_size = 64;
                c.fit.epochs = 10;
                c.fit.early_stopping = Some(EarlyStopping {
                    monitor: Monitor::ValidLoss,
                    patience: 3,
                    min_delta: 0.0,
                });
                c.optimizer.lr = 0.002;
                c.schedule = ScheduleConfig {
                    kind: ScheduleKind::Cosine { min_lr: 0.0 },
                    warmup_epochs: 0,
                };
            }
        }
    }

    fn warnings(&self, config: &RunConfig) -> Vec<String> {
        if config.network.seq_len == 0 && config.dataset.starts_with("csv:") {
            vec![
                "note: reading each CSV row as one feature per step (set --seq-len to group features)"
                    .into(),
            ]
        } else {
            Vec::new()
        }
    }

    fn validate(&self, config: &RunConfig) -> Result<()> {
        if config.network.layers == 0 {
            return Err(Error::Usage("--layers must be >= 1".into()));
        }
        Ok(())
    }

    fn network(&self, config: &RunConfig, pre: &Preprocess, n_out: usize) -> Result<NetworkConfig> {
        let (seq_len, d_input) = sequence_shape(config, pre)?;
        let head = if pre.series.is_some() {
            SequenceHead::Forecast { residual: true }
        } else {
            SequenceHead::Classify {
                pooling: config.network.sequence_pooling,
            }
        };
        Ok(NetworkConfig::Recurrent(
            SequenceModelConfig::new(recurrent_config(config, d_input)?, seq_len, n_out, head)
                .with_dropout(config.network.dropout),
        ))
    }

    fn language_model(&self, config: &RunConfig, vocab: usize) -> Result<LmConfig> {
        let c = CharLmConfig::new(vocab, recurrent_config(config, config.network.embed)?)
            .with_dropout(config.network.dropout);
        c.validate()?;
        Ok(LmConfig::Recurrent(c))
    }
}

/// The cell a recurrent model name stands for.
///
/// # Errors
/// A name that is not a recurrent model's.
pub fn cell_kind(model: &str) -> Result<CellKind> {
    CELLS
        .iter()
        .find(|(name, _)| *name == model)
        .map(|(_, cell)| *cell)
        .ok_or_else(|| {
            Error::Usage(format!(
                "`{model}` is not a recurrent model (rnn, rnn-relu, lstm, gru)"
            ))
        })
}

/// The recurrent stack a run asks for, reading `d_input` features per step.
///
/// # Errors
/// A model that is not recurrent, or no hidden size.
pub fn recurrent_config(config: &RunConfig, d_input: usize) -> Result<RecurrentConfig> {
    let n = &config.network;
    let d_hidden = *n
        .hidden
        .first()
        .ok_or_else(|| Error::Usage("a recurrent model needs a hidden size (--hidden N)".into()))?;
    Ok(
        RecurrentConfig::new(cell_kind(&config.model)?, d_input, d_hidden)
            .with_n_layers(n.layers)
            .with_bidirectional(n.bidirectional)
            .with_dropout(if n.layers > 1 { n.dropout } else { 0.0 }),
    )
}

/// Steps per sample and features per step of flat rows: a series window is one value per
/// step, an image one row per step, other rows `--seq-len` equal steps.
fn sequence_shape(config: &RunConfig, pre: &Preprocess) -> Result<(usize, usize)> {
    if let Some(s) = &pre.series {
        return Ok((s.window, 1));
    }
    if let Some([c, h, w]) = pre.image_shape {
        if c != 1 {
            return Err(Error::Usage(format!(
                "recurrent models read images row by row and need one channel, got {c}"
            )));
        }
        return Ok((h, w));
    }
    let steps = match config.network.seq_len {
        0 => pre.n_features,
        s => s,
    };
    if !pre.n_features.is_multiple_of(steps) {
        return Err(Error::Usage(format!(
            "--seq-len {steps} does not divide the {} features per sample",
            pre.n_features
        )));
    }
    Ok((steps, pre.n_features / steps))
}
