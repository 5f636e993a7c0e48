//! The error type of `strata-optim`.

/// Errors from invalid optimizer or schedule settings.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// A hyper-parameter out of range; the message names it and the allowed range.
    #[error("invalid optimizer setting: {0}")]
    Invalid(String),
    /// An unknown optimizer name.
    #[error("unknown optimizer `{0}`: expected sgd, adam, adamw or rmsprop")]
    UnknownOptimizer(String),
    /// An unknown schedule name.
    #[error("unknown schedule `{0}`: expected constant, step, cosine or plateau")]
    UnknownSchedule(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
