//! The error type of `strata-layers`.

/// Errors from loading weights into layers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PyTorch checkpoint that cannot be read, or does not fit the module.
    #[error("PyTorch weights {file}: {message}")]
    Torch {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A graph that layers cannot read (an edge to a node that does not exist, ...).
    #[error("graph: {0}")]
    Graph(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
