//! The error type of `strata-train`.

use std::path::PathBuf;

/// Errors from fitting, evaluating or checkpointing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The loss became NaN or infinite; the last good checkpoint is kept on disk.
    #[error(
        "training diverged at epoch {epoch}, batch {batch}: loss is {loss}; the last good checkpoint (epoch {last_good}) is kept — try a lower learning rate or gradient clipping"
    )]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch within the epoch.
        batch: usize,
        /// The non-finite loss value.
        loss: f32,
        /// The last epoch with a checkpoint (0 = none).
        last_good: usize,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint could not be read, or does not match the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Pretrained weights could not be read, or do not fit the model.
    #[error("weights {path}: {message}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the keys concerned.
        message: String,
    },
    /// A setting out of range.
    #[error("invalid training setting: {0}")]
    Invalid(String),
    /// The loss rejected the outputs or targets.
    #[error(transparent)]
    Loss(#[from] strata_loss::Error),
    /// An optimizer or schedule setting is invalid.
    #[error(transparent)]
    Optim(#[from] strata_optim::Error),
    /// A metric could not be computed.
    #[error(transparent)]
    Metrics(#[from] strata_metrics::Error),
    /// An [`Objective`](crate::Objective) could not compute a loss or a metric.
    #[error("{0}")]
    Objective(String),
    /// A data operation failed.
    #[error(transparent)]
    Data(#[from] strata_data::Error),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
