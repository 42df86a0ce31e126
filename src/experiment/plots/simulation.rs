//! The plots of simulation and optimal-scan folders, from the result
//! structs: per point (depth curves, backward passes, Figure 1 panels),
//! across points (ξ scaling, Figure 1), and Figure 2 of an optimal scan.

use crate::error::Result;
use crate::experiment::plots::{self, Figure1Panel, Series};
use crate::experiment::records::{Curve, CurveRow, PointSummary, XiScaling};
use crate::experiment::summary::sig;
use crate::theory::scaling::{LinearFit, Scaling};
use crate::theory::UniformOptimum;
use std::path::Path;

/// A point described with its numbers, for plot titles: N, σ_w (and its
/// offset from σ_w^opt), σ_b, width, depth.
fn plot_label(p: &PointSummary) -> String {
    let act = match p.network.states {
        Some(n) => format!("N = {n}"),
        None => p.network.activation.to_string(),
    };
    let spec = optimal_note(&p.sigma_w_spec, "optimal");
    format!(
        "{act}, σ_w = {}{spec}, σ_b = {}, n = {}, L = {}",
        sig(p.network.sigma_w, 5),
        p.network.sigma_b,
        p.width,
        p.depth
    )
}

/// The plots of one point: correlation and variance by layer (pairs), the
/// backward passes (gradient norm, gradient correlation, NTK), and its
/// Figure 1 panel (circle).
pub(crate) fn point_plots(folder: &Path, png: bool, p: &PointSummary) -> Result<()> {
    let stem = |what: &str| folder.join(format!("plots/point{:03}-{what}", p.index));
    let label = plot_label(p);
    let pairs: Vec<&Curve> = p.curves.iter().filter(|c| c.input == "pairs").collect();
    if !pairs.is_empty() {
        let series: Vec<Series> = pairs
            .iter()
            .map(|c| {
                curve_series(
                    format!("c0 = {}", c.c0),
                    c,
                    |l| (l.c_mean, l.c_se),
                    |l| l.c_theory,
                )
            })
            .collect();
        plots::depth_curves(
            &stem("correlation"),
            png,
            &format!(
                "correlation ĉ by layer: {label}; ξ = {}",
                sig(p.xi_theory, 4)
            ),
            "correlation ĉ",
            &series,
            false,
        )?;
        let q = &pairs[0];
        let qplot = [curve_series(
            "q".into(),
            q,
            |l| (l.q_mean, l.q_se),
            |l| l.q_theory,
        )];
        plots::depth_curves(
            &stem("variance"),
            png,
            &format!("pre-activation variance q by layer: {label}"),
            "variance q",
            &qplot,
            false,
        )?;
    }
    if !p.backward.is_empty() {
        // Per target M, the first c0's curves.
        let firsts: Vec<_> = p
            .backward
            .iter()
            .filter_map(|b| b.curves.first().map(|c| (b, c)))
            .collect();
        let norm: Vec<Series> = firsts
            .iter()
            .map(|(b, (cv, th))| Series {
                label: format!("M = {}", sig(b.m_theory, 4)),
                points: cv
                    .layers
                    .iter()
                    .map(|l| {
                        (
                            l.layer as f64,
                            l.norm_cumulative.mean,
                            l.norm_cumulative.se.unwrap_or(0.0),
                        )
                    })
                    .collect(),
                line: th
                    .iter()
                    .map(|t| (t.layer as f64, t.grad_norm_ratio))
                    .collect(),
                color: None,
            })
            .collect();
        plots::depth_curves(
            &stem("gradient-norm"),
            png,
            &format!("squared gradient norm at layer l over that at L (STE, log scale): {label}"),
            "‖δ‖² at layer l / ‖δ‖² at L",
            &norm,
            true,
        )?;
        let corr: Vec<Series> = firsts
            .iter()
            .map(|(b, (cv, th))| Series {
                label: format!("M = {}, c0 = {}", sig(b.m_theory, 4), cv.c0),
                points: cv
                    .layers
                    .iter()
                    .map(|l| {
                        (
                            l.layer as f64,
                            l.grad_corr.mean,
                            l.grad_corr.se.unwrap_or(0.0),
                        )
                    })
                    .collect(),
                line: th.iter().map(|t| (t.layer as f64, t.grad_corr)).collect(),
                color: None,
            })
            .collect();
        plots::depth_curves(
            &stem("gradient-correlation"),
            png,
            &format!("correlation of the two inputs' gradients δ (STE): {label}"),
            "gradient correlation",
            &corr,
            false,
        )?;
        // NTK: the theory's recursion Θ^l layer by layer; the simulation
        // measures the network's NTK at its output layer L.
        let mut ntk = Vec::new();
        for (b, (cv, th)) in &firsts {
            let l = th.last().map_or(0.0, |t| t.layer as f64);
            for (name, est, line) in [
                (
                    "Θ(a,a)",
                    cv.ntk_aa,
                    th.iter()
                        .map(|t| (t.layer as f64, t.ntk_aa))
                        .collect::<Vec<_>>(),
                ),
                (
                    "Θ(a,b)",
                    cv.ntk_ab,
                    th.iter().map(|t| (t.layer as f64, t.ntk_ab)).collect(),
                ),
            ] {
                ntk.push(Series {
                    label: format!("{name}, M = {}", sig(b.m_theory, 4)),
                    points: vec![(l, est.mean, est.se.unwrap_or(0.0))],
                    line,
                    color: None,
                });
            }
        }
        plots::depth_curves(
            &stem("ntk"),
            png,
            &format!(
                "NTK of the pair, c0 = {}: theory by depth, simulation at L: {label}",
                firsts[0].1 .0.c0
            ),
            "NTK Θ",
            &ntk,
            false,
        )?;
    }
    let circle: Vec<&Curve> = p.curves.iter().filter(|c| c.input == "circle").collect();
    if !circle.is_empty() {
        plots::figure1(
            &stem("circle"),
            png,
            &format!("normalized covariance against Δθ by layer: {label}"),
            &[figure1_panel(p)],
        )?;
    }
    Ok(())
}

/// A curve by layer: the simulation's (mean, SE) from `sim` as points, the
/// theory from `theory` as a line.
fn curve_series(
    label: String,
    c: &Curve,
    sim: impl Fn(&CurveRow) -> (f64, Option<f64>),
    theory: impl Fn(&CurveRow) -> f64,
) -> Series {
    Series {
        label,
        points: c
            .layers
            .iter()
            .map(|l| {
                let (m, se) = sim(l);
                (l.layer as f64, m, se.unwrap_or(0.0))
            })
            .collect(),
        line: c
            .layers
            .iter()
            .map(|l| (l.layer as f64, theory(l)))
            .collect(),
        color: None,
    }
}

/// " (optimal)" for σ_w given as "opt", " (`word` +0.1)" for "opt+0.1";
/// nothing for a number.
fn optimal_note(sigma_w_spec: &str, word: &str) -> String {
    match sigma_w_spec {
        "opt" => " (optimal)".to_string(),
        s if s.starts_with("opt") => format!(" ({word} {})", &s[3..]),
        _ => String::new(),
    }
}

/// Layers shown in Figure 1: 0, 1, 2, 4, 8, … up to L.
fn figure1_layers(depth: usize) -> Vec<usize> {
    let mut v = vec![0];
    let mut l = 1;
    while l <= depth {
        v.push(l);
        l *= 2;
    }
    v
}

/// One Figure 1 panel: per shown layer, ĉ against Δθ (simulation) and the
/// theory's c^l.
fn figure1_panel(p: &PointSummary) -> Figure1Panel {
    let circle: Vec<&Curve> = p.curves.iter().filter(|c| c.input == "circle").collect();
    let shown = figure1_layers(p.depth);
    // The theory's lines span the offsets the circle samples strictly inside
    // (0, π): c^l(0) = 1 and c^l(π) = −1 are fixed points of the map, reached
    // with infinite slope, so a line into them is a vertical drop; the
    // simulation's points at 0 and π stay.
    let inner: Vec<f64> = circle
        .iter()
        .filter_map(|c| c.angle)
        .filter(|&a| a > 1e-12 && a < std::f64::consts::PI - 1e-12)
        .collect();
    let (a_lo, a_hi) = match (
        inner.iter().copied().reduce(f64::min),
        inner.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) if lo < hi => (lo, hi),
        _ => (0.0, std::f64::consts::PI),
    };
    let layers = shown
        .iter()
        .enumerate()
        .map(|(k, &l)| {
            let row = |c: &&Curve| c.layers.get(l).cloned();
            // Mirror Δθ ∈ [0, π] is what the circle measures (d ≤ M/2).
            Series {
                label: format!("layer {l}"),
                points: circle
                    .iter()
                    .filter_map(|c| {
                        row(c).map(|r| (c.angle.unwrap_or(0.0), r.c_mean, r.c_se.unwrap_or(0.0)))
                    })
                    .collect(),
                line: {
                    // The theory on a grid of Δθ crowding towards 0 and π.
                    let r = &p.network;
                    plots::figure1::theory_angles(a_lo, a_hi)
                        .into_iter()
                        .filter_map(|a| {
                            r.network
                                .depth_curve(r.q0, r.q0, a.cos().clamp(-1.0, 1.0), l)
                                .ok()
                                .and_then(|t| t.last().map(|t| (a, t.c)))
                        })
                        .collect()
                },
                color: Some(plots::layer_color(k, shown.len())),
            }
        })
        .collect();
    // "σ_w = 0.8058 = σ_w^opt − 0.2" for "opt-0.2"; "(optimal)" for "opt".
    let offset = match p.sigma_w_spec.as_str() {
        "opt" => " (optimal)".to_string(),
        s if s.starts_with("opt") => {
            let d = s[3..].trim();
            match d.strip_prefix('-') {
                Some(m) => format!(" = σ_w^opt − {}", m.trim()),
                None => format!(" = σ_w^opt + {}", d.trim_start_matches('+').trim()),
            }
        }
        _ => String::new(),
    };
    Figure1Panel {
        caption: format!(
            "σ_w = {}{offset}, ξ = {}",
            sig(p.network.sigma_w, 4),
            sig(p.xi_theory, 3)
        ),
        layers,
    }
}

/// The plots across points: ξ_emp and ξ_c against N + 1 for each ξ scaling
/// group, and Figure 1 with every circle point of one N side by side.
pub(crate) fn scaling_plots(
    folder: &Path,
    png: bool,
    scaling: &[XiScaling],
    points: &[PointSummary],
) -> Result<()> {
    for (k, s) in scaling.iter().enumerate() {
        let emp: Vec<(f64, f64, f64)> = s
            .states
            .iter()
            .filter_map(|&n| {
                let p = points.iter().find(|p| {
                    p.network.states == Some(n)
                        && format!(
                            "σw={} σb={} n={}",
                            p.sigma_w_spec, p.network.sigma_b, p.width
                        ) == s.group
                })?;
                let f = p.xi_emp?;
                // The bar spans the 95 % interval (drawn as ± its half-width about ξ_emp).
                let half = if f.ci_high.is_finite() {
                    0.5 * (f.ci_high - f.ci_low)
                } else {
                    f.xi
                };
                Some(((n + 1) as f64, f.xi, half))
            })
            .collect();
        let th: Vec<(f64, f64, f64)> = s
            .states
            .iter()
            .zip(&s.xi_theory)
            .map(|(&n, &x)| ((n + 1) as f64, x, 0.0))
            .collect();
        let series = [
            Series {
                label: "ξ_emp ± 95 % CI".into(),
                points: emp,
                line: Vec::new(),
                color: Some(plots::layer_color(0, 2)),
            },
            Series {
                label: format!("fit to ξ_emp: slope {:.3}", s.fit_emp.slope),
                points: Vec::new(),
                line: power_law_line(&s.fit_emp, &s.states),
                color: Some(plots::layer_color(0, 2)),
            },
            Series {
                label: "ξ_c (theory)".into(),
                points: th,
                line: Vec::new(),
                color: Some(RED_SERIES),
            },
            Series {
                label: format!("fit to theory: slope {:.3}", s.fit_theory.slope),
                points: Vec::new(),
                line: power_law_line(&s.fit_theory, &s.states),
                color: Some(RED_SERIES),
            },
        ];
        plots::loglog(
            &folder.join(format!("plots/xi-scaling-{k}")),
            png,
            &format!(
                "depth scale ξ against N + 1 (log-log), {}",
                s.group
                    .replace("σw=opt", "σ_w optimal for each N")
                    .replace("σw=", "σ_w = ")
                    .replace(" σb=", ", σ_b = ")
                    .replace(" n=", ", n = ")
            ),
            "depth scale ξ",
            &series,
        )?;
    }
    // The paper's Figure 1: every circle point of one N, side by side on one scale.
    let mut by_n: std::collections::BTreeMap<Option<usize>, Vec<&PointSummary>> =
        Default::default();
    for p in points
        .iter()
        .filter(|p| p.curves.iter().any(|c| c.input == "circle"))
    {
        by_n.entry(p.network.states).or_default().push(p);
    }
    for (n, mut ps) in by_n {
        if ps.len() < 2 {
            continue;
        }
        ps.sort_by(|a, b| a.network.sigma_w.total_cmp(&b.network.sigma_w));
        let panels: Vec<Figure1Panel> = ps.iter().map(|p| figure1_panel(p)).collect();
        let p0 = ps[0];
        plots::figure1(
            &folder.join(format!("plots/figure1-n{}", n.unwrap_or(0))),
            png,
            &format!(
                "normalized covariance against Δθ, by layer: N = {}, Δ = {}, A = {}, σ_b = {}, n = {}, L = {}",
                n.map_or("-".into(), |n| n.to_string()),
                p0.network.spacing.map_or("-".into(), |d| sig(d, 4)),
                p0.network.amplitude.map_or("-".into(), |a| sig(a, 4)),
                p0.network.sigma_b,
                p0.width,
                p0.depth
            ),
            &panels,
        )?;
    }
    Ok(())
}

/// The theory's colour in scaling plots.
const RED_SERIES: plotters::style::RGBColor = plotters::style::RGBColor(214, 39, 40);

/// Figure 2 of an optimal scan: 1 − χ_max and D_opt against N + 1 with
/// their power-law fits, into the staging folder `stage`.
pub(crate) fn optimal_plots(
    stage: &Path,
    png: bool,
    optima: &[UniformOptimum],
    sc: &Scaling,
) -> Result<()> {
    let ns: Vec<usize> = optima.iter().map(|o| o.states).collect();
    let pts = |f: &dyn Fn(&UniformOptimum) -> Option<f64>| -> Vec<(f64, f64, f64)> {
        optima
            .iter()
            .filter_map(|o| f(o).map(|v| ((o.states + 1) as f64, v, 0.0)))
            .collect()
    };
    let two = |label: &str, p: Vec<(f64, f64, f64)>, fit: &LinearFit| {
        [
            Series {
                label: label.into(),
                points: p,
                line: Vec::new(),
                color: None,
            },
            Series {
                label: format!("fit: slope {:.4}", fit.slope),
                points: Vec::new(),
                line: power_law_line(fit, &ns),
                color: Some(RED_SERIES),
            },
        ]
    };
    plots::loglog(
        &stage.join("plots/one-minus-chi-max"),
        png,
        "1 − χ_max against N + 1 (Figure 2, log-log)",
        "1 − χ_max",
        &two(
            "1 − χ_max",
            pts(&|o| Some(o.one_minus_chi_max)),
            &sc.one_minus_chi_max,
        ),
    )?;
    plots::loglog(
        &stage.join("plots/d-opt"),
        png,
        "optimal spacing D_opt = Δ/√q* against N + 1 (Figure 2, log-log)",
        "optimal spacing D_opt",
        &two("D_opt", pts(&|o| o.d_opt), &sc.d_opt),
    )?;
    xi_max_plot(stage, png, optima, sc)
}

/// ξ_max and L_max = κ·ξ_max against N + 1 on log-log axes, with the fit of
/// ln ξ_max against ln(N + 1): its exponent (the paper's 1.82) and 95 %
/// interval (slope ± t·SE, Student t with points − 2 df) in the legend.
fn xi_max_plot(stage: &Path, png: bool, optima: &[UniformOptimum], sc: &Scaling) -> Result<()> {
    let ns: Vec<usize> = optima.iter().map(|o| o.states).collect();
    let f = sc.xi_max;
    let df = f.points.saturating_sub(2).max(1) as f64;
    let t = crate::analysis::student_t_quantile(0.975, df);
    let kappa = optima[0].l_max / optima[0].xi_max;
    let lmax_fit = LinearFit {
        intercept: f.intercept + kappa.ln(),
        ..f
    };
    let pts = |g: &dyn Fn(&UniformOptimum) -> f64| -> Vec<(f64, f64, f64)> {
        optima
            .iter()
            .map(|o| ((o.states + 1) as f64, g(o), 0.0))
            .collect()
    };
    let dark = plots::layer_color(0, 2);
    let series = [
        Series {
            label: "L_max = κ·ξ_max".replace('κ', &crate::error::fmt_value(kappa)),
            points: pts(&|o| o.l_max),
            line: Vec::new(),
            color: Some(RED_SERIES),
        },
        Series {
            label: "ξ_max".into(),
            points: pts(&|o| o.xi_max),
            line: Vec::new(),
            color: Some(dark),
        },
        Series {
            label: format!("fit: ∝ (N + 1)^{:.4}", f.slope),
            points: Vec::new(),
            line: power_law_line(&f, &ns),
            color: Some(BLACK_SERIES),
        },
        // Text only in the legend: the exponent's interval.
        Series {
            label: format!(
                "95 % CI [{:.4}, {:.4}]",
                f.slope - t * f.stderr,
                f.slope + t * f.stderr
            ),
            points: Vec::new(),
            line: Vec::new(),
            color: Some(BLACK_SERIES),
        },
        Series {
            label: "same exponent, × κ".replace('κ', &crate::error::fmt_value(kappa)),
            points: Vec::new(),
            line: power_law_line(&lmax_fit, &ns),
            color: Some(BLACK_SERIES),
        },
    ];
    plots::loglog(
        &stage.join("plots/xi-max-l-max"),
        png,
        &format!(
            "depth scale ξ_max and L_max = {}·ξ_max against N + 1 (log-log), N = {}..{}",
            crate::error::fmt_value(kappa),
            ns[0],
            ns[ns.len() - 1]
        ),
        "ξ_max, L_max (layers)",
        &series,
    )
}

/// Fit lines drawn over both series of a plot.
const BLACK_SERIES: plotters::style::RGBColor = plotters::style::RGBColor(40, 40, 40);

/// The power law exp(intercept)·x^slope of a fit of ln y against ln x, on
/// 41 log-spaced x from N + 1 of the first to N + 1 of the last of `states`.
fn power_law_line(fit: &LinearFit, states: &[usize]) -> Vec<(f64, f64)> {
    let (a, b) = (
        (states[0] + 1) as f64,
        (states[states.len() - 1] + 1) as f64,
    );
    (0..=40)
        .map(|i| {
            let x = a * (b / a).powf(i as f64 / 40.0);
            (x, (fit.intercept + fit.slope * x.ln()).exp())
        })
        .collect()
}
