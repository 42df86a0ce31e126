//! The library's error type: every message says what was wrong and what
//! would be right.

/// Errors raised by the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter outside its domain.
    #[error("invalid {name} = {value}: {expected}")]
    Invalid {
        /// The parameter's name as the user knows it.
        name: String,
        /// The offending value, as given.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A config file that does not parse (the message gives line and key).
    #[error("{0}")]
    Config(String),
    /// A map has no fixed point of the kind asked for.
    #[error("no fixed point: {0}")]
    NoFixedPoint(String),
    /// A computation that did not converge or produced a non-finite value.
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// A problem with the GPU device or adapter.
    #[error("GPU: {0}")]
    Gpu(String),
    /// The run was interrupted (Ctrl-C); finished work was kept.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(name: &str, value: impl std::fmt::Display, expected: &str) -> Self {
        Error::Invalid {
            name: name.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
