//! Plots of results (plotters): SVG, and PNG beside it. Plotting only reads
//! result structs. Text uses the bundled DejaVu Sans, so no system font
//! library is needed.
//!
//! Conventions: legends sit outside the data, in a column to the right;
//! every axis has tick labels at round values (log axes: 1-2-5 or 1..9 per
//! decade, so a narrow range still gets labels); layers are ticked as
//! integers; labels use precomposed glyphs (ĉ, ξ, χ), not TeX markup, and
//! `σ_w`, `ξ_emp`, `σ_w^opt` are drawn with real sub- and superscripts in
//! PNGs (text.rs; SVGs get `σw`).

use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
/// Narrowest legend column, pixels (it widens to its longest label).
const LEGEND_MIN_W: u32 = 150;

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
            let root = $crate::experiment::plots::text::PlainText(SVGBackend::new(&path, $size))
                .into_drawing_area();
            root.fill(&WHITE).map_err(perr)?;
            $draw(&root, $args)?;
            root.present().map_err(perr)?;
        }
        if $png {
            let path = $stem.with_extension("png");
            let root =
                $crate::experiment::plots::text::GlyphText::new(BitMapBackend::new(&path, $size))
                    .into_drawing_area();
            root.fill(&WHITE).map_err(perr)?;
            $draw(&root, $args)?;
            root.present().map_err(perr)?;
        }
        Ok(())
    }};
}

mod axis;
pub mod finite_width;
pub mod simulation;
mod text;
pub mod trainability;
pub mod training;

use axis::Axis;

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

/// Colour k of n along a perceptually ordered ramp (matplotlib's plasma,
/// from its dark-blue end to orange at 0.8: every colour keeps contrast on
/// white, unlike viridis's light greens and yellows), for series ordered by
/// depth.
fn ramp(k: usize, n: usize) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (13.0, 8.0, 135.0),
        (126.0, 3.0, 168.0),
        (204.0, 71.0, 120.0),
        (248.0, 149.0, 64.0),
        (240.0, 249.0, 33.0),
    ];
    let t = if n <= 1 {
        0.0
    } else {
        k as f64 / (n - 1) as f64
    } * 0.8;
    let s = t * (STOPS.len() - 1) as f64;
    let i = (s.floor() as usize).min(STOPS.len() - 2);
    let f = s - i as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(
        mix(STOPS[i].0, STOPS[i + 1].0),
        mix(STOPS[i].1, STOPS[i + 1].1),
        mix(STOPS[i].2, STOPS[i + 1].2),
    )
}

/// A legend entry: a line, a point with error bar, or both.
#[derive(Clone)]
struct Entry {
    text: String,
    col: RGBColor,
    line: bool,
    point: bool,
}

fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[Entry]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let font =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, e) in entries.iter().enumerate() {
        let y = 40 + 22 * i as i32;
        if e.line {
            area.draw(&PathElement::new(
                vec![(8, y), (36, y)],
                e.col.stroke_width(2),
            ))
            .map_err(perr)?;
        }
        if e.point {
            area.draw(&Circle::new((22, y), 4, e.col.filled()))
                .map_err(perr)?;
        }
        area.draw(&Text::new(e.text.clone(), (44, y), font.clone()))
            .map_err(perr)?;
    }
    Ok(())
}

/// One series on a panel: points (x, mean, SE) and/or a line.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Simulation: (x, mean, SE); SE 0 draws no bar.
    pub points: Vec<(f64, f64, f64)>,
    /// Theory (or a fit): (x, value).
    pub line: Vec<(f64, f64)>,
    /// Colour (None: by position).
    pub color: Option<RGBColor>,
}

/// A panel: axes, labels and series.
struct Panel<'a> {
    caption: &'a str,
    xlabel: &'a str,
    ylabel: &'a str,
    x: Axis,
    y: Axis,
    series: &'a [Series],
    /// x ticks at these values with these labels instead of the axis's own
    /// (Figure 1: multiples of π/4).
    x_ticks: Option<&'a [(f64, &'a str)]>,
    /// Stroke width of the SE bars, pixels.
    bar_width: u32,
}

fn series_color(s: &Series, i: usize) -> RGBColor {
    s.color.unwrap_or_else(|| color(i))
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel<'_>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (x, y) = (p.x, p.y);
    let mut chart = ChartBuilder::on(area)
        .caption(p.caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x.to(x.lo)..x.to(x.hi), y.to(y.lo)..y.to(y.hi))
        .map_err(perr)?;
    // Ticks are drawn here, at round values in data units (plotters' own
    // key points on a log axis leave a narrow range without labels).
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(0)
        .x_desc(p.xlabel)
        .y_desc(p.ylabel)
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(perr)?;
    let grid = RGBColor(220, 220, 220);
    let (bx, by) = area.get_base_pixel();
    let (x0, x1, y0, y1) = (x.to(x.lo), x.to(x.hi), y.to(y.lo), y.to(y.hi));
    let top =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    let right =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    let xt: Vec<(f64, String)> = match p.x_ticks {
        Some(t) => t.iter().map(|&(v, l)| (v, l.to_string())).collect(),
        None => x.ticks().into_iter().map(|v| (v, x.label(v))).collect(),
    };
    for (v, label) in xt {
        let t = x.to(v);
        chart
            .draw_series(LineSeries::new([(t, y0), (t, y1)], grid.stroke_width(1)))
            .map_err(perr)?;
        let (px, py) = chart.backend_coord(&(t, y0));
        area.draw(&PathElement::new(
            vec![(px - bx, py - by), (px - bx, py - by + 5)],
            BLACK.stroke_width(1),
        ))
        .map_err(perr)?;
        area.draw(&Text::new(label, (px - bx, py - by + 8), top.clone()))
            .map_err(perr)?;
    }
    for v in y.ticks() {
        let t = y.to(v);
        chart
            .draw_series(LineSeries::new([(x0, t), (x1, t)], grid.stroke_width(1)))
            .map_err(perr)?;
        let (px, py) = chart.backend_coord(&(x0, t));
        area.draw(&PathElement::new(
            vec![(px - bx - 5, py - by), (px - bx, py - by)],
            BLACK.stroke_width(1),
        ))
        .map_err(perr)?;
        area.draw(&Text::new(
            y.label(v),
            (px - bx - 8, py - by),
            right.clone(),
        ))
        .map_err(perr)?;
    }
    let ylo = y.to(y.lo);
    let bar = p.bar_width;
    for (i, s) in p.series.iter().enumerate() {
        let col = series_color(s, i);
        if !s.line.is_empty() {
            chart
                .draw_series(LineSeries::new(
                    s.line.iter().map(|&(a, b)| (x.to(a), y.to(b))),
                    col.stroke_width(2),
                ))
                .map_err(perr)?;
        }
        chart
            .draw_series(s.points.iter().filter(|p| p.2 > 0.0).map(|&(a, m, e)| {
                let lo = if y.log {
                    y.to((m - e).max(y.lo))
                } else {
                    m - e
                };
                ErrorBar::new_vertical(
                    x.to(a),
                    lo.max(ylo),
                    y.to(m),
                    y.to(m + e),
                    col.stroke_width(bar),
                    7,
                )
            }))
            .map_err(perr)?;
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|&(a, m, _)| Circle::new((x.to(a), y.to(m)), 3, col.filled())),
            )
            .map_err(perr)?;
    }
    Ok(())
}

/// The data range of some series, padded (log: by a factor).
fn range_of(series: &[Series], pick_y: bool, log: bool) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for &(a, m, e) in &s.points {
            let v = if pick_y { [m - e, m + e] } else { [a, a] };
            for v in v {
                if v.is_finite() && (!log || v > 0.0) {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        for &(a, b) in &s.line {
            let v = if pick_y { b } else { a };
            if v.is_finite() && (!log || v > 0.0) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    Some(if log {
        let f = (hi / lo).max(1.0001).powf(0.05);
        (lo / f, hi * f)
    } else {
        let pad = 0.05 * (hi - lo).max(1e-3 * hi.abs().max(1e-3));
        (lo - pad, hi + pad)
    })
}

/// One entry per series (its line and point marks together), then, where a
/// series has both, what lines and points are: a narrow legend column.
fn legend_entries(series: &[Series], points: &str, line: &str) -> Vec<Entry> {
    let mut e = Vec::new();
    let mut both = false;
    for (i, s) in series.iter().enumerate() {
        both |= !s.points.is_empty() && !s.line.is_empty();
        e.push(Entry {
            text: s.label.clone(),
            col: series_color(s, i),
            line: !s.line.is_empty(),
            point: !s.points.is_empty(),
        });
    }
    if both {
        for (text, l, p) in [(line, true, false), (points, false, true)] {
            e.push(Entry {
                text: text.to_string(),
                col: BLACK,
                line: l,
                point: p,
            });
        }
    }
    e
}

struct Figure<'a> {
    title: &'a str,
    xlabel: &'a str,
    ylabel: &'a str,
    series: &'a [Series],
    xlog: bool,
    ylog: bool,
    xinteger: bool,
    points_name: &'a str,
    line_name: &'a str,
}

fn draw_figure<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Figure<'_>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let Some((x0, x1)) = range_of(f.series, false, f.xlog) else {
        return Ok(());
    };
    let Some((y0, y1)) = range_of(f.series, true, f.ylog) else {
        return Ok(());
    };
    let root = root.titled(f.title, ("sans-serif", 18)).map_err(perr)?;
    let (w, _) = root.dim_in_pixel();
    let entries = legend_entries(f.series, f.points_name, f.line_name);
    let longest = entries
        .iter()
        .map(|e| e.text.chars().count())
        .max()
        .unwrap_or(0) as u32;
    let legend_w = (longest * 8 + 56).clamp(LEGEND_MIN_W, w / 2);
    let (plot, legend) = root.split_horizontally(w.saturating_sub(legend_w));
    let (x0, x1) = if f.xinteger && !f.xlog {
        (x0.max(0.0).floor(), x1.ceil())
    } else {
        (x0, x1)
    };
    draw_panel(
        &plot,
        &Panel {
            caption: "",
            xlabel: f.xlabel,
            ylabel: f.ylabel,
            x: Axis {
                lo: x0,
                hi: x1.max(x0 + 1e-9),
                log: f.xlog,
                integer: f.xinteger,
            },
            y: Axis {
                lo: y0,
                hi: y1.max(y0 + 1e-12),
                log: f.ylog,
                integer: false,
            },
            series: f.series,
            x_ticks: None,
            bar_width: 2,
        },
    )?;
    draw_legend(
        &legend,
        &legend_entries(f.series, f.points_name, f.line_name),
    )
}

/// Curves against the layer: simulation ± SE as points, theory as lines,
/// legend to the right; `log_y` for quantities that grow or decay
/// geometrically.
pub fn depth_curves(
    stem: &Path,
    png: bool,
    title: &str,
    ylabel: &str,
    series: &[Series],
    log_y: bool,
) -> Result<()> {
    let f = Figure {
        title,
        xlabel: "layer l",
        ylabel,
        series,
        xlog: false,
        ylog: log_y,
        xinteger: true,
        points_name: "simulation ± SE",
        line_name: "theory",
    };
    both!(stem, (1000, 600), png, draw_figure, &f)
}

/// Values against N + 1 on log-log axes: points with intervals and fit lines.
pub fn loglog(stem: &Path, png: bool, title: &str, ylabel: &str, series: &[Series]) -> Result<()> {
    let f = Figure {
        title,
        xlabel: "N + 1",
        ylabel,
        series,
        xlog: true,
        ylog: true,
        xinteger: false,
        points_name: "points",
        line_name: "fit",
    };
    both!(stem, (1000, 600), png, draw_figure, &f)
}

/// The colour of layer k of n shown layers (Figure 1).
pub fn layer_color(k: usize, n: usize) -> RGBColor {
    ramp(k, n)
}

pub(crate) mod figure1;
pub use figure1::{figure1, Figure1Panel};
