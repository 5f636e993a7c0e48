//! The error type of `strata-tensor`.

/// Errors from choosing a backend or a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The name does not match any backend Strata knows.
    #[error("unknown backend `{0}`: expected one of flex, ndarray, wgpu")]
    UnknownBackend(String),
    /// The backend is compiled in but cannot run on this machine.
    #[error("backend `{backend}` is not usable here: {reason}")]
    Unusable {
        /// The backend that was asked for.
        backend: String,
        /// Why it cannot run (e.g. wgpu found no adapter).
        reason: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
