//! The finite-width plots of a run (experiment::finite_width): for every
//! group of points that differ only in width and every c⁰, n·(ĉ − c)
//! against the layer with the 1/n theory as a line (`finite-width-mean-*`),
//! and one pair's n·Var ĉ with its prediction (`finite-width-var-*`). The
//! theory's lines are the same at every width, so where it holds the
//! widths' points collapse onto them.

use crate::error::Result;
use crate::experiment::finite_width::{FiniteWidthCurve, FiniteWidthLayer};
use crate::experiment::plots::{self, Series};
use crate::experiment::records::PointSummary;
use std::collections::BTreeMap;
use std::path::Path;

/// A group: every field of the point's label but the width, and c⁰.
fn group_key(p: &PointSummary, c: &FiniteWidthCurve) -> String {
    format!(
        "N = {}, σ_w = {}{}, σ_b = {}, L = {}, c⁰ = {}",
        p.network
            .states
            .map_or(p.network.activation.to_string(), |n| n.to_string()),
        crate::experiment::summary::sig(p.network.sigma_w, 5),
        if p.sigma_w_spec.starts_with("opt") {
            " (optimal)"
        } else {
            ""
        },
        p.network.sigma_b,
        p.depth,
        c.c0
    )
}

/// Draws the finite-width plots of `points` into the staging folder `stage`.
pub(crate) fn finite_width_plots(stage: &Path, png: bool, points: &[PointSummary]) -> Result<()> {
    let mut groups: BTreeMap<String, Vec<(usize, &FiniteWidthCurve)>> = BTreeMap::new();
    for p in points {
        for c in &p.finite_width {
            groups
                .entry(group_key(p, c))
                .or_default()
                .push((p.width, c));
        }
    }
    for (k, (key, mut members)) in groups.into_iter().enumerate() {
        members.sort_by_key(|m| m.0);
        let n_widths = members.len();
        let series = |pick: &dyn Fn(&FiniteWidthLayer) -> (f64, f64, f64), what: &str| {
            let mut s: Vec<Series> = members
                .iter()
                .enumerate()
                .map(|(i, (w, c))| Series {
                    label: format!("n = {w}"),
                    points: c
                        .layers
                        .iter()
                        .skip(1)
                        .filter(|l| !l.flagged)
                        .map(|l| {
                            let (y, se, _) = pick(l);
                            // Side by side within a layer, so that no width hides another.
                            let dx = 0.5 * (i as f64 + 0.5) / n_widths as f64 - 0.25;
                            (l.layer as f64 + dx, y, se)
                        })
                        .collect(),
                    line: Vec::new(),
                    color: Some(plots::layer_color(i, n_widths.max(2))),
                })
                .collect();
            // The theory's line is the same at every width (leading order).
            let (_, c) = members[members.len() - 1];
            s.push(Series {
                label: format!("1/n theory: {what}"),
                points: Vec::new(),
                line: c
                    .layers
                    .iter()
                    .map(|l| (l.layer as f64, pick(l).2))
                    .collect(),
                color: Some(plotters::style::RGBColor(0, 0, 0)),
            });
            s
        };
        plots::depth_curves(
            &stage.join(format!("plots/finite-width-mean-{k}")),
            png,
            &format!("n·(ĉ − c∞) against the layer by width (flagged layers left out): {key}"),
            "n·(mean ĉ − c∞)",
            &series(
                &|l| (l.n_shift, l.n_shift_se, l.n_shift_theory),
                "n·(E ĉ − c∞)",
            ),
            false,
        )?;
        plots::depth_curves(
            &stage.join(format!("plots/finite-width-var-{k}")),
            png,
            &format!("one pair's n·Var ĉ against the layer by width: {key}"),
            "n·P·Var ĉ over networks",
            &series(&|l| (l.n_var, l.n_var_se, l.n_var_theory), "n·Var ĉ"),
            false,
        )?;
    }
    Ok(())
}
