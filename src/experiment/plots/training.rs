//! Plots of training runs: the heatmap of test accuracy over (N, depth) or
//! (σ_w/σ_w^opt, depth) with κξ curves (the paper's Figure 3), and accuracy
//! against depth/ξ with every N on one axis (if the theory is right, the
//! curves collapse). Which plots a run gets: `trainability`.

use crate::error::Result;
use crate::experiment::plots::{color, perr, register};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One cell of the heatmap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Column: N, or σ_w/σ_w^opt.
    pub x: f64,
    /// Depth (weight layers).
    pub depth: usize,
    /// Test accuracy (mean over seeds).
    pub acc: f64,
}

/// One curve of accuracy against depth/ξ (or σ_w ratio): (x, mean, SE).
pub struct Collapse {
    /// Legend label.
    pub label: String,
    /// Points.
    pub points: Vec<(f64, f64, f64)>,
}

/// A labelled curve over the heatmap (κ·ξ against the column variable).
pub struct Guide {
    /// Legend label.
    pub label: String,
    /// (column, depth).
    pub points: Vec<(f64, f64)>,
}

/// Title, x-axis name, cells, guide curves.
type HeatmapArgs<'a> = (&'a str, &'a str, &'a [Cell], &'a [Guide]);

/// Viridis-like map from 0..1 (dark blue → green → yellow).
fn cmap(t: f64) -> RGBColor {
    const STOPS: [(f64, (f64, f64, f64)); 5] = [
        (0.0, (68.0, 1.0, 84.0)),
        (0.25, (59.0, 82.0, 139.0)),
        (0.5, (33.0, 145.0, 140.0)),
        (0.75, (94.0, 201.0, 98.0)),
        (1.0, (253.0, 231.0, 37.0)),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let k = STOPS.iter().position(|s| s.0 >= t).unwrap_or(4).max(1);
    let (t0, c0) = STOPS[k - 1];
    let (t1, c1) = STOPS[k];
    let f = (t - t0) / (t1 - t0);
    let mix = |a: f64, b: f64| (a + f * (b - a)).round() as u8;
    RGBColor(mix(c0.0, c1.0), mix(c0.1, c1.1), mix(c0.2, c1.2))
}

/// Writes the heatmap: one rectangle per (column, depth) cell coloured by
/// test accuracy (from chance 0.1 to 1), the value printed in it on a patch
/// of its own colour (drawn after the guide curves, so no curve strikes
/// through a value); log depth on the vertical axis; the guide curves
/// (κ·ξ) over it.
pub fn heatmap(
    stem: &Path,
    png: bool,
    title: &str,
    xlabel: &str,
    cells: &[Cell],
    guides: &[Guide],
) -> Result<()> {
    let args = (title, xlabel, cells, guides);
    both!(stem, (960, 620), png, draw_heatmap, args)
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (title, xlabel, cells, guides): HeatmapArgs<'_>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    if cells.is_empty() {
        return Ok(());
    }
    let (main, bar) = root.split_horizontally(800);
    let styles = [
        RGBColor(0, 170, 255),
        RGBColor(255, 80, 80),
        RGBColor(255, 160, 0),
    ];
    let mut xs: Vec<f64> = cells.iter().map(|c| c.x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    let gap = xs
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min);
    let half = if gap.is_finite() { 0.45 * gap } else { 0.45 };
    let dmin = cells.iter().map(|c| c.depth).min().unwrap_or(2) as f64;
    let dmax = cells.iter().map(|c| c.depth).max().unwrap_or(2) as f64;
    let (ylo, yhi) = (dmin / 1.3, dmax * 1.3);
    let (xlo, xhi) = (xs[0] - half / 0.9, xs[xs.len() - 1] + half / 0.9);
    // The depth axis is labelled at the grid's own depths (the rows), not
    // at round numbers between them, thinned where rows are closer than a
    // label's height (≈ 16 px of a plot ≈ 520 px tall).
    let mut depths: Vec<usize> = cells.iter().map(|c| c.depth).collect();
    depths.sort_unstable();
    depths.dedup();
    let min_step = (yhi / ylo).ln() * 16.0 / 520.0;
    let mut ticks: Vec<f64> = Vec::new();
    for d in depths.iter().map(|&d| d as f64) {
        if ticks.last().is_none_or(|&t| (d / t).ln() >= min_step) {
            ticks.push(d);
        }
    }
    let mut chart = ChartBuilder::on(&main)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(xlo..xhi, (ylo..yhi).log_scale().with_key_points(ticks))
        .map_err(perr)?;
    let integer_x = xs.iter().all(|x| x.fract() == 0.0);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(xlabel)
        .y_desc("depth L (weight layers)")
        // The columns are labelled below at their own values (3 among 2, 4,
        // 6, 8; 0.8 and 1.2 among 1.0 and 1.5), not at round numbers.
        .x_labels(0)
        // Depths are whole layers: "10", not "10.0".
        .y_label_formatter(&|y| format!("{}", y.round()))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(perr)?;
    for &x in &xs {
        let text = if integer_x {
            format!("{}", x.round())
        } else {
            format!("{x:.2}")
        };
        let (px, py) = chart.backend_coord(&(x, ylo));
        let width = 8 * text.chars().count() as i32;
        main.draw(&Text::new(
            text,
            (px - width / 2, py + 8),
            ("sans-serif", 14),
        ))
        .map_err(perr)?;
    }
    let chance = 0.1;
    let mut labels = Vec::new();
    for &x in &xs {
        let mut col: Vec<&Cell> = cells.iter().filter(|c| (c.x - x).abs() < 1e-9).collect();
        col.sort_by_key(|c| c.depth);
        for (i, c) in col.iter().enumerate() {
            let d = c.depth as f64;
            let lo = if i == 0 {
                d / 1.3
            } else {
                (d * col[i - 1].depth as f64).sqrt()
            };
            let hi = if i + 1 == col.len() {
                d * 1.3
            } else {
                (d * col[i + 1].depth as f64).sqrt()
            };
            let t = (c.acc - chance) / (1.0 - chance);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - half, lo), (x + half, hi)],
                    cmap(t).filled(),
                )))
                .map_err(perr)?;
            labels.push((x, d, c.acc, t));
        }
    }
    // Guide curves: colours that show on the dark and light cells and on the
    // white background between columns. Their legend is beside the colour
    // bar, outside the cells (inside the plot it hid a corner's values).
    for (k, g) in guides.iter().enumerate() {
        let col = styles[k % styles.len()];
        chart
            .draw_series(LineSeries::new(
                g.points.iter().map(|&(x, y)| (x, y.clamp(ylo, yhi))),
                col.stroke_width(2),
            ))
            .map_err(perr)?;
    }
    // Values last, each on a patch of its cell's colour: a curve passes
    // under the value, never through it.
    for (x, d, acc, t) in labels {
        let txt = if t > 0.6 { BLACK } else { WHITE };
        let patch = cmap(t).filled();
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((x, d))
                    + Rectangle::new([(-15, -8), (15, 7)], patch)
                    + Text::new(
                        format!("{acc:.2}"),
                        (-12, -6),
                        ("sans-serif", 11).into_font().color(&txt),
                    ),
            ))
            .map_err(perr)?;
    }
    // Colour bar over the upper part of the panel, the guides' legend below.
    let (_, h) = bar.dim_in_pixel();
    let top = 60i32;
    let bottom = (h as i32 * 3) / 5;
    for (k, g) in guides.iter().enumerate() {
        let col = styles[k % styles.len()];
        let y = bottom + 50 + 22 * k as i32;
        bar.draw(&PathElement::new([(8, y), (30, y)], col.stroke_width(3)))
            .map_err(perr)?;
        bar.draw(&Text::new(g.label.clone(), (36, y - 7), ("sans-serif", 13)))
            .map_err(perr)?;
    }
    for y in top..bottom {
        let t = (bottom - y) as f64 / (bottom - top) as f64;
        bar.draw(&Rectangle::new([(20, y), (45, y + 1)], cmap(t).filled()))
            .map_err(perr)?;
    }
    for (v, y) in [(1.0, top), (0.55, (top + bottom) / 2), (0.1, bottom)] {
        bar.draw(&Text::new(
            format!("{v:.2}"),
            (50, y - 6),
            ("sans-serif", 12),
        ))
        .map_err(perr)?;
    }
    bar.draw(&Text::new("acc", (18, top - 22), ("sans-serif", 13)))
        .map_err(perr)?;
    Ok(())
}

/// Writes accuracy against depth/ξ (log axis), one curve per N with ±2 SE
/// bars, the chance level and the halfway target dashed and labelled.
pub fn collapse(
    stem: &Path,
    png: bool,
    title: &str,
    curves: &[Collapse],
    chance: f64,
    target: f64,
) -> Result<()> {
    lines(
        stem,
        png,
        title,
        "depth / ξ",
        true,
        curves,
        (chance, target),
    )
}

/// Writes accuracy against σ_w/σ_w^opt, one curve per (N, depth).
pub fn sigma_sweep(
    stem: &Path,
    png: bool,
    title: &str,
    curves: &[Collapse],
    chance: f64,
) -> Result<()> {
    lines(
        stem,
        png,
        title,
        "σ_w / σ_w^opt",
        false,
        curves,
        (chance, f64::NAN),
    )
}

fn lines(
    stem: &Path,
    png: bool,
    title: &str,
    xlabel: &str,
    log: bool,
    curves: &[Collapse],
    chance: (f64, f64),
) -> Result<()> {
    let args = (title, xlabel, log, curves, chance);
    both!(stem, (860, 560), png, draw_lines, args)
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (title, xlabel, log, curves, (chance, target)): (&str, &str, bool, &[Collapse], (f64, f64)),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let xs = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0));
    let (xmin, xmax) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if !(xmin.is_finite() && xmax.is_finite()) {
        return Ok(());
    }
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(xlabel)
                // "1", "2", "0.75": no trailing ".0" (short labels, so the
                // log axis's 8, 9, 10 do not run together).
                .x_label_formatter(&|x| {
                    let t = format!("{x:.3}");
                    t.trim_end_matches('0').trim_end_matches('.').to_string()
                })
                .y_desc("test accuracy")
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(perr)?;
            let (x0, x1) = (chart.x_range().start, chart.x_range().end);
            for (y, name) in [(chance, "chance"), (target, "halfway target")] {
                if !y.is_finite() {
                    continue;
                }
                chart
                    .draw_series(DashedLineSeries::new(
                        [(x0, y), (x1, y)],
                        6,
                        4,
                        BLACK.stroke_width(1),
                    ))
                    .map_err(perr)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{name} {y:.2}"),
                        (x0, y),
                        TextStyle::from(("sans-serif", 12).into_font())
                            .pos(Pos::new(HPos::Left, VPos::Bottom)),
                    )))
                    .map_err(perr)?;
            }
            for (i, c) in curves.iter().enumerate() {
                let col = color(i);
                chart
                    .draw_series(LineSeries::new(
                        c.points.iter().map(|p| (p.0, p.1)),
                        col.stroke_width(2),
                    ))
                    .map_err(perr)?
                    .label(c.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], col.stroke_width(2))
                    });
                chart
                    .draw_series(c.points.iter().map(|p| {
                        ErrorBar::new_vertical(
                            p.0,
                            p.1 - 2.0 * p.2,
                            p.1,
                            p.1 + 2.0 * p.2,
                            col.filled(),
                            6,
                        )
                    }))
                    .map_err(perr)?;
                chart
                    .draw_series(
                        c.points
                            .iter()
                            .map(|p| Circle::new((p.0, p.1), 3, col.filled())),
                    )
                    .map_err(perr)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(perr)?;
        }};
    }
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60);
    if log {
        body!(b
            .build_cartesian_2d((xmin / 1.2..xmax * 1.2).log_scale(), 0.0..1.0)
            .map_err(perr)?);
    } else {
        let pad = 0.05 * (xmax - xmin).max(1e-3);
        body!(b
            .build_cartesian_2d((xmin - pad)..(xmax + pad), 0.0..1.0)
            .map_err(perr)?);
    }
    Ok(())
}
