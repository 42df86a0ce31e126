//! The values a config key may take: a number or a string, σ_w (a number
//! or an offset from σ_w^opt), an integer axis (one value, a list, a range).

use crate::error::{Error, Result};
use crate::setup::parse_int_spec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumOrStr {
    /// A plain number.
    Num(f64),
    /// A string such as "opt+0.1" or "2..8".
    Str(String),
}

/// σ_w as a config gives it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum SigmaW {
    /// A fixed value.
    Value(f64),
    /// σ_w^opt plus an offset.
    Opt(f64),
}

impl SigmaW {
    /// Parses a number, "opt", "opt+x" or "opt-x"; `key` names the config key in errors.
    pub fn parse(key: &str, v: &NumOrStr) -> Result<Self> {
        let bad = |s: &str| {
            Error::invalid(
                key,
                format!("\"{s}\""),
                "expected a number, \"opt\", or \"opt+x\" / \"opt-x\" (e.g. \"opt+0.1\")",
            )
        };
        match v {
            NumOrStr::Num(x) => Ok(SigmaW::Value(*x)),
            NumOrStr::Str(s) => {
                let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                let Some(rest) = t.strip_prefix("opt") else {
                    return Err(bad(s));
                };
                if rest.is_empty() {
                    return Ok(SigmaW::Opt(0.0));
                }
                if !(rest.starts_with('+') || rest.starts_with('-')) {
                    return Err(bad(s));
                }
                rest.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(SigmaW::Opt)
                    .ok_or_else(|| bad(s))
            }
        }
    }

    /// A label: "0.95", "opt", "opt+0.1".
    pub fn label(&self) -> String {
        match self {
            SigmaW::Value(x) => format!("{x}"),
            SigmaW::Opt(o) if *o == 0.0 => "opt".into(),
            SigmaW::Opt(o) => format!("opt{o:+}"),
        }
    }
}

/// An integer axis: one value, a list, or an inclusive range "a..b".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntAxis {
    /// One value.
    One(usize),
    /// A list.
    List(Vec<usize>),
    /// A range or comma list as a string, e.g. "2..8" or "3..6,10".
    Spec(String),
}

impl IntAxis {
    /// The values; `key` names the config key in errors.
    pub(crate) fn values(&self, key: &str) -> Result<Vec<usize>> {
        match self {
            IntAxis::One(v) => Ok(vec![*v]),
            IntAxis::List(v) if v.is_empty() => Err(Error::invalid(
                key,
                "[]",
                "an empty list: give at least one value",
            )),
            IntAxis::List(v) => Ok(v.clone()),
            IntAxis::Spec(s) => {
                let out = parse_int_spec(s)
                    .map_err(|why| Error::invalid(key, format!("\"{s}\""), &why))?;
                Ok(out)
            }
        }
    }
}
