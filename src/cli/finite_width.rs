//! `quantdepth theory finite-width`: the 1/n expansion of a pair of inputs
//! (theory::finite_width): what a width-n simulation measures, layer by
//! layer, with the validity of the expansion flagged.

use super::{parse_count, print_network, NetArgs};
use crate::outln;
use anyhow::{Context, Result};
use clap::Args;
use quantdepth::analysis::predicted::{predict_xi_emp, Experiment, XiPrediction};
use quantdepth::setup::parse_int_spec;
use quantdepth::theory::backward::{unit_slope, Ste};
use quantdepth::theory::finite_width::ste::ste_norm_ratio;
use quantdepth::theory::finite_width::{check_width, expand, EPS_FLAG};
use serde_json::json;

/// Options of `theory finite-width`.
#[derive(Args)]
#[command(after_long_help = "\
Columns (per width n; one network measures the average of P pairs):
  c, q          the infinite-width values c^l, q^l
  E[c], E[q]    the predicted means c + dc/n, q + dq/n at width n
  n*dc, n*dq    the 1/n coefficients n(E ĉ − c), n(E q̂ − q)
  sd(c), sd(q)  the standard deviation of one network's ĉ, q̂: √(v/(nP)),
                v = n·Var for one pair
  eps1          n·Var ĉ / (n (1 − |c|)²): the fluctuation against the distance
                to |c| = 1, where a step's correlation map is not analytic
  eps2          |n(E ĉ − c)| / (n |c − c*|): the correction against the signal
  *             eps1 or eps2 > 0.1: the expansion is not to be trusted there

With --ste-threshold: E‖δ^0‖²/‖δ^L‖² of one input at infinite width, to
first order in 1/n, and with the log-normal resummation exp(first-order
term) (use it once L²/n is not small). Each layer's STE mask passes a
fraction of units that follows that layer's fluctuating variance; the
fractions' means and cross-layer covariances give the excess over M^L. The
backward weights are treated as independent of the forward pass.

Model: Gaussian weights W_ij ~ N(0, σ_w²/n), biases N(0, σ_b²); layer 0 is
the simulator's input (an orthonormal pair scaled to exact second moments,
measured exactly); q̂ is the average of the pair's two q̂, as `simulate`
reports it. Pairs in one network are correlated at O(1/n²), so the average
of P pairs has variance (v/(nP))(1 + κP/n) with κ of order 1; the table
keeps v/(nP), a statement about P ≪ n.

With --networks E: the ξ_emp that `run`'s fit returns for E networks at each
width, by a Monte Carlo of that fit on the predicted means and cross-layer
covariance (docs/finite-width.md, section Predicted ξ_emp).

Refused: continuous activations, |c0| = 1, Rademacher or Hadamard weights
(Gaussian weights only), widths below 8, fewer than 3 networks. Derivation
and limits: docs/finite-width.md.")]
pub struct FiniteWidthArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Input correlation c^0, strictly between −1 and 1.
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    c0: f64,
    /// Number of layers L (at least 1).
    #[arg(long, value_name = "L", default_value_t = 20, value_parser = parse_count, allow_negative_numbers = true)]
    depth: usize,
    /// Widths n, comma-separated integers or ranges (each at least 8), e.g. 64,256,1024.
    #[arg(long, value_name = "N[,N...]")]
    width: String,
    /// Pairs P averaged in one network (the simulator's --pairs).
    #[arg(long, value_name = "P", default_value_t = 1, value_parser = parse_count, allow_negative_numbers = true)]
    pairs: usize,
    /// Weight ensemble; only "gaussian" is modelled.
    #[arg(long, value_name = "NAME", default_value = "gaussian")]
    weights: String,
    /// Also predict the straight-through gradient-norm ratio E‖δ^0‖²/‖δ^L‖² of one
    /// input at each width, for the surrogate s·1{|x| ≤ T} (inf: the identity surrogate).
    #[arg(
        long = "ste-threshold",
        value_name = "T",
        allow_negative_numbers = true
    )]
    ste_threshold: Option<f64>,
    /// STE slope s [default: the s that makes the mean-field factor M = 1].
    #[arg(
        long = "ste-slope",
        value_name = "S",
        requires = "ste_threshold",
        allow_negative_numbers = true
    )]
    ste_slope: Option<f64>,
    /// Also predict the ξ_emp that an experiment of E networks (each
    /// averaging --pairs pairs) at each width measures with `run`'s fit:
    /// transient, 1/n mean and the fit's bias (a Monte Carlo of the fit).
    #[arg(long, value_name = "E", value_parser = parse_networks, allow_negative_numbers = true)]
    networks: Option<usize>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// `--networks E`: a count of at least 3 (the fit's jackknife needs 3).
fn parse_networks(s: &str) -> std::result::Result<usize, String> {
    match parse_count(s) {
        Ok(e) if e >= 3 => Ok(e),
        Ok(e) => Err(format!(
            "{e} networks: the prediction mirrors run's jackknife fit, which needs at least 3"
        )),
        Err(_) => Err(format!(
            "{s} is not a whole number of at least 3 (e.g. 16 or 1e3)"
        )),
    }
}

/// Runs `theory finite-width`.
pub fn finite_width(a: &FiniteWidthArgs) -> Result<()> {
    match a.weights.trim() {
        "gaussian" => {}
        "rademacher" | "hadamard" => anyhow::bail!(
            "--weights {}: the finite-width expansion models Gaussian weights only \
             (Rademacher weights add a fourth-cumulant term, orthogonal Hadamard weights \
             remove part of the noise; neither is implemented)",
            a.weights.trim()
        ),
        other => anyhow::bail!(
            "--weights '{other}': one of gaussian, rademacher, hadamard (only gaussian is modelled)"
        ),
    }
    let widths =
        parse_int_spec(&a.width).map_err(|why| anyhow::anyhow!("--width '{}': {why}", a.width))?;
    for &n in &widths {
        check_width(n).with_context(|| format!("--width {n}"))?;
    }
    if a.pairs == 0 {
        anyhow::bail!("--pairs 0: a network measures at least 1 pair");
    }
    if a.depth == 0 {
        anyhow::bail!("--depth 0: the expansion needs at least 1 layer");
    }
    if !(a.c0.is_finite() && a.c0.abs() < 1.0) {
        anyhow::bail!(
            "--c0 {}: the 1/n expansion needs -1 < c0 < 1 (at |c0| = 1 the two inputs coincide up to \
             sign, ĉ stays ±1 at every width, and the step's correlation map has infinite slope there)",
            a.c0
        );
    }
    let r = a.net.resolve()?;
    let e = expand(&r.network, r.q0, a.c0, a.depth)?;
    let xi = r.network.depth_scale(e.q_star, e.c_star);
    let ste = match a.ste_threshold {
        None => None,
        Some(t) => {
            if t.is_nan() || t <= 0.0 {
                anyhow::bail!("--ste-threshold {t}: a number > 0 (inf for the identity surrogate)");
            }
            let slope = match a.ste_slope {
                Some(s) => s,
                None => unit_slope(&r.network, r.q_star, t)?,
            };
            let ste = Ste::new(slope, t)?;
            Some((ste, ste_norm_ratio(&r.network, &ste, r.q0, a.depth)?))
        }
    };
    let ste_at = |n: usize| {
        ste.as_ref().map(|(_, s)| {
            json!({"width": n, "first_order": s.first_order(n), "lognormal": s.lognormal(n)})
        })
    };
    let mut per_width = Vec::with_capacity(widths.len());
    let mut warnings = Vec::new();
    let predict_at = |n: usize| -> Result<Option<XiPrediction>> {
        let Some(networks) = a.networks else {
            return Ok(None);
        };
        let exp = Experiment {
            width: n,
            pairs: a.pairs,
            networks,
            replicates: 1000,
            seed: 1,
        };
        let predicted = predict_xi_emp(&e, xi, &exp).map_err(|err| {
            let why = err.to_string();
            let why = why
                .split_once("no predicted xi_emp: ")
                .map_or(why.as_str(), |(_, w)| w)
                .to_string();
            anyhow::anyhow!("--networks {networks}: no predicted xi_emp at n = {n}: {why}")
        })?;
        Ok(Some(predicted))
    };
    let mut predictions = Vec::new();
    for &n in &widths {
        predictions.push(predict_at(n)?);
        let layers = e.at_width(n, a.pairs)?;
        if a.pairs * 10 > n {
            warnings.push(format!(
                "--pairs {} is not much smaller than n = {n}: the pair average's variance carries \
                 an O(P/n) excess (1 + κP/n, κ of order 1) that the expansion does not model",
                a.pairs
            ));
        }
        per_width.push((n, layers));
    }
    if a.json {
        let widths: Vec<_> = per_width
            .iter()
            .zip(&predictions)
            .map(|((n, layers), pred)| {
                let flagged: Vec<usize> = layers
                    .iter()
                    .filter(|l| l.flagged)
                    .map(|l| l.layer)
                    .collect();
                json!({"width": n, "flagged_layers": flagged, "ste_norm_ratio": ste_at(*n), "xi_emp_predicted": pred, "layers": layers})
            })
            .collect();
        let out = json!({
            "network": r,
            "weights": "gaussian",
            "c0": a.c0,
            "q_star": e.q_star,
            "c_star": e.c_star,
            "xi_c": xi,
            "pairs": a.pairs,
            "eps_flag": EPS_FLAG,
            "ste": ste.as_ref().map(|(st, s)| json!({"surrogate": st, "expansion": s})),
            "expansion": e.layers,
            "widths": widths,
            "warnings": warnings,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_network(&r);
    outln!(
        "# c* = {:.9}, xi_c = {xi:.6}; c0 = {}; Gaussian weights; {} pair(s) per network",
        e.c_star,
        a.c0,
        a.pairs
    );
    for w in &warnings {
        outln!("# warning: {w}");
    }
    for ((n, layers), pred) in per_width.iter().zip(&predictions) {
        outln!("\n# width n = {n}");
        outln!(
            "{:>5} {:>12} {:>12} {:>9} {:>10} {:>12} {:>12} {:>9} {:>10} {:>8} {:>8}",
            "layer",
            "c",
            "E[c]",
            "n*dc",
            "sd(c)",
            "q",
            "E[q]",
            "n*dq",
            "sd(q)",
            "eps1",
            "eps2"
        );
        for (l, o) in layers.iter().zip(&e.layers) {
            outln!(
                "{:>5} {:>12.8} {:>12.8} {:>9.4} {:>10.6} {:>12.8} {:>12.8} {:>9.4} {:>10.6} {:>8.4} {:>8.4}{}",
                l.layer,
                l.c,
                l.mean_c,
                o.dc,
                l.sd_c,
                l.q,
                l.mean_q,
                o.dq,
                l.sd_q,
                l.eps1,
                l.eps2,
                if l.flagged { " *" } else { "" }
            );
        }
        if let Some((st, s)) = &ste {
            outln!(
                "# STE (s = {:.9}, t = {}): E|δ^0|²/|δ^{}|² = {:.6} at infinite width, {:.6} to first order in 1/n, \
                 {:.6} log-normal (L²/n = {:.3})",
                st.slope,
                st.threshold,
                a.depth,
                s.infinite,
                s.first_order(*n),
                s.lognormal(*n),
                (a.depth * a.depth) as f64 / *n as f64
            );
        }
        if let Some(p) = pred {
            outln!(
                "# predicted xi_emp of {} networks x {} pair(s) (run's fit; Monte Carlo of {} experiments): {:.4} ± {:.4} \
                 (one experiment's SD {:.4}) = transient {:.4}, then + 1/n mean {:.4}, then + the fit's bias; its 95% interval covers xi_c in {:.0}% of experiments",
                a.networks.unwrap_or(0),
                a.pairs,
                p.replicates,
                p.xi_pred,
                p.xi_pred_se,
                p.xi_sd,
                p.xi_transient,
                p.xi_mean,
                100.0 * p.mc_covers_theory
            );
        }
        let flagged = layers.iter().filter(|l| l.flagged).count();
        if flagged > 0 {
            outln!(
                "# *: {flagged} of {} layers have eps1 or eps2 > {EPS_FLAG}: the 1/n expansion is not to be trusted there",
                layers.len()
            );
        }
    }
    Ok(())
}
