//! The paper's Figure 1: the normalized covariance ĉ against the angle
//! offset Δθ of inputs on a great circle, one curve per layer, one panel per
//! σ_w, drawn as a grid of panels of a readable size (at most three
//! columns) on one shared scale, with one y label, Δθ ticked at multiples of
//! π/4, simulation ± SE as points with bars, the theory as lines over the
//! offsets the circle samples inside (0, π), and layers in an ordered palette.

use super::{draw_legend, draw_panel, perr, register, series_color, Axis, Entry, Panel, Series};
use crate::error::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::f64::consts::PI;
use std::path::Path;

/// One σ_w of the paper's Figure 1: per shown layer, the normalized
/// covariance (the correlation ĉ) against Δθ.
pub struct Figure1Panel {
    /// Panel caption (with the numbers: N, σ_w, its offset from σ_w^opt, ξ).
    pub caption: String,
    /// One series per shown layer: simulation (Δθ, mean, SE) and theory (Δθ, c).
    pub layers: Vec<Series>,
}

/// Panel size in pixels, and the widest grid.
const PANEL_W: u32 = 430;
const PANEL_H: u32 = 360;
const MAX_COLUMNS: usize = 3;
/// Legend column width when no grid cell is free for it.
const LEGEND_W: u32 = 215;

/// Columns and rows of the grid for `n` panels, and whether the legend
/// takes a free cell (else a column at the right).
fn grid(n: usize) -> (usize, usize, bool) {
    let cols = n.clamp(1, MAX_COLUMNS);
    let rows = n.div_ceil(cols).max(1);
    (cols, rows, n < cols * rows)
}

/// The angles of the theory's lines over [lo, hi] ⊂ [0, π]: 97 points
/// crowding towards both ends (lo + (hi − lo)·(1 − cos(πi/96))/2), where the
/// curves of deep layers bend fastest.
pub(crate) fn theory_angles(lo: f64, hi: f64) -> Vec<f64> {
    const M: usize = 96;
    (0..=M)
        .map(|i| lo + (hi - lo) * 0.5 * (1.0 - (PI * i as f64 / M as f64).cos()))
        .collect()
}

/// Δθ ticks: 0, π/4, π/2, 3π/4, π.
const PI_TICKS: [(f64, &str); 5] = [
    (0.0, "0"),
    (0.25 * PI, "π/4"),
    (0.5 * PI, "π/2"),
    (0.75 * PI, "3π/4"),
    (PI, "π"),
];

fn draw_figure1<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (title, panels): (&str, &[Figure1Panel]),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    if panels.is_empty() {
        return Ok(());
    }
    let root = root.titled(title, ("sans-serif", 18)).map_err(perr)?;
    let (w, _) = root.dim_in_pixel();
    let (cols, rows, legend_in_cell) = grid(panels.len());
    let (plots, side) = if legend_in_cell {
        (root.clone(), None)
    } else {
        let (p, l) = root.split_horizontally(w.saturating_sub(LEGEND_W));
        (p, Some(l))
    };
    let cells = plots.split_evenly((rows, cols));
    // One scale for every panel: the correlation lies in [−1, 1].
    let x = Axis {
        lo: 0.0,
        hi: PI,
        log: false,
        integer: false,
    };
    let y = Axis {
        lo: -1.05,
        hi: 1.05,
        log: false,
        integer: false,
    };
    for (i, (area, p)) in cells.iter().zip(panels).enumerate() {
        draw_panel(
            area,
            &Panel {
                caption: &p.caption,
                xlabel: "Δθ",
                // One y label, on the first column.
                ylabel: if i % cols == 0 {
                    "normalized covariance ĉ"
                } else {
                    ""
                },
                x,
                y,
                series: &p.layers,
                x_ticks: Some(&PI_TICKS),
                bar_width: 2,
            },
        )?;
    }
    let mut entries: Vec<Entry> = panels[0]
        .layers
        .iter()
        .enumerate()
        .map(|(i, s)| Entry {
            text: s.label.clone(),
            col: series_color(s, i),
            line: true,
            point: true,
        })
        .collect();
    entries.push(Entry {
        text: "lines: mean-field theory".into(),
        col: BLACK,
        line: true,
        point: false,
    });
    entries.push(Entry {
        text: "points: simulation ± SE".into(),
        col: BLACK,
        line: false,
        point: true,
    });
    let legend = match side {
        Some(l) => l,
        None => cells[cells.len() - 1].clone(),
    };
    draw_legend(&legend, &entries)
}

/// The paper's Figure 1: normalized covariance against the angle offset Δθ,
/// one curve per layer (theory lines, simulation points), one panel per σ_w
/// on a shared scale, in a grid of at most three columns.
pub fn figure1(stem: &Path, png: bool, title: &str, panels: &[Figure1Panel]) -> Result<()> {
    let (cols, rows, legend_in_cell) = grid(panels.len());
    let w = PANEL_W * cols as u32 + if legend_in_cell { 0 } else { LEGEND_W };
    // A single panel (a point's circle plot) also gets room for its title.
    let w = w.max(if panels.len() == 1 { 1000 } else { 0 });
    let h = PANEL_H * rows as u32 + 40;
    both!(stem, (w, h), png, draw_figure1, (title, panels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_hold_the_panels_and_the_legend() {
        // Five σ_w (fig1_sigma_sweep): 3 × 2 with the legend in the sixth cell.
        assert_eq!(grid(5), (3, 2, true));
        // Six: 3 × 2 full, legend at the side; one: a single cell, legend at the side.
        assert_eq!(grid(6), (3, 2, false));
        assert_eq!(grid(1), (1, 1, false));
    }

    #[test]
    fn theory_angles_span_the_range_and_crowd_towards_its_ends() {
        // fig1_sigma_sweep's circle of 32 points: offsets π/16 .. 15π/16 inside (0, π).
        let (lo, hi) = (PI / 16.0, 15.0 * PI / 16.0);
        let a = theory_angles(lo, hi);
        assert_eq!(a.len(), 97);
        assert_eq!(a[0], lo);
        assert!((a[96] - hi).abs() < 1e-12);
        // The first step is (hi − lo)·(1 − cos(π/96))/2 ≈ 1.5e-3 rad, 1/35 of the middle step.
        assert!(
            a[1] - a[0] < 2e-3 && a[49] - a[48] > 0.03,
            "{} {}",
            a[1] - a[0],
            a[49] - a[48]
        );
        assert!(a.windows(2).all(|w| w[0] < w[1]));
    }
}
