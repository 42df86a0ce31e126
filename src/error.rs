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
    /// A run or computation that would need more memory, disk or points than
    /// allowed; the message gives both numbers.
    #[error("{0}")]
    TooLarge(String),
    /// A results folder that cannot be written, read or resumed.
    #[error("{0}")]
    Folder(String),
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

/// A number as a user would write it: the shortest form that reads back to
/// the same value, in scientific notation when that is shorter (so 1e300
/// is not printed with 300 digits), and `inf`/`-inf`/`NaN` spelled out.
pub fn fmt_value(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let plain = format!("{x}");
    let sci = format!("{x:e}");
    if sci.len() < plain.len() {
        sci
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_value;

    #[test]
    fn values_print_short_and_exact() {
        assert_eq!(fmt_value(1e308), "1e308");
        assert_eq!(fmt_value(1e-300), "1e-300");
        assert_eq!(fmt_value(0.5), "0.5");
        assert_eq!(fmt_value(f64::INFINITY), "inf");
        for x in [1e308, 1e-300, 0.1, 123456.789, 5e-324] {
            assert_eq!(fmt_value(x).parse::<f64>().unwrap(), x);
        }
    }
}
