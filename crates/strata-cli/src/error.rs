//! The CLI's error type: every failure becomes one line on standard error and exit code 1.

use std::path::PathBuf;

/// Anything that can end a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or config values.
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
    Tensor(#[from] strata::tensor::Error),
    /// From the data layer.
    #[error(transparent)]
    Data(#[from] strata::data::Error),
    /// From an architecture config.
    #[error(transparent)]
    Arch(#[from] strata::arch::Error),
    /// From a loss config.
    #[error(transparent)]
    Loss(#[from] strata::loss::Error),
    /// From an optimizer config.
    #[error(transparent)]
    Optim(#[from] strata::optim::Error),
    /// From training or evaluation.
    #[error(transparent)]
    Train(#[from] strata::train::Error),
    /// From metrics.
    #[error(transparent)]
    Metrics(#[from] strata::metrics::Error),
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
