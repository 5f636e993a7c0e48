//! The error type of `strata-data`.

use std::path::PathBuf;

/// Errors from loading, splitting or batching data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A CSV file is malformed (a row of the wrong length, a non-numeric value, ...).
    #[error("{path}: line {line}: {message}")]
    Csv {
        /// The file (or `<memory>`).
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The label column named or indexed does not exist.
    #[error("label column {0} not found; the file has columns: {1}")]
    NoSuchColumn(String, String),
    /// An IDX file is malformed.
    #[error("{path}: not a valid IDX file: {message}")]
    Idx {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Fashion-MNIST is not where we looked.
    #[error(
        "Fashion-MNIST not found in {0}: install Debian's `dataset-fashion-mnist` package or give the directory holding train-images-idx3-ubyte.gz"
    )]
    FashionMnistMissing(PathBuf),
    /// The data set is too small for the split or the folds asked for.
    #[error("data set too small: {0}")]
    TooSmall(String),
    /// An argument out of range (fractions, k, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A data-set spec that names nothing known (the message lists what is).
    #[error("{0}")]
    Spec(String),
    /// Two data sets that must agree do not.
    #[error("mismatch: {0}")]
    Mismatch(String),
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
