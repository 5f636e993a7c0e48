//! The error type of `strata-loss`.

/// Errors from building or applying a loss.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// A hyper-parameter out of range.
    #[error("invalid loss configuration: {0}")]
    Invalid(String),
    /// The loss does not fit the targets (e.g. cross-entropy on real values).
    #[error("loss `{loss}` cannot be used with {targets} targets")]
    WrongTargets {
        /// The loss.
        loss: String,
        /// The kind of targets given.
        targets: &'static str,
    },
    /// Outputs and targets disagree in shape.
    #[error("shape mismatch: outputs {outputs:?}, targets {targets:?}")]
    Shape {
        /// Output shape.
        outputs: Vec<usize>,
        /// Target shape.
        targets: Vec<usize>,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
