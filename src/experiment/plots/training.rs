//! Plots of training runs: the heatmap of test accuracy over (N, depth)
//! with κξ lines (the paper's Figure 3), and accuracy against depth/ξ with
//! every N on one axis (if the theory is right, the curves collapse).

use crate::error::Result;
use crate::experiment::plots::{color, perr, register};
use crate::experiment::training::analysis::{acc_at, group_key, TrainableDepth, TrainedPoint};
use crate::experiment::training::plan::Plan;
use crate::train::data::CLASSES;
use crate::train::model::theory_init;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One cell of the heatmap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// N.
    pub states: usize,
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

/// Title, cells, ξ per N, and the κ of the κξ lines.
type HeatmapArgs<'a> = (&'a str, &'a [Cell], &'a [(usize, f64)], &'a [f64]);

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

/// Writes the heatmap: one rectangle per (N, depth) cell coloured by test
/// accuracy (from chance 0.1 to 1), the value printed in it; log depth on
/// the vertical axis; lines at κ·ξ(N) for each κ.
pub fn heatmap(
    stem: &Path,
    png: bool,
    title: &str,
    cells: &[Cell],
    xi: &[(usize, f64)],
    kappas: &[f64],
) -> Result<()> {
    let args = (title, cells, xi, kappas);
    both!(stem, (900, 620), png, draw_heatmap, args)
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (title, cells, xi, kappas): HeatmapArgs<'_>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    if cells.is_empty() {
        return Ok(());
    }
    let (main, bar) = root.split_horizontally(800);
    let mut states: Vec<usize> = cells.iter().map(|c| c.states).collect();
    states.sort_unstable();
    states.dedup();
    let dmin = cells.iter().map(|c| c.depth).min().unwrap_or(2) as f64;
    let dmax = cells.iter().map(|c| c.depth).max().unwrap_or(2) as f64;
    let (ylo, yhi) = (dmin / 1.3, dmax * 1.3);
    let (xlo, xhi) = (
        states[0] as f64 - 0.5,
        states[states.len() - 1] as f64 + 0.5,
    );
    let mut chart = ChartBuilder::on(&main)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(xlo..xhi, (ylo..yhi).log_scale())
        .map_err(perr)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("states N")
        .y_desc("depth L (weight layers)")
        .x_labels(states.len().min(20))
        .x_label_formatter(&|x| format!("{}", x.round()))
        // Depths are whole layers: "10", not "10.0".
        .y_label_formatter(&|y| format!("{}", y.round()))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(perr)?;
    let chance = 0.1;
    for &n in &states {
        let mut col: Vec<&Cell> = cells.iter().filter(|c| c.states == n).collect();
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
            let (x0, x1) = (n as f64 - 0.45, n as f64 + 0.45);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, lo), (x1, hi)],
                    cmap(t).filled(),
                )))
                .map_err(perr)?;
            let txt = if t > 0.6 { BLACK } else { WHITE };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{:.2}", c.acc),
                    (n as f64 - 0.2, d),
                    ("sans-serif", 11).into_font().color(&txt),
                )))
                .map_err(perr)?;
        }
    }
    // κξ lines: colours that show on the dark and light cells and on the
    // white background between columns (white vanished there).
    let styles = [
        RGBColor(0, 170, 255),
        RGBColor(255, 80, 80),
        RGBColor(255, 160, 0),
    ];
    for (k, &kappa) in kappas.iter().enumerate() {
        let col = styles[k % styles.len()];
        chart
            .draw_series(LineSeries::new(
                xi.iter()
                    .map(|&(n, x)| (n as f64, (kappa * x).clamp(ylo, yhi))),
                col.stroke_width(2),
            ))
            .map_err(perr)?
            .label(format!("{kappa}ξ"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], col.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(RGBColor(220, 220, 220).mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(perr)?;
    // Colour bar.
    let (_, h) = bar.dim_in_pixel();
    let top = 60i32;
    let bottom = h as i32 - 60;
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

/// Writes accuracy against depth/ξ (log axis), one curve per N, with the
/// chance level dashed.
pub fn collapse(
    stem: &Path,
    png: bool,
    title: &str,
    curves: &[Collapse],
    chance: f64,
) -> Result<()> {
    lines(stem, png, title, "depth / ξ", true, curves, chance)
}

/// Writes accuracy against σ_w/σ_w^opt, one curve per (N, depth).
pub fn sigma_sweep(
    stem: &Path,
    png: bool,
    title: &str,
    curves: &[Collapse],
    chance: f64,
) -> Result<()> {
    lines(stem, png, title, "σ_w / σ_w^opt", false, curves, chance)
}

fn lines(
    stem: &Path,
    png: bool,
    title: &str,
    xlabel: &str,
    log: bool,
    curves: &[Collapse],
    chance: f64,
) -> Result<()> {
    let args = (title, xlabel, log, curves, chance);
    both!(stem, (860, 560), png, draw_lines, args)
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (title, xlabel, log, curves, chance): (&str, &str, bool, &[Collapse], f64),
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
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, chance), (x1, chance)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(perr)?;
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
                        ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, col.filled(), 6)
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

/// (x, mean, standard error).
type Point3 = (f64, f64, f64);

/// The plots of a training folder: per group, the heatmap of test accuracy
/// over (N, depth) with κξ lines and the collapse against depth/ξ; accuracy
/// against σ_w/σ_w^opt when the config sweeps it.
pub(crate) fn run_plots(
    folder: &Path,
    png: bool,
    plan: &Plan,
    tds: &[TrainableDepth],
    points: &[TrainedPoint],
) -> Result<()> {
    let mut groups: BTreeMap<String, Vec<&TrainableDepth>> = BTreeMap::new();
    for t in tds {
        groups.entry(group_key(t)).or_default().push(t);
    }
    for (k, (group, ts)) in groups.iter().enumerate() {
        if ts.iter().all(|t| t.depths.len() < 2) {
            continue;
        }
        let cells: Vec<Cell> = ts
            .iter()
            .flat_map(|t| {
                t.depths.iter().zip(&t.test_acc).map(|(&d, &a)| Cell {
                    states: t.states,
                    depth: d,
                    acc: a,
                })
            })
            .collect();
        let (nmin, nmax) = ts.iter().fold((usize::MAX, 0), |(a, b), t| {
            (a.min(t.states), b.max(t.states))
        });
        // ξ at every N in the range, for the κξ lines (same preset, σ_w^opt).
        let xi_line: Vec<(usize, f64)> = (nmin..=nmax)
            .filter_map(|n| {
                theory_init(
                    n,
                    plan.preset,
                    1.0,
                    0.0,
                    plan.sigma_b,
                    plan.ste_threshold,
                    plan.m,
                )
                .ok()
                .map(|i| (n, i.xi))
            })
            .collect();
        heatmap(
            &folder.join(format!("plots/heatmap-{k}")),
            png,
            &format!("test accuracy, {group}"),
            &cells,
            &xi_line,
            &[4.0, 6.0, 9.0],
        )?;
        let curves: Vec<Collapse> = ts
            .iter()
            .map(|t| Collapse {
                label: format!("N = {} (ξ = {:.2})", t.states, t.xi),
                points: t
                    .depths
                    .iter()
                    .zip(&t.test_acc)
                    .zip(&t.test_acc_se)
                    .map(|((&d, &a), se)| (d as f64 / t.xi, a, se.unwrap_or(0.0)))
                    .collect(),
            })
            .collect();
        collapse(
            &folder.join(format!("plots/collapse-{k}")),
            png,
            &format!("test accuracy against depth/ξ, {group}"),
            &curves,
            1.0 / CLASSES as f64,
        )?;
    }
    // Accuracy against σ_w/σ_w^opt when the config sweeps it.
    let mut ratios: Vec<f64> = points
        .iter()
        .map(|p| p.init.sigma_w / p.init.sigma_w_opt)
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    if ratios.len() > 2 {
        let mut series: BTreeMap<(usize, usize), Vec<Point3>> = BTreeMap::new();
        let last = points
            .iter()
            .flat_map(|p| p.reports.last())
            .map(|r| r.step)
            .max()
            .unwrap_or(0);
        let mut by: BTreeMap<(usize, usize, u64), Vec<f64>> = BTreeMap::new();
        for p in points {
            if let Some(a) = acc_at(p, last) {
                let r = p.init.sigma_w / p.init.sigma_w_opt;
                by.entry((p.point.states, p.depth, r.to_bits()))
                    .or_default()
                    .push(a);
            }
        }
        for ((n, d, r), v) in by {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let se = if v.len() > 1 {
                (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / ((v.len() - 1) * v.len()) as f64)
                    .sqrt()
            } else {
                0.0
            };
            series
                .entry((n, d))
                .or_default()
                .push((f64::from_bits(r), m, se));
        }
        let curves: Vec<Collapse> = series
            .into_iter()
            .map(|((n, d), pts)| Collapse {
                label: format!("N = {n}, depth {d}"),
                points: pts,
            })
            .collect();
        sigma_sweep(
            &folder.join("plots/sigma-sweep"),
            png,
            &format!("test accuracy after {last} steps against σ_w/σ_w^opt"),
            &curves,
            1.0 / CLASSES as f64,
        )?;
    }
    Ok(())
}
