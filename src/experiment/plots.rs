//! Plots of results (plotters): SVG, and PNG beside it. Plotting only reads
//! result structs. Text uses the bundled DejaVu Sans, so no system font
//! library is needed.

use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

pub(crate) fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is bundled and valid; a failure would only lose the text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

pub(crate) fn perr(e: impl std::fmt::Display) -> Error {
    Error::Numerical(format!("plotting failed: {e}"))
}

/// Draws with the generic function `$draw` into `<stem>.svg` and, when
/// `$png`, into `<stem>.png`.
macro_rules! both {
    ($stem:expr, $size:expr, $png:expr, $draw:ident, $args:expr) => {{
        register();
        {
            let path = $stem.with_extension("svg");
            let root = SVGBackend::new(&path, $size).into_drawing_area();
            root.fill(&WHITE).map_err(perr)?;
            $draw(&root, $args)?;
            root.present().map_err(perr)?;
        }
        if $png {
            let path = $stem.with_extension("png");
            let root = BitMapBackend::new(&path, $size).into_drawing_area();
            root.fill(&WHITE).map_err(perr)?;
            $draw(&root, $args)?;
            root.present().map_err(perr)?;
        }
        Ok(())
    }};
}

/// One empirical curve with its theory line.
pub struct CurvePlot {
    /// Legend label.
    pub label: String,
    /// (layer, mean, standard error).
    pub empirical: Vec<(f64, f64, f64)>,
    /// (layer, theory).
    pub theory: Vec<(f64, f64)>,
}

/// A colour per series.
pub(crate) fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (title, ylabel, curves): (&str, &str, &[CurvePlot]),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let xmax = curves
        .iter()
        .flat_map(|c| c.theory.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for c in curves {
        for &(_, m, s) in &c.empirical {
            lo = lo.min(m - s);
            hi = hi.max(m + s);
        }
        for &(_, t) in &c.theory {
            lo = lo.min(t);
            hi = hi.max(t);
        }
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return Ok(());
    }
    let pad = 0.05 * (hi - lo).max(1e-3);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, (lo - pad)..(hi + pad))
        .map_err(perr)?;
    chart
        .configure_mesh()
        .x_desc("layer l")
        .y_desc(ylabel)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(perr)?;
    for (i, c) in curves.iter().enumerate() {
        let col = color(i);
        chart
            .draw_series(LineSeries::new(
                c.theory.iter().copied(),
                col.stroke_width(2),
            ))
            .map_err(perr)?
            .label(format!("{} (theory)", c.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        chart
            .draw_series(
                c.empirical
                    .iter()
                    .map(|&(l, m, s)| ErrorBar::new_vertical(l, m - s, m, m + s, col.filled(), 4)),
            )
            .map_err(perr)?;
        chart
            .draw_series(
                c.empirical
                    .iter()
                    .map(|&(l, m, _)| Circle::new((l, m), 3, col.filled())),
            )
            .map_err(perr)?
            .label(format!("{} (simulation ± SE)", c.label))
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, col.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(perr)?;
    Ok(())
}

/// Depth curves: empirical means with error bars, theory as lines.
pub fn depth_curves(
    stem: &Path,
    png: bool,
    title: &str,
    ylabel: &str,
    curves: &[CurvePlot],
) -> Result<()> {
    both!(stem, (900, 600), png, draw_curves, (title, ylabel, curves))
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (title, angles, values): (&str, &[f64], &[Vec<f64>]),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let layers = values.len();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.iter().flatten() {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if layers == 0 || angles.len() < 2 || !(lo.is_finite() && hi > lo) {
        return Ok(());
    }
    let amax = angles[angles.len() - 1];
    let da = angles[1] - angles[0];
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..(amax + da), 0.0..layers as f64)
        .map_err(perr)?;
    chart
        .configure_mesh()
        .x_desc("Δθ (radians)")
        .y_desc("layer l")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(perr)?;
    chart
        .draw_series(values.iter().enumerate().flat_map(|(l, row)| {
            row.iter().enumerate().map(move |(d, &v)| {
                let t = (v - lo) / (hi - lo);
                let c = HSLColor(0.66 * (1.0 - t), 0.8, 0.5);
                let x0 = angles[d] - 0.5 * da;
                Rectangle::new(
                    [(x0.max(0.0), l as f64), (x0 + da, l as f64 + 1.0)],
                    c.filled(),
                )
            })
        }))
        .map_err(perr)?;
    Ok(())
}

/// The paper's Figure 1: hidden-state covariance against the angle offset
/// Δθ (x) and the layer (y), colour from blue (low) to red (high).
pub fn circle_heatmap(
    stem: &Path,
    png: bool,
    title: &str,
    angles: &[f64],
    values: &[Vec<f64>],
) -> Result<()> {
    both!(stem, (800, 600), png, draw_heatmap, (title, angles, values))
}

/// A series on log-log axes against N + 1: points (with optional CI) and an optional fit line.
pub struct LogSeries {
    /// Legend label.
    pub label: String,
    /// (N + 1, value, low, high).
    pub points: Vec<(f64, f64, f64, f64)>,
    /// (slope, intercept) of ln value against ln(N + 1).
    pub fit: Option<(f64, f64)>,
}

fn draw_loglog<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (title, ylabel, series): (&str, &str, &[LogSeries]),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, 0f64, f64::INFINITY, 0f64);
    for &(x, y, lo, hi) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(lo.min(y));
        y1 = y1.max(if hi.is_finite() { hi } else { y }.max(y));
    }
    if !(x0.is_finite() && y0 > 0.0 && x1 > x0) {
        return Ok(());
    }
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x0 * 0.9..x1 * 1.1).log_scale(),
            (y0 * 0.7..y1 * 1.4).log_scale(),
        )
        .map_err(perr)?;
    chart
        .configure_mesh()
        .x_desc("N + 1")
        .y_desc(ylabel)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(perr)?;
    for (i, s) in series.iter().enumerate() {
        let col = color(i);
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|&(x, y, _, _)| Circle::new((x, y), 4, col.filled())),
            )
            .map_err(perr)?
            .label(s.label.clone())
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, col.filled()));
        chart
            .draw_series(s.points.iter().filter(|p| p.2 < p.1 || p.3 > p.1).map(
                |&(x, y, lo, hi)| {
                    ErrorBar::new_vertical(
                        x,
                        lo,
                        y,
                        if hi.is_finite() { hi } else { y1 * 1.3 },
                        col.filled(),
                        4,
                    )
                },
            ))
            .map_err(perr)?;
        if let Some((slope, icpt)) = s.fit {
            let line = (0..=50).map(|k| {
                let x = x0 * (x1 / x0).powf(k as f64 / 50.0);
                (x, (icpt + slope * x.ln()).exp())
            });
            chart
                .draw_series(LineSeries::new(line, col.stroke_width(2)))
                .map_err(perr)?
                .label(format!("fit: slope {slope:.3}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(perr)?;
    Ok(())
}

/// Values against N + 1 on log-log axes with their fit lines.
pub fn loglog(
    stem: &Path,
    png: bool,
    title: &str,
    ylabel: &str,
    series: &[LogSeries],
) -> Result<()> {
    both!(stem, (800, 600), png, draw_loglog, (title, ylabel, series))
}
