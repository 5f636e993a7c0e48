//! The settings of a training run: epochs, batch size, seed, early stopping, sampling, time
//! budget (serde, so that a run's `config.toml` holds them).

use serde::{Deserialize, Serialize};
use strata_data::Sampling;

use crate::error::{Error, Result};

/// What early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation loss (lower is better).
    #[default]
    ValidLoss,
    /// Validation accuracy (higher is better), or RMSE for regression (lower is better).
    ValidMetric,
}

/// Early stopping: stop when the monitored value has not improved by `min_delta` for
/// `patience` epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// What to watch.
    #[serde(default)]
    pub monitor: Monitor,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// Settings of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// Number of epochs.
    pub epochs: usize,
    /// Samples per training step.
    pub batch_size: usize,
    /// Seed of weight initialisation, data order and dropout.
    pub seed: u64,
    /// Optional early stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// Shuffled or class-balanced epochs.
    #[serde(default)]
    pub sampling: Sampling,
    /// Stop cleanly after the epoch in which this many seconds of training have passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<f64>,
    /// Return the weights of the best epoch (by the monitored value) rather than the last.
    #[serde(default = "yes")]
    pub restore_best: bool,
    /// Show a progress bar and one line per epoch on standard error.
    #[serde(default = "yes", skip_serializing)]
    pub progress: bool,
}

fn yes() -> bool {
    true
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            seed: 42,
            early_stopping: None,
            sampling: Sampling::Shuffle,
            max_seconds: None,
            restore_best: true,
            progress: true,
        }
    }
}

impl FitConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// Zero epochs or batch size, a non-positive time budget.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::Invalid("epochs must be >= 1, got 0".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Invalid("batch size must be >= 1, got 0".into()));
        }
        if let Some(s) = self.max_seconds
            && (s.is_nan() || s <= 0.0)
        {
            return Err(Error::Invalid(format!("max seconds must be > 0, got {s}")));
        }
        Ok(())
    }
}
