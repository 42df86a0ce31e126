//! The plots of a training folder, and L_emp against ξ: per sweep over N the
//! heatmap with κξ lines (κ = 2, 4, 6) and the collapse against depth/ξ; per
//! sweep over σ_w at fixed N the heatmap over (σ_w/σ_w^opt, depth) with the
//! theory's κ·ξ(σ_w); per slope, L_emp against ξ (log-log) with its bootstrap
//! intervals, the fitted slope and the slope-1 line.

use crate::error::Result;
use crate::experiment::plots::training::{collapse, heatmap, Cell, Collapse, Guide};
use crate::experiment::plots::{color, perr, register};
use crate::experiment::training::analysis::{
    group_key, lr_label, sigma_label, Slope, Study, TrainedPoint,
};
use crate::experiment::training::boundary::Metric;
use crate::experiment::training::plan::Plan;
use crate::train::model::theory_init;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// The κ of the guide curves.
const KAPPAS: [f64; 3] = [2.0, 4.0, 6.0];

/// One point of L_emp against ξ: (ξ, L_emp, interval low, interval high;
/// None = open) with its label.
type LPoint = (f64, f64, Option<f64>, Option<f64>, String);

fn draw_l_xi<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (title, pts, slope, ci): (&str, &[LPoint], f64, Option<(f64, f64)>),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    if pts.is_empty() {
        return Ok(());
    }
    let (xmin, xmax) = pts.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let ys = pts.iter().flat_map(|p| [Some(p.1), p.2, p.3]).flatten();
    let (ymin, ymax) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    let (x0, x1) = (xmin / 1.5, xmax * 1.5);
    let (y0, y1) = (ymin / 2.0, ymax * 2.0);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 15))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(perr)?;
    chart
        .configure_mesh()
        .x_desc("ξ (theory)")
        .x_labels(12)
        .y_labels(12)
        .y_desc("L_emp (weight layers)")
        .x_label_formatter(&|x| {
            format!("{x:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        })
        .y_label_formatter(&|y| {
            format!("{y:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(perr)?;
    // Lines through the centre of the points (geometric means): slope 1
    // (L = κξ) and the fitted slope.
    let n = pts.len() as f64;
    let (lx, ly) = (
        pts.iter().map(|p| p.0.ln()).sum::<f64>() / n,
        pts.iter().map(|p| p.1.ln()).sum::<f64>() / n,
    );
    let line = |s: f64| {
        [x0, x1]
            .into_iter()
            .map(move |x| (x, (ly + s * (x.ln() - lx)).exp()))
    };
    let kappa = (ly - lx).exp();
    chart
        .draw_series(DashedLineSeries::new(
            line(1.0),
            8,
            5,
            BLACK.stroke_width(2),
        ))
        .map_err(perr)?
        .label(format!("slope 1: L = κξ, κ = {kappa:.2}"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.stroke_width(2)));
    let red = RGBColor(220, 50, 50);
    let fit = match ci {
        Some((a, b)) => format!("fit: slope {slope:.2} [{a:.2}, {b:.2}]"),
        None => format!("fit: slope {slope:.2} (no interval)"),
    };
    chart
        .draw_series(LineSeries::new(line(slope), red.stroke_width(2)))
        .map_err(perr)?
        .label(fit)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], red.stroke_width(2)));
    for (i, p) in pts.iter().enumerate() {
        let col = color(i);
        let (lo, hi) = (p.2.unwrap_or(y0), p.3.unwrap_or(y1));
        chart
            .draw_series(std::iter::once(ErrorBar::new_vertical(
                p.0,
                lo,
                p.1,
                hi,
                col.stroke_width(2),
                8,
            )))
            .map_err(perr)?;
        chart
            .draw_series(std::iter::once(Circle::new((p.0, p.1), 4, col.filled())))
            .map_err(perr)?
            .label(p.4.clone())
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, col.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(perr)?;
    Ok(())
}

/// Writes L_emp against ξ for one slope.
pub fn l_emp_vs_xi(stem: &Path, png: bool, s: &Slope, study: &Study, seeds: usize) -> Result<()> {
    let pts: Vec<LPoint> = s
        .members
        .iter()
        .map(|(n, sw, xi, l)| {
            let row = study.trainable_depth.iter().find(|t| {
                t.states == *n
                    && &t.sigma_w == sw
                    && t.width == s.width
                    && t.steps == s.steps
                    && t.lr == s.lr
            });
            let b = row.map(|t| match s.metric {
                Metric::Test => &t.halfway_test,
                Metric::Train => &t.halfway_train,
            });
            (
                *xi,
                *l,
                b.and_then(|b| b.ci_lo),
                b.and_then(|b| b.ci_hi),
                format!("N = {n}, σw = {sw}"),
            )
        })
        .collect();
    let title = format!(
        "L_emp ({:?} acc.) vs ξ over {}, {} n={} lr={} steps={}, {seeds} seeds: {}",
        s.metric,
        s.over,
        s.group,
        s.width,
        lr_label(s.lr),
        s.steps,
        s.verdict.split(':').next().unwrap_or("")
    );
    let args = (title.as_str(), pts.as_slice(), s.slope.slope, s.slope.ci);
    both!(stem, (860, 600), png, draw_l_xi, args)
}

/// Every plot of a training folder (see the module's head).
pub(crate) fn run_plots(
    folder: &Path,
    png: bool,
    plan: &Plan,
    study: &Study,
    points: &[TrainedPoint],
) -> Result<()> {
    let seeds = study.trainable_depth.first().map_or(0, |t| t.seeds);
    let mut by_group: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, t) in study.trainable_depth.iter().enumerate() {
        by_group.entry(group_key(t)).or_default().push(i);
    }
    for (k, (group, rows)) in by_group.iter().enumerate() {
        let ts: Vec<_> = rows.iter().map(|&i| &study.trainable_depth[i]).collect();
        let mut ns: Vec<usize> = ts.iter().map(|t| t.states).collect();
        ns.dedup();
        if ns.len() < 2 || ts.iter().all(|t| t.depths.len() < 2) {
            continue;
        }
        let cells: Vec<Cell> = ts
            .iter()
            .flat_map(|t| {
                t.depths.iter().zip(&t.test_acc).map(|(&d, &a)| Cell {
                    x: t.states as f64,
                    depth: d,
                    acc: a,
                })
            })
            .collect();
        let guides: Vec<Guide> = KAPPAS
            .iter()
            .map(|&kappa| Guide {
                label: format!("{kappa}ξ"),
                points: ts.iter().map(|t| (t.states as f64, kappa * t.xi)).collect(),
            })
            .collect();
        heatmap(
            &folder.join(format!("plots/heatmap-{k}")),
            png,
            &format!("test accuracy, {group}, mean of {seeds} seeds"),
            "states N",
            &cells,
            &guides,
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
            &format!("test accuracy vs depth/ξ, {group}, {seeds} seeds, bars ±2 SE"),
            &curves,
            study.chance,
            ts[0].halfway_test.target,
        )?;
    }
    // σ_w control: per (N, width, lr, length) with 3 or more σ_w.
    let ratio_of = |n: usize, label: &str| {
        points
            .iter()
            .find(|p| p.point.states == n && sigma_label(&p.point) == label)
            .map(|p| p.init.sigma_w / p.init.sigma_w_opt)
    };
    let mut by_n: BTreeMap<(usize, usize, String, usize), Vec<usize>> = BTreeMap::new();
    for (i, t) in study.trainable_depth.iter().enumerate() {
        by_n.entry((t.states, t.width, lr_label(t.lr), t.steps))
            .or_default()
            .push(i);
    }
    let mut k = 0;
    for ((n, width, lr, steps), rows) in by_n {
        let cols: Vec<(f64, &_)> = rows
            .iter()
            .filter_map(|&i| {
                let t = &study.trainable_depth[i];
                ratio_of(n, &t.sigma_w).map(|r| (r, t))
            })
            .collect();
        let mut rs: Vec<f64> = cols.iter().map(|c| c.0).collect();
        rs.sort_by(f64::total_cmp);
        rs.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        if rs.len() < 3 {
            continue;
        }
        let cells: Vec<Cell> = cols
            .iter()
            .flat_map(|(r, t)| {
                t.depths.iter().zip(&t.test_acc).map(|(&d, &a)| Cell {
                    x: *r,
                    depth: d,
                    acc: a,
                })
            })
            .collect();
        let (r0, r1) = (rs[0], rs[rs.len() - 1]);
        let xi_at = |r: f64| {
            theory_init(
                n,
                plan.preset,
                r,
                0.0,
                plan.sigma_b,
                plan.ste_threshold,
                plan.m,
            )
            .ok()
            .map(|i| i.xi)
        };
        let guides: Vec<Guide> = KAPPAS
            .iter()
            .map(|&kappa| Guide {
                label: format!("{kappa}·ξ(σ_w)"),
                points: (0..=60)
                    .filter_map(|j| {
                        let r = r0 + (r1 - r0) * j as f64 / 60.0;
                        xi_at(r).map(|x| (r, kappa * x))
                    })
                    .collect(),
            })
            .collect();
        heatmap(
            &folder.join(format!("plots/sigma-heatmap-{k}")),
            png,
            &format!(
                "test accuracy, N = {n} n={width} lr={lr} steps={steps}, mean of {seeds} seeds"
            ),
            "σ_w / σ_w^opt",
            &cells,
            &guides,
        )?;
        k += 1;
    }
    for (k, s) in study
        .slopes
        .iter()
        .filter(|s| s.metric == Metric::Test)
        .enumerate()
    {
        l_emp_vs_xi(
            &folder.join(format!("plots/lemp-xi-{k}")),
            png,
            s,
            study,
            seeds,
        )?;
    }
    Ok(())
}
