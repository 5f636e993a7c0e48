//! The error type of `strata-run`: bad settings, files, and the errors of the crates below.

use std::path::PathBuf;

/// Anything that can stop a run, an evaluation or a prediction.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad settings (a run config's values, or a model and data that do not go together).
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A config file that does not parse.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// From the backend layer.
    #[error(transparent)]
    Tensor(#[from] strata_tensor::Error),
    /// From the data layer.
    #[error(transparent)]
    Data(#[from] strata_data::Error),
    /// From an architecture config.
    #[error(transparent)]
    Arch(#[from] strata_arch::Error),
    /// From a loss config.
    #[error(transparent)]
    Loss(#[from] strata_loss::Error),
    /// From `strata-layers` (a graph the layers cannot read).
    #[error(transparent)]
    Layers(#[from] strata_layers::Error),
    /// From an optimizer config.
    #[error(transparent)]
    Optim(#[from] strata_optim::Error),
    /// From training or evaluation.
    #[error(transparent)]
    Train(#[from] strata_train::Error),
    /// From metrics.
    #[error(transparent)]
    Metrics(#[from] strata_metrics::Error),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A failed read or write of `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
