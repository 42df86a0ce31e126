//! The terminal summary of a simulation run: one line per point (ξ_theory
//! beside ξ_emp with its interval, agreement), the backward passes, the ξ
//! scaling fits, and notes.

use crate::experiment::records::{PointSummary, XiScaling};
use std::fmt::Write as _;

/// `x` with `digits` significant figures (fixed notation between 1e-3 and
/// 1e6, scientific outside); "inf" and "nan" as such.
pub fn sig(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let e = x.abs().log10().floor() as i32;
    if !(-3..6).contains(&e) {
        return format!("{:.*e}", digits.saturating_sub(1), x);
    }
    let decimals = (digits as i32 - 1 - e).max(0) as usize;
    format!("{x:.decimals$}")
}

/// The summary table of `points` and the ξ scaling fits `scaling`.
pub(crate) fn summary_table(points: &[PointSummary], scaling: &[XiScaling]) -> String {
    use crate::analysis::IntervalMethod;
    let mut t = String::new();
    let mut notes: Vec<String> = Vec::new();
    let _ = writeln!(
        t,
        "{:>4} {:<36} {:>9} {:>4} {:>9} {:>10} {:>26} {:>7} {:>6} {:>7} {:>7}",
        "#",
        "point",
        "sigma_w",
        "nets",
        "c*",
        "xi_theory",
        "xi_emp ± SE [95% CI]",
        "xi_pred",
        "covers",
        "rms z_c",
        "max z_c"
    );
    let mut methods = Vec::new();
    let mut predicted = 0;
    for p in points {
        // Whether the 95 % interval of ξ_emp holds ξ_theory.
        let covers = match p.xi_emp {
            Some(f) if f.ci_low <= p.xi_theory && p.xi_theory <= f.ci_high => "yes",
            Some(_) => "no",
            None => "-",
        };
        let xe = match p.xi_emp {
            Some(f) => {
                if !methods.contains(&f.interval) {
                    methods.push(f.interval);
                }
                format!(
                    "{} ± {} [{}, {}]",
                    sig(f.xi, 4),
                    sig(f.xi_se, 2),
                    sig(f.ci_low, 4),
                    sig(f.ci_high, 4)
                )
            }
            None if p.xi_fits.is_empty() => "- (circle inputs)".into(),
            None => {
                let why = p
                    .xi_fits
                    .iter()
                    .find_map(|f| f.error.clone())
                    .unwrap_or_default();
                notes.push(format!("point {}: no xi_emp: {why}", p.index));
                "- (see note)".into()
            }
        };
        let pred = match (&p.xi_predicted, &p.xi_predicted_note) {
            (Some(x), _) => {
                predicted += 1;
                if x.flagged_layers > 0 {
                    notes.push(format!(
                        "point {}: xi_pred: the 1/n expansion is flagged (eps > 0.1) in {} layer(s) of the fit window: not to be trusted there",
                        p.index, x.flagged_layers
                    ));
                }
                sig(x.xi_pred, 4)
            }
            (None, Some(why)) => {
                if !notes.contains(why) {
                    notes.push(why.clone());
                }
                "-".into()
            }
            (None, None) => "-".into(),
        };
        let _ = writeln!(
            t,
            "{:>4} {:<36} {:>9.4} {:>4} {:>9.4} {:>10} {:>26} {:>7} {:>6} {:>7} {:>7}",
            p.index,
            p.label,
            p.network.sigma_w,
            p.samples,
            p.c_star,
            sig(p.xi_theory, 4),
            xe,
            pred,
            covers,
            z_cell(&p.agreement_c, p.agreement_c.rms_z),
            z_cell(&p.agreement_c, p.agreement_c.max_z)
        );
    }
    for p in points {
        for b in &p.backward {
            let _ = writeln!(
                t,
                "{:>4} backward M = {:.4} (STE s = {:.4}, t = {}): rms z per-layer |δ|² ratio {}, cumulative |δ^l|²/|δ^L|² {} (max {}), gradient correlation {}",
                p.index,
                b.m_theory,
                b.ste.slope,
                b.ste.threshold,
                z_cell(&b.agreement_ratio, b.agreement_ratio.rms_z),
                z_cell(&b.agreement_cumulative, b.agreement_cumulative.rms_z),
                z_cell(&b.agreement_cumulative, b.agreement_cumulative.max_z),
                z_cell(&b.agreement_corr, b.agreement_corr.rms_z),
            );
            for v in &b.ntk {
                let est = |k: &str| -> String {
                    let m = v[k]["mean"].as_f64().unwrap_or(f64::NAN);
                    match v[k]["se"].as_f64() {
                        Some(se) => format!("{} ± {}", sig(m, 4), sig(se, 2)),
                        None => format!("{} (one network: no SE)", sig(m, 4)),
                    }
                };
                let th = |k: &str| sig(v[k].as_f64().unwrap_or(f64::NAN), 4);
                let _ = writeln!(
                    t,
                    "{:>4}   c0 = {}: |δ^0|²/|δ^L|² {} (theory {}); NTK Θ(a,a) {} (theory {}), Θ(a,b) {} (theory {})",
                    "",
                    v["c0"],
                    est("norm_cumulative"),
                    th("norm_cumulative_theory"),
                    est("ntk_aa"),
                    th("ntk_aa_theory"),
                    est("ntk_ab"),
                    th("ntk_ab_theory"),
                );
            }
        }
    }
    for s in scaling {
        let _ = writeln!(
            t,
            "xi scaling ({}): N = {:?}: exponent of xi_emp {:.3} ± {:.3}, of xi_theory {:.3} ± {:.3} (vs ln(N + 1))",
            s.group, s.states, s.fit_emp.slope, s.fit_emp.stderr, s.fit_theory.slope, s.fit_theory.stderr
        );
    }
    for m in methods {
        let _ = writeln!(
            t,
            "{}",
            match m {
                IntervalMethod::JackknifeNetworks { networks } => format!(
                    "95% CI of xi_emp: delete-one-network jackknife over {networks} networks, Student t with {} df",
                    networks - 1
                ),
                IntervalMethod::LayersIndependent =>
                    "95% CI of xi_emp: the fit's slope error, layers treated as independent (optimistic)".into(),
            }
        );
    }
    if !points.is_empty() {
        let _ = writeln!(
            t,
            "nets: networks per point; covers: whether the 95% CI of xi_emp holds xi_theory\n\
             z scores: (simulation - theory)/SE per layer mapped from Student t (nets - 1 df) to the normal deviate of equal tail probability; rms z ≈ 1 when the theory holds"
        );
    }
    let fw: Vec<&crate::experiment::finite_width::FiniteWidthCurve> = points
        .iter()
        .flat_map(|p| &p.finite_width)
        .filter(|c| c.layers_scored > 0)
        .collect();
    if !fw.is_empty() {
        let range = |f: &dyn Fn(&crate::experiment::finite_width::FiniteWidthCurve) -> f64| {
            let lo = fw.iter().map(|c| f(c)).fold(f64::INFINITY, f64::min);
            let hi = fw.iter().map(|c| f(c)).fold(f64::NEG_INFINITY, f64::max);
            format!("{}–{}", sig(lo, 3), sig(hi, 3))
        };
        let _ = writeln!(
            t,
            "finite width: mean z² of ĉ per layer against the 1/n-corrected means {} over {} curve(s) (against infinite width {}); \
             per curve in summary.json (finite_width), plots finite-width-*; \
             a curve's layers are correlated, so its mean z² scatters more like one χ²₁ than like a mean of many",
            range(&|c| c.mean_z2_corrected),
            fw.len(),
            range(&|c| c.mean_z2_infinite)
        );
    }
    if predicted > 0 {
        let _ = writeln!(
            t,
            "xi_pred: the xi_emp the finite-width (1/n) theory predicts this experiment measures (same width, networks, pairs, depth and fit): \
             the infinite-width transient in the fit window, the 1/n mean and the fit's bias on noisy data, by a Monte Carlo of the fit \
             (summary.json: xi_predicted, with each part; docs/finite-width.md)"
        );
    }
    for n in notes {
        let _ = writeln!(t, "note: {n}");
    }
    t
}

/// A z score in the table: two decimals; "-" where one network leaves it
/// undefined; NaN where the data were not finite (flagged beside the table).
fn z_cell(a: &crate::analysis::Agreement, z: f64) -> String {
    if a.samples < 2 && z.is_nan() {
        "-".into()
    } else {
        format!("{z:.2}")
    }
}
