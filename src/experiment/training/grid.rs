//! Depth grids that cannot force the answer: geometric grids in absolute
//! layers, and depths bracketing each N's transition densely, placed from a
//! coarse pass (a previous run's `summary.json`: `training.bracket_from`).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Integer depths ≥ 2 from `lo` to `hi` (inclusive where whole), with at least
/// `per_doubling` distinct depths in every doubling [x, 2x) inside the range
/// wherever x ≥ `per_doubling` (below that a doubling holds fewer whole
/// numbers, and every one of them is taken).
pub fn geometric(lo: f64, hi: f64, per_doubling: usize) -> Vec<usize> {
    let (lo, hi) = (lo.max(2.0), hi.max(2.0));
    let r = 2f64.powf(1.0 / (per_doubling.max(1) as f64 + 0.5));
    let mut v = Vec::new();
    let mut x = lo;
    while x <= hi * (1.0 + 1e-12) {
        v.push(x.round() as usize);
        x *= r;
    }
    v.push(hi.round() as usize);
    v.retain(|&d| d >= 2 && (d as f64) >= lo.floor() && (d as f64) <= hi.ceil());
    v.sort_unstable();
    v.dedup();
    v
}

/// Depths around a transition known to lie in [`lo`, `hi`] (a coarse pass's
/// interval, or its two grid depths around the crossing): a geometric grid
/// from lo/√2 to hi·√2 with `per_doubling` depths per doubling.
pub fn bracket(lo: f64, hi: f64, per_doubling: usize) -> Vec<usize> {
    geometric(lo / 2f64.sqrt(), hi * 2f64.sqrt(), per_doubling)
}

/// Per N, the bracketing depths from the `summary.json` of a previous run's
/// folder, `per_doubling` (≥ 4 recommended) depths per doubling.
pub fn bracket_from_folder(
    folder: &Path,
    per_doubling: usize,
) -> Result<BTreeMap<usize, Vec<usize>>> {
    let path = folder.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::invalid(
            "training.bracket_from",
            path.display(),
            &format!("a results folder of a training run with its summary.json ({e})"),
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(
            "training.bracket_from",
            path.display(),
            &format!("valid JSON ({e})"),
        )
    })?;
    let rows = v["trainable_depth"].as_array().ok_or_else(|| {
        Error::invalid(
            "training.bracket_from",
            path.display(),
            "a summary.json with trainable_depth rows (from this version of quantdepth)",
        )
    })?;
    let mut ranges: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    let longest = rows
        .iter()
        .filter_map(|r| r["steps"].as_u64())
        .max()
        .unwrap_or(0);
    for r in rows.iter().filter(|r| r["steps"].as_u64() == Some(longest)) {
        let (Some(n), Some(depths)) = (r["states"].as_u64(), r["depths"].as_array()) else {
            continue;
        };
        let ds: Vec<f64> = depths.iter().filter_map(|d| d.as_f64()).collect();
        let (Some(&first), Some(&last)) = (ds.first(), ds.last()) else {
            continue;
        };
        for b in [&r["halfway_test"], &r["halfway_train"]] {
            let (lo, hi) = match b["l_emp"].as_f64() {
                Some(l) => (
                    b["ci_lo"].as_f64().unwrap_or(first.min(l)),
                    b["ci_hi"].as_f64().unwrap_or(last.max(l) * 2.0),
                ),
                None if b["beyond"].as_f64().unwrap_or(0.0) > 0.5 => (last, 4.0 * last),
                None => (2.0, first),
            };
            let e = ranges.entry(n as usize).or_insert((lo, hi));
            *e = (e.0.min(lo), e.1.max(hi));
        }
    }
    if ranges.is_empty() {
        return Err(Error::invalid(
            "training.bracket_from",
            path.display(),
            "a summary.json with at least one trainable_depth row",
        ));
    }
    Ok(ranges
        .into_iter()
        .map(|(n, (lo, hi))| (n, bracket(lo, hi, per_doubling)))
        .collect())
}
