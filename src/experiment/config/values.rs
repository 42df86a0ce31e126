//! The values a config key may take: a number or a string, σ_w (a number
//! or an offset from σ_w^opt), an integer axis (one value, a list, a range);
//! and the checks that keys of several sections share.

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
            IntAxis::List(v) => no_repeats(key, v.clone()),
            IntAxis::Spec(s) => {
                let out = parse_int_spec(s)
                    .map_err(|why| Error::invalid(key, format!("\"{s}\""), &why))?;
                no_repeats(key, out)
            }
        }
    }
}

/// `v` when no value repeats: a repeated value would run the same point
/// twice (same network, same seed) and count it twice in every fit.
fn no_repeats(key: &str, v: Vec<usize>) -> Result<Vec<usize>> {
    let mut seen = std::collections::BTreeSet::new();
    match v.iter().find(|x| !seen.insert(**x)) {
        Some(x) => Err(Error::invalid(
            key,
            x,
            "a value listed twice: each value gives one point of the sweep; remove the repeat",
        )),
        None => Ok(v),
    }
}

/// `v` if finite and > 0.
pub(crate) fn positive(key: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::invalid(key, v, "a finite number > 0"))
    }
}

/// A key the config must give: its value, else an error saying `what` to give.
pub(crate) fn given<'a, T>(key: &str, v: &'a Option<T>, what: &str) -> Result<&'a T> {
    v.as_ref()
        .ok_or_else(|| Error::invalid(key, "(missing)", what))
}

/// At least one value (else an error saying `empty`), each finite and > 0.
pub(crate) fn positive_list(key: &str, v: &[f64], empty: &str) -> Result<()> {
    if v.is_empty() {
        return Err(Error::invalid(key, "[]", empty));
    }
    for &x in v {
        positive(key, x)?;
    }
    Ok(())
}

/// The values of the integer axis `ax` of `key`, each in `lo..=hi` (else an
/// error saying `range`).
pub(crate) fn ints_in(
    key: &str,
    ax: &IntAxis,
    (lo, hi): (usize, usize),
    range: &str,
) -> Result<Vec<usize>> {
    let v = int_values(key, ax)?;
    if let Some(x) = v.iter().find(|x| **x < lo || **x > hi) {
        return Err(Error::invalid(key, x, range));
    }
    Ok(v)
}

/// The values of the integer axis `ax` of `key`: at least one (the
/// `[training]` wording of [`IntAxis::values`]).
pub(crate) fn int_values(key: &str, ax: &IntAxis) -> Result<Vec<usize>> {
    let v = match ax {
        IntAxis::One(v) => vec![*v],
        IntAxis::List(v) => v.clone(),
        IntAxis::Spec(s) => crate::setup::parse_int_spec(s)
            .map_err(|why| Error::invalid(key, format!("\"{s}\""), &why))?,
    };
    if v.is_empty() {
        return Err(Error::invalid(key, "[]", "give at least one value"));
    }
    Ok(v)
}
