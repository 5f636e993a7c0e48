//! The error type of `strata-metrics`.

/// Errors from metric computations on malformed inputs.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// Two inputs that must have one entry per sample have different lengths.
    #[error("length mismatch: {what} has {got} entries, expected {expected}")]
    LengthMismatch {
        /// Which input is off.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The expected length.
        expected: usize,
    },
    /// A metric over no samples.
    #[error("no samples: {0} needs at least one")]
    Empty(&'static str),
    /// A class index not below the number of classes.
    #[error("class index {index} out of range for {n_classes} classes")]
    ClassOutOfRange {
        /// The offending index.
        index: usize,
        /// The number of classes.
        n_classes: usize,
    },
    /// An invalid argument (e.g. `k = 0` for top-k).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn same_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            got,
            expected,
        })
    }
}
