//! `quantdepth theory`: the mean-field theory's tables and curves
//! (optimal initialization, scaling with N, depth curves, STE gradients).
//!
//! Long because every `theory` subcommand's arguments, checks and table sit beside
//! the one dispatch (finite-width's are already in cli/finite_width.rs).

use super::{check_kappa, parse_count, print_network, progress_bar, NetArgs};
use crate::outln;
use anyhow::{Context, Result};
use clap::Subcommand;
use quantdepth::setup::{parse_states, ResolvedNetwork};
use quantdepth::theory::optimal::{uniform_optimum, DEFAULT_KAPPA};
use quantdepth::theory::scaling::scaling;
use serde_json::json;

#[derive(Subcommand)]
pub enum TheoryCommand {
    /// The optimal initialization of the uniform N-state quantizer, one row per N.
    ///
    /// Columns: D̃_opt = Δ/√q*, the threshold spacing in units of the
    /// pre-activation standard deviation that maximizes χ(c*), the slope of
    /// the correlation map at its stable fixed point (σ_b = 0, c* = 0);
    /// χ_max and 1 − χ_max (computed without cancellation); the depth scale
    /// ξ_max = −1/ln χ_max, over which correlations between inputs decay;
    /// L_max = κ·ξ_max, the estimated maximal trainable depth.
    #[command(allow_negative_numbers = true)]
    Optimal {
        /// State counts: integers and inclusive ranges, comma-separated (e.g. 2..1025 or 3..64,128,1024).
        #[arg(long, value_name = "SPEC")]
        states: String,
        /// κ in L_max = κ·ξ_max (Schoenholz et al. found training works up to about 6ξ).
        #[arg(long, value_name = "K", default_value_t = DEFAULT_KAPPA, allow_negative_numbers = true)]
        kappa: f64,
        /// Spacing Δ of the quantizer for the sigma_w and q* columns: a number, "even"
        /// (Δ = 2A/(N − 1): levels evenly spaced from −A to A, thresholds midway — the
        /// paper's Figure 1 quantizer) or "unit" (Δ = D̃_opt, so q* = 1) [default: unit].
        #[arg(
            long,
            value_name = "D|even|unit",
            default_value = "unit",
            allow_negative_numbers = true
        )]
        spacing: String,
        /// Amplitude A of the levels for the sigma_w and q* columns.
        #[arg(
            long,
            value_name = "A",
            default_value_t = 1.0,
            allow_negative_numbers = true
        )]
        amplitude: f64,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Also optimize every threshold of a symmetric quantizer with equal level
        /// steps (not just the spacing), and show the gain in ξ over the uniform optimum.
        #[arg(long)]
        nonuniform: bool,
    },
    /// Straight-through gradients and the NTK of a pair of inputs, layer by layer.
    ///
    /// The STE surrogate φ'(x) = s·1{|x| ≤ t} multiplies the squared gradient
    /// norm per layer by M = σ_w² s² erf(t/√(2q*)); the default slope gives
    /// M = 1. Columns: forward correlation c^l, gradient norm ratio
    /// ‖δ^l‖²/‖δ^L‖², gradient correlation, NTK Θ^l(a,a), Θ^l(a,b) and their ratio.
    #[command(allow_negative_numbers = true)]
    Backward {
        #[command(flatten)]
        net: NetArgs,
        /// STE clipping threshold t (inf: the identity surrogate).
        #[arg(long = "ste-threshold", value_name = "T", default_value_t = 1.0)]
        ste_threshold: f64,
        /// STE slope s [default: the s that makes M = 1].
        #[arg(long = "ste-slope", value_name = "S")]
        ste_slope: Option<f64>,
        /// Input correlation c^0.
        #[arg(
            long,
            value_name = "C",
            default_value_t = 0.5,
            allow_negative_numbers = true
        )]
        c0: f64,
        /// Correlation of the two inputs' gradients at the output.
        #[arg(
            long = "grad-c-out",
            value_name = "C",
            default_value_t = 1.0,
            allow_negative_numbers = true
        )]
        grad_c_out: f64,
        /// Number of layers L.
        #[arg(long, value_name = "L", default_value_t = 50, value_parser = parse_count, allow_negative_numbers = true)]
        depth: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Least-squares fits of ln(1 − χ_max), ln ξ_max and ln D̃_opt against ln(N + 1).
    ///
    /// The slope of ln ξ_max is the exponent of the trade-off L_max ∝ N^slope
    /// (1.82 in the paper). Local exponents d ln ξ_max / d ln(N + 1) between
    /// consecutive N show whether that exponent is asymptotic or drifts.
    #[command(allow_negative_numbers = true)]
    Scaling {
        /// State counts (at least 3 values), e.g. 3..64,125,128,255,256,512,515,1024,1025.
        #[arg(long, value_name = "SPEC")]
        states: String,
        /// Print a JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The mean-field depth curve (q^l, c^l) of a pair of inputs, with q*, c*, χ(c*) and ξ_c.
    ///
    /// q^l is the pre-activation variance and c^l the correlation between
    /// the two inputs at layer l; c^l approaches the stable fixed point c* as
    /// exp(−l/ξ_c), ξ_c = −1/ln χ(c*).
    #[command(allow_negative_numbers = true)]
    Curve {
        #[command(flatten)]
        net: NetArgs,
        /// Input correlation c^0 in [−1, 1], or a comma-separated list of them
        /// (0.5,0.9: one c column per value, as `simulate --c0` takes a list).
        #[arg(
            long,
            value_name = "C[,C...]",
            default_value = "0.5",
            allow_hyphen_values = true
        )]
        c0: String,
        /// Number of layers L (at least 1).
        #[arg(long, value_name = "L", default_value_t = 100, value_parser = parse_count, allow_negative_numbers = true)]
        depth: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The finite-width (1/n) corrections of a pair of inputs, layer by layer.
    ///
    /// What a width-n simulation measures: per layer the infinite-width c, q,
    /// the predicted means E ĉ, E q̂ and standard deviations at each width,
    /// and the expansion's validity parameters (layers where it fails are flagged).
    #[command(allow_negative_numbers = true)]
    FiniteWidth(super::finite_width::FiniteWidthArgs),
}

/// A progress bar on stderr for a scan over N (drawn only on a terminal,
/// and only when the scan is long enough to need one).
fn scan_bar(ns: &[usize]) -> indicatif::ProgressBar {
    let work: usize = ns.iter().sum();
    if work < 200_000 {
        return indicatif::ProgressBar::hidden();
    }
    progress_bar(
        ns.len() as u64,
        "theory [{elapsed_precise}] {bar:30} {pos}/{len} values of N (ETA {eta})",
    )
}

/// Runs one `theory` subcommand, printing its table (or JSON) to stdout.
pub fn theory(cmd: TheoryCommand) -> Result<()> {
    match cmd {
        TheoryCommand::Optimal {
            states,
            kappa,
            json,
            nonuniform,
            ..
        } if nonuniform => {
            check_kappa(kappa)?;
            nonuniform_table(&parse_states(&states)?, kappa, json)
        }
        TheoryCommand::Backward {
            net,
            ste_threshold,
            ste_slope,
            c0,
            grad_c_out,
            depth,
            json,
        } => backward_table(&net, ste_threshold, ste_slope, c0, grad_c_out, depth, json),
        TheoryCommand::Optimal {
            states,
            kappa,
            json,
            spacing,
            amplitude,
            ..
        } => optimal_table(&parse_states(&states)?, kappa, &spacing, amplitude, json),
        TheoryCommand::Scaling { states, json } => scaling_table(&parse_states(&states)?, json),
        TheoryCommand::Curve {
            net,
            c0,
            depth,
            json,
        } => curve_table(
            &net,
            &quantdepth::setup::parse_list("--c0", &c0)?,
            depth,
            json,
        ),
        TheoryCommand::FiniteWidth(args) => super::finite_width::finite_width(&args),
    }
}

/// Computes `f(N)` for every N of a scan, with the scan's progress bar;
/// an error names the N it came from.
fn scan<T>(ns: &[usize], mut f: impl FnMut(usize) -> Result<T>) -> Result<Vec<T>> {
    let bar = scan_bar(ns);
    let mut out = Vec::with_capacity(ns.len());
    for &n in ns {
        bar.inc(1);
        out.push(f(n).with_context(|| format!("N = {n}"))?);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// A curve's depth (at least 1 layer; `what` names the curve in the
/// message) and input correlation (in [−1, 1]).
fn check_depth_c0(depth: usize, c0: f64, what: &str) -> Result<()> {
    if depth == 0 {
        anyhow::bail!("--depth 0: {what} needs at least 1 layer");
    }
    if !(-1.0..=1.0).contains(&c0) {
        anyhow::bail!("--c0 {c0}: a correlation must lie in [-1, 1]");
    }
    Ok(())
}

/// `theory scaling`: log-log fits of 1 − χ_max, ξ_max and D̃_opt against
/// N + 1, and the local exponents between consecutive N.
fn scaling_table(ns: &[usize], json: bool) -> Result<()> {
    if ns.len() < 3 {
        anyhow::bail!(
            "--states gives {} value(s) of N; a fit with standard errors needs at least 3",
            ns.len()
        );
    }
    // N = 2 (sign) has no optimal spacing D̃_opt: the D̃_opt fit uses N ≥ 3.
    let with_d = ns.iter().filter(|&&n| n >= 3).count();
    if with_d < 3 {
        anyhow::bail!(
            "--states gives {with_d} value(s) of N ≥ 3; the fit of D_opt (which N = 2, the \
             sign, does not have) needs at least 3: e.g. --states 2..5"
        );
    }
    let optima = scan(ns, |n| Ok(uniform_optimum(n, DEFAULT_KAPPA)?))?;
    let s = scaling(&optima)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    outln!(
        "# least-squares fits against ln(N + 1) over {} values of N ({}..{})",
        ns.len(),
        ns[0],
        ns[ns.len() - 1]
    );
    outln!(
        "{:>20} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "quantity",
        "slope",
        "stderr",
        "intercept",
        "stderr",
        "R^2"
    );
    for (name, f) in [
        ("ln(1 - chi_max)", s.one_minus_chi_max),
        ("ln xi_max", s.xi_max),
        ("ln D_opt", s.d_opt),
    ] {
        outln!(
            "{:>20} {:>10.5} {:>10.5} {:>10.5} {:>10.5} {:>12.9}",
            name,
            f.slope,
            f.stderr,
            f.intercept,
            f.intercept_stderr,
            f.r2
        );
    }
    outln!("\n# local exponents d ln xi_max / d ln(N + 1)");
    outln!("{:>8} {:>8} {:>10}", "N_lo", "N_hi", "exponent");
    for l in &s.local_exponents {
        outln!("{:>8} {:>8} {:>10.5}", l.n_lo, l.n_hi, l.exponent);
    }
    Ok(())
}

/// `theory curve`: the mean-field depth curves of one or more c⁰ with c*, χ(c*) and ξ_c.
/// One c⁰ keeps the one-curve JSON (`curve`); several give `curves`, one per c⁰.
fn curve_table(net: &NetArgs, c0s: &[f64], depth: usize, json: bool) -> Result<()> {
    for &c0 in c0s {
        check_depth_c0(depth, c0, "a depth curve")?;
    }
    let r = net.resolve()?;
    let c_star = spinning("finding c*", || r.network.c_star(r.q_star))?;
    let chi = r.network.chi(r.q_star, c_star);
    let xi = r.network.depth_scale(r.q_star, c_star);
    let curves = c0s
        .iter()
        .map(|&c0| curve_with_progress(&r, c0, depth))
        .collect::<Result<Vec<_>>>()?;
    if json {
        let layers = |curve: &[quantdepth::theory::CurvePoint]| -> Vec<serde_json::Value> {
            curve
                .iter()
                .map(|p| json!({"layer": p.layer, "q": p.q_a, "c": p.c}))
                .collect()
        };
        let mut out = json!({
            "network": r,
            "c_star": c_star,
            "chi_c_star": chi,
            "xi_c": xi,
        });
        if curves.len() == 1 {
            out["curve"] = json!(layers(&curves[0]));
        } else {
            out["curves"] = json!(c0s
                .iter()
                .zip(&curves)
                .map(|(c0, c)| json!({"c0": c0, "curve": layers(c)}))
                .collect::<Vec<_>>());
        }
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_network(&r);
    outln!("# c* = {c_star:.9}, chi(c*) = {chi:.9}, xi_c = {xi:.6}");
    // q^l does not depend on c⁰ (both inputs start at q⁰): one q column.
    let mut head = format!("{:>6} {:>16}", "layer", "q");
    for c0 in c0s {
        let name = if c0s.len() == 1 {
            "c".to_string()
        } else {
            format!("c (c0={c0})")
        };
        head.push_str(&format!(" {name:>16}"));
    }
    outln!("{head}");
    for (l, p) in curves[0].iter().enumerate() {
        let mut row = format!("{:>6} {:>16.10}", p.layer, p.q_a);
        for c in &curves {
            row.push_str(&format!(" {:>16.10}", c[l].c));
        }
        outln!("{row}");
    }
    Ok(())
}

/// `theory optimal`: D̃_opt, χ_max, ξ_max, L_max, and the initialization
/// that realizes them: σ_w^opt and q* at the chosen spacing and amplitude.
fn optimal_table(
    ns: &[usize],
    kappa: f64,
    spacing: &str,
    amplitude: f64,
    json: bool,
) -> Result<()> {
    use quantdepth::experiment::runner::sig;
    use quantdepth::theory::optimal::optimal_sigma_w;
    check_kappa(kappa)?;
    if !(amplitude.is_finite() && amplitude > 0.0) {
        anyhow::bail!(
            "--amplitude {amplitude}: the levels' amplitude A must be a finite number > 0"
        );
    }
    let fixed = match spacing {
        "unit" | "even" => None,
        s => match s.parse::<f64>() {
            Ok(d) if d.is_finite() && d > 0.0 => Some(d),
            _ => anyhow::bail!(
                "--spacing {s}: give a threshold spacing Δ > 0, \"even\" (2A/(N − 1)) or \"unit\" (D̃_opt, q* = 1)"
            ),
        },
    };
    let rows = scan(ns, |n| {
        let o = uniform_optimum(n, kappa)?;
        let delta = match (fixed, spacing) {
            (Some(d), _) => d,
            (None, "even") => 2.0 * amplitude / (n as f64 - 1.0),
            _ => o.d_opt.unwrap_or(1.0),
        };
        let (sigma_w, q_star) = optimal_sigma_w(n, delta, amplitude)?;
        Ok((o, delta, sigma_w, q_star))
    })?;
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(o, delta, sw, q)| {
                let mut v = serde_json::to_value(o).unwrap_or_default();
                v["spacing"] = json!(delta);
                v["amplitude"] = json!(amplitude);
                v["sigma_w"] = json!(sw);
                v["q_star"] = json!(q);
                v
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!(
        "{:>8} {:>12} {:>12} {:>14} {:>14} {:>14} {:>12} {:>12}",
        "N",
        "D_opt",
        "chi_max",
        "1-chi_max",
        "xi_max",
        "L_max",
        "sigma_w",
        "q*"
    );
    for (o, _, sw, q) in &rows {
        outln!(
            "{:>8} {:>12} {:>12.9} {:>14.6e} {:>14.6e} {:>14.6e} {:>12} {:>12}",
            o.states,
            o.d_opt.map_or("-".into(), |d| sig(d, 7)),
            o.chi_max,
            o.one_minus_chi_max,
            o.xi_max,
            o.l_max,
            if (1e-3..1e6).contains(sw) {
                format!("{sw:.9}")
            } else {
                format!("{sw:.6e}")
            },
            sig(*q, 9)
        );
    }
    let conv = match (fixed, spacing) {
        (Some(d), _) => format!("spacing Δ = {}", quantdepth::error::fmt_value(d)),
        (None, "even") => "spacing Δ = 2A/(N - 1) (levels evenly spaced, thresholds midway)".into(),
        _ => "spacing Δ = D_opt (so q* = 1)".into(),
    };
    outln!(
        "# L_max = kappa * xi_max with kappa = {kappa}; D_opt = spacing / sqrt(q*) at the optimum"
    );
    let amplitude = quantdepth::error::fmt_value(amplitude);
    outln!("# sigma_w = sigma_w^opt for amplitude A = {amplitude}, sigma_b = 0 and {conv}: weights W_ij ~ N(0, sigma_w^2/fan_in)");
    if rows.iter().any(|r| r.0.states == 2) {
        outln!("# N = 2 (sign): chi does not depend on the spacing, so D_opt is '-' and sigma_w is the one giving q* = 1");
    }
    Ok(())
}

/// `theory optimal --nonuniform`: the uniform optimum beside every threshold
/// optimized (equal level steps) and the Lloyd-Max quantizer (levels free
/// too). `kappa` has been checked by the caller.
fn nonuniform_table(ns: &[usize], kappa: f64, json: bool) -> Result<()> {
    use quantdepth::theory::nonuniform::{lloyd_max, nonuniform_optimum};
    use quantdepth::theory::scaling::linear_fit;
    let ns: Vec<usize> = ns.iter().copied().filter(|&n| n >= 3).collect();
    if ns.is_empty() {
        anyhow::bail!("--nonuniform needs N >= 3 (N = 2 has a single threshold, at 0)");
    }
    if let Some(n) = ns.iter().find(|n| **n > MAX_NONUNIFORM_STATES) {
        anyhow::bail!(
            "--nonuniform optimizes every threshold: N = {n} is too large (at most {MAX_NONUNIFORM_STATES})"
        );
    }
    let rows = scan(&ns, |n| {
        Ok((
            uniform_optimum(n, kappa)?,
            nonuniform_optimum(n)?,
            lloyd_max(n)?,
        ))
    })?;
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(u, e, l)| json!({"states": u.states, "uniform": u, "equal_steps": e, "free_levels": l}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!(
        "{:>6} {:>14} {:>14} {:>14} {:>8} {:>12} {:>12}",
        "N",
        "1-chi uniform",
        "1-chi eq.steps",
        "1-chi free lv",
        "gain",
        "xi uniform",
        "xi free lv"
    );
    for (u, e, l) in &rows {
        outln!(
            "{:>6} {:>14.6e} {:>14.6e} {:>14.6e} {:>8.4} {:>12.4} {:>12.4}",
            u.states,
            u.one_minus_chi_max,
            e.one_minus_chi_max,
            l.one_minus_chi_max,
            l.gain,
            u.xi_max,
            l.xi_max
        );
    }
    if rows.len() >= 3 {
        let x: Vec<f64> = rows
            .iter()
            .map(|(u, _, _)| ((u.states + 1) as f64).ln())
            .collect();
        let fit = |v: Vec<f64>| linear_fit(&x, &v.iter().map(|y| y.ln()).collect::<Vec<_>>());
        let fu = fit(rows.iter().map(|r| r.0.one_minus_chi_max).collect())?;
        let fl = fit(rows.iter().map(|r| r.2.one_minus_chi_max).collect())?;
        outln!(
            "# ln(1 - chi_max) vs ln(N + 1) over these N: uniform slope {:.4} ± {:.4}; free levels (Lloyd-Max) slope {:.4} ± {:.4}",
            fu.slope, fu.stderr, fl.slope, fl.stderr
        );
    }
    outln!("# eq.steps: every threshold free, level steps equal: the uniform optimum is already stationary (Lloyd's midpoint");
    outln!("# condition), so it equals the uniform column. free lv: levels free too = the Lloyd-Max quantizer;");
    outln!("# gain = (1 - chi uniform)/(1 - chi free levels), about the factor gained in xi. --json gives levels and thresholds.");
    Ok(())
}

/// `theory backward`: forward correlation, STE gradient norms and
/// correlations, and the NTK of a pair of inputs, layer by layer.
fn backward_table(
    net: &NetArgs,
    t: f64,
    slope: Option<f64>,
    c0: f64,
    grad_c_out: f64,
    depth: usize,
    json: bool,
) -> Result<()> {
    use quantdepth::theory::backward::{
        backward_curve_with, backward_factor, finite_backward_curve, unit_slope, Ste,
    };
    check_depth_c0(depth, c0, "a curve")?;
    let r = net.resolve()?;
    let s = match slope {
        Some(s) => s,
        None => unit_slope(&r.network, r.q_star, t)?,
    };
    let ste = Ste::new(s, t)?;
    let m = backward_factor(&r.network, r.q_star, &ste);
    let bar = layer_bar(depth);
    let never = std::sync::atomic::AtomicBool::new(false);
    let curve = backward_curve_with(
        &r.network,
        &ste,
        r.q0,
        c0,
        depth,
        grad_c_out,
        &|l| bar.set_position(l as u64),
        &never,
    )?;
    bar.finish_and_clear();
    let curve = finite_backward_curve(curve, m)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"network": r, "ste": ste, "backward_factor": m, "curve": curve})
            )?
        );
        return Ok(());
    }
    print_network(&r);
    outln!(
        "# STE slope s = {s:.9}{}, threshold t = {t}; backward factor M = {m:.9}",
        if slope.is_none() { " (M = 1)" } else { "" }
    );
    outln!(
        "{:>6} {:>12} {:>14} {:>12} {:>12} {:>12} {:>10}",
        "layer",
        "c",
        "grad ratio",
        "grad corr",
        "ntk_aa",
        "ntk_ab",
        "ntk corr"
    );
    for p in &curve {
        outln!(
            "{:>6} {:>12.8} {:>14.6e} {:>12.8} {:>12.6} {:>12.6} {:>10}",
            p.layer,
            p.c,
            p.grad_norm_ratio,
            p.grad_corr,
            p.ntk_aa,
            p.ntk_ab,
            p.ntk_corr.map_or("-".to_string(), |x| format!("{x:.6}"))
        );
    }
    Ok(())
}

/// The depth curve with a progress bar on stderr (drawn on a terminal
/// only): a layer costs O(N²) bivariate normal CDFs for N states, so long
/// curves of large N take minutes. Ctrl-C ends the process as usual.
fn curve_with_progress(
    r: &ResolvedNetwork,
    c0: f64,
    depth: usize,
) -> Result<Vec<quantdepth::theory::CurvePoint>> {
    if depth > quantdepth::theory::maps::MAX_CURVE_DEPTH {
        anyhow::bail!(
            "invalid --depth {depth}: a depth curve has at most {} layers",
            quantdepth::theory::maps::MAX_CURVE_DEPTH
        );
    }
    let bar = layer_bar(depth);
    let never = std::sync::atomic::AtomicBool::new(false);
    let out = r.network.depth_curve_with(
        r.q0,
        r.q0,
        c0,
        depth,
        &|l| bar.set_position(l as u64),
        &never,
    )?;
    bar.finish_and_clear();
    Ok(out)
}

/// A progress bar over a curve's layers.
fn layer_bar(depth: usize) -> indicatif::ProgressBar {
    progress_bar(
        depth as u64,
        "theory [{elapsed_precise}] {bar:30} {pos}/{len} layers (ETA {eta})",
    )
}

/// A spinner on stderr while `what` is computed (the fixed points c* and
/// q* of a large quantizer take seconds); cleared when it returns.
fn spinning<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let s = indicatif::ProgressBar::new_spinner();
    s.set_message(format!("{what} …"));
    s.enable_steady_tick(std::time::Duration::from_millis(200));
    let out = f();
    s.finish_and_clear();
    out
}

/// Largest N for `theory optimal --nonuniform` (N thresholds optimized jointly).
/// (N = 256 takes about 6 s on a loaded 2-core machine; the cost grows as N³.)
const MAX_NONUNIFORM_STATES: usize = 256;
