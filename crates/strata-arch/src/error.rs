//! The error type of `strata-arch`.

/// Errors from invalid architecture configurations.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// A size or hyper-parameter out of range; the message names it.
    #[error("invalid model configuration: {0}")]
    Invalid(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn check_size(name: &str, v: usize) -> Result<()> {
    if v == 0 {
        Err(Error::Invalid(format!("{name} must be >= 1, got 0")))
    } else {
        Ok(())
    }
}

pub(crate) fn check_dropout(p: f64) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "dropout must be in [0, 1), got {p}"
        )))
    }
}
