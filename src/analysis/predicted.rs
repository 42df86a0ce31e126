//! The ξ_emp a width-n experiment should measure: the infinite-width depth
//! scale ξ moved by three effects that the fit of
//! [`fit_depth_scale_networks`] sees and the infinite-width theory does not
//! (docs/finite-width.md, "Predicted ξ_emp"):
//!
//! 1. the transient: the exact infinite-width curve c^l is not a pure
//!    exponential in the fit window (the window starts where |c^l − c*| has
//!    halved; the map is not yet linear there);
//! 2. the 1/n mean: a width-n network's ĉ^l averages to c^l + dc_l/n
//!    ([`Expansion::at_width`]), and the tail relaxes to c* + dc_∞/n rather
//!    than to the c* the fit subtracts;
//! 3. the fit on noisy data: ln|ĉ − c*| is a nonlinear function of the
//!    noisy mean curve, and the window's end and weights are chosen from the
//!    data. This is found by a Monte Carlo of whole experiments: E networks,
//!    each a curve drawn from the predicted means and the predicted
//!    covariance of ĉ between layers (n·Cov(ĉ^l, ĉ^{l'}) from the expansion,
//!    divided by nP for a network's average of P pairs), fitted exactly as a
//!    run fits the simulator's curves.
//!
//! The prediction is ξ_pred = −1/E[b̂], b̂ the fitted log-slope of one
//! experiment (the jackknife interval is an interval for the slope, so
//! −1/E[b̂] is what it covers 95 % of the time when the interval is right).
//! Gaussian weights only, like the expansion.

use super::{fit_depth_scale, fit_depth_scale_networks, CurveSample};
use crate::error::{Error, Result};
use crate::theory::finite_width::Expansion;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Monte Carlo experiments per prediction in a run.
pub const DEFAULT_REPLICATES: usize = 200;

/// Most layers a Monte Carlo experiment draws: the layer covariance and its
/// factor are L × L (O(L²) memory, O(L³) time), so deeper windows are
/// refused with the reason rather than taking minutes and gigabytes.
pub const MAX_MC_LAYERS: usize = 1500;

/// Most work of one prediction's Monte Carlo, in multiply-adds (about
/// 10–20 s on one core): replicates × networks × (L²/2 for a correlated
/// draw of L layers, + L for its share of the jackknife).
pub const MAX_MC_WORK: u128 = 20_000_000_000;

/// Most memory of the networks one Monte Carlo experiment holds (E × L f64).
pub const MAX_MC_BYTES: u128 = 1 << 30;

/// What a width-n experiment with E networks × P pairs should measure.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct XiPrediction {
    /// Input correlation c⁰ of the curve.
    pub c0: f64,
    /// ξ = −1/ln χ(c*), the infinite-width depth scale.
    pub xi_theory: f64,
    /// The fit of the exact infinite-width curve in the window the
    /// experiment's noise would choose: ξ plus the transient.
    pub xi_transient: f64,
    /// The fit of the predicted mean curve c^l + dc_l/n in that window:
    /// transient plus the 1/n mean.
    pub xi_mean: f64,
    /// The prediction −1/E[b̂] over the Monte Carlo experiments: transient,
    /// 1/n mean and the fit's bias on noisy data.
    pub xi_pred: f64,
    /// Its Monte Carlo standard error (delta method on the mean slope).
    pub xi_pred_se: f64,
    /// The spread (standard deviation) of one experiment's ξ_emp, from the
    /// slopes' spread by the delta method.
    pub xi_sd: f64,
    /// Monte Carlo experiments whose fit succeeded.
    pub replicates: usize,
    /// Monte Carlo experiments whose fit failed (too short a window).
    pub failed: usize,
    /// Fraction of the Monte Carlo experiments whose 95 % interval holds ξ.
    pub mc_covers_theory: f64,
    /// Fraction of the Monte Carlo experiments whose 95 % interval holds ξ_pred.
    pub mc_covers_pred: f64,
    /// Layers of the mean curve's fit window where the expansion is flagged
    /// (ε₁ or ε₂ > 0.1): there the prediction is not to be trusted.
    pub flagged_layers: usize,
}

/// The experiment whose ξ_emp is predicted.
#[derive(Debug, Clone, Copy)]
pub struct Experiment {
    /// Width n.
    pub width: usize,
    /// Pairs P per network (one network's ĉ is their average).
    pub pairs: usize,
    /// Networks E.
    pub networks: usize,
    /// Monte Carlo experiments.
    pub replicates: usize,
    /// Seed of the Monte Carlo.
    pub seed: u64,
}

/// The ξ_emp that `exp` should measure for the curve `expansion` (its
/// depth is the experiment's), with `xi` the infinite-width ξ at c*.
pub fn predict_xi_emp(expansion: &Expansion, xi: f64, exp: &Experiment) -> Result<XiPrediction> {
    if exp.networks < 3 {
        return Err(Error::invalid(
            "networks",
            exp.networks,
            "the prediction mirrors the jackknife fit, which needs at least 3 networks",
        ));
    }
    if exp.replicates < 2 {
        return Err(Error::invalid(
            "replicates",
            exp.replicates,
            "at least 2 Monte Carlo experiments",
        ));
    }
    let rows = expansion.at_width(exp.width, exp.pairs)?;
    let c_star = expansion.c_star;
    let e = exp.networks as f64;
    let sample = |mean: &dyn Fn(usize) -> f64| -> Vec<CurveSample> {
        rows.iter()
            .enumerate()
            .map(|(l, r)| CurveSample {
                layer: r.layer,
                mean: mean(l),
                se: Some(r.sd_c / e.sqrt()),
            })
            .collect()
    };
    let transient = fit_depth_scale(&sample(&|l| rows[l].c), c_star)?;
    let mean_fit = fit_depth_scale(&sample(&|l| rows[l].mean_c), c_star)?;
    let flagged_layers = rows[mean_fit.first_layer..=mean_fit.last_layer]
        .iter()
        .filter(|r| r.flagged)
        .count();

    // The fit never looks past the noise floor: the simulated experiments
    // draw layers up to twice the mean curve's window end (their own windows
    // end near it), not the whole network.
    let layers = (2 * mean_fit.last_layer + 10).min(rows.len());
    if layers > MAX_MC_LAYERS {
        return Err(Error::TooLarge(format!(
            "no predicted xi_emp: the fit window reaches layer {}, and its Monte Carlo would draw \
             {layers} correlated layers (at most {MAX_MC_LAYERS}: the layer covariance is L × L)",
            mean_fit.last_layer
        )));
    }
    let (r, e, l) = (exp.replicates as u128, exp.networks as u128, layers as u128);
    let work = r.saturating_mul(e).saturating_mul(l * (l + 1) / 2 + l);
    let bytes = e.saturating_mul(l * 8);
    if work > MAX_MC_WORK || bytes > MAX_MC_BYTES {
        return Err(Error::TooLarge(format!(
            "no predicted xi_emp: its Monte Carlo would fit {} simulated experiments of {} \
             networks × {layers} layers (≈ {work:.1e} multiply-adds, {} MiB an experiment; at \
             most {MAX_MC_WORK:.0e} and {} MiB): predict for fewer networks \
             or fewer replicates",
            exp.replicates,
            exp.networks,
            bytes >> 20,
            MAX_MC_BYTES >> 20
        )));
    }
    let chol = cholesky(&layer_covariance(expansion, layers, exp.width, exp.pairs));
    let mut rng = StdRng::seed_from_u64(exp.seed);
    let mut slopes = Vec::with_capacity(exp.replicates);
    let mut intervals = Vec::with_capacity(exp.replicates);
    let mut z = vec![0.0; layers];
    for _ in 0..exp.replicates {
        let nets: Vec<Vec<f64>> = (0..exp.networks)
            .map(|_| {
                for v in z.iter_mut() {
                    *v = StandardNormal.sample(&mut rng);
                }
                (0..layers)
                    .map(|l| rows[l].mean_c + (0..=l).map(|k| chol[l][k] * z[k]).sum::<f64>())
                    .collect()
            })
            .collect();
        if let Ok(f) = fit_depth_scale_networks(&nets, c_star) {
            slopes.push(-1.0 / f.xi);
            intervals.push((f.ci_low, f.ci_high));
        }
    }
    let ok = slopes.len();
    if ok < 2 {
        return Err(Error::Numerical(format!(
            "the fit failed in {} of {} simulated experiments: no prediction",
            exp.replicates - ok,
            exp.replicates
        )));
    }
    let m = ok as f64;
    let b = slopes.iter().sum::<f64>() / m;
    let sd_b = (slopes.iter().map(|s| (s - b).powi(2)).sum::<f64>() / (m - 1.0)).sqrt();
    let xi_pred = -1.0 / b;
    let covers = |x: f64| {
        intervals
            .iter()
            .filter(|(lo, hi)| *lo <= x && x <= *hi)
            .count() as f64
            / m
    };
    Ok(XiPrediction {
        c0: expansion.c0,
        xi_theory: xi,
        xi_transient: transient.xi,
        xi_mean: mean_fit.xi,
        xi_pred,
        xi_pred_se: sd_b / m.sqrt() / (b * b),
        xi_sd: sd_b / (b * b),
        replicates: ok,
        failed: exp.replicates - ok,
        mc_covers_theory: covers(xi),
        mc_covers_pred: covers(xi_pred),
        flagged_layers,
    })
}

/// Cov(ĉ^l, ĉ^{l'}) of one network's P-pair average, the first `layers` layers:
/// (1/(nP))·∇c^{l'}ᵀ J^{l'−1}⋯J^l Σ^l ∇c^l, built column by column by
/// propagating Σ^l with J (O(L²) 3×3 products).
fn layer_covariance(
    expansion: &Expansion,
    layers: usize,
    width: usize,
    pairs: usize,
) -> Vec<Vec<f64>> {
    let ls = &expansion.layers[..layers];
    let scale = 1.0 / (width as f64 * pairs as f64);
    let mut cov = vec![vec![0.0; ls.len()]; ls.len()];
    for l in 0..ls.len() {
        let mut c = ls[l].sigma;
        for lp in l..ls.len() {
            let gl = ls[l].grad_c;
            let gp = ls[lp].grad_c;
            let v: f64 = (0..3)
                .map(|x| gp[x] * (0..3).map(|y| c[x][y] * gl[y]).sum::<f64>())
                .sum();
            cov[l][lp] = v * scale;
            cov[lp][l] = v * scale;
            let j = ls[lp].jacobian;
            c = [0, 1, 2].map(|x| [0, 1, 2].map(|y| (0..3).map(|k| j[x][k] * c[k][y]).sum()));
        }
    }
    cov
}

/// Lower-triangular L with L·Lᵀ = `a` for a symmetric positive
/// semi-definite `a`: a pivot at or below rounding (layer 0 is measured
/// exactly; deep layers are nearly collinear) gives a zero column.
fn cholesky(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for j in 0..n {
        let d = a[j][j] - (0..j).map(|k| l[j][k] * l[j][k]).sum::<f64>();
        if d <= 1e-12 * a[j][j].abs() || d <= 0.0 {
            continue;
        }
        let ljj = d.sqrt();
        l[j][j] = ljj;
        for i in j + 1..n {
            let s = a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            l[i][j] = s / ljj;
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The factor reproduces its matrix, and a singular (rank-1) matrix
    /// gets a zero column instead of a NaN.
    #[test]
    fn cholesky_factors_and_tolerates_rank_deficiency() {
        let a = vec![
            vec![4.0, 2.0, 0.4],
            vec![2.0, 5.0, 1.0],
            vec![0.4, 1.0, 3.0],
        ];
        let l = cholesky(&a);
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| l[i][k] * l[j][k]).sum();
                assert!((v - a[i][j]).abs() < 1e-12, "{i} {j}: {v}");
            }
        }
        let r = vec![vec![1.0, 2.0], vec![2.0, 4.0]];
        let l = cholesky(&r);
        assert_eq!(l[1][1], 0.0);
        assert!((l[1][0] - 2.0).abs() < 1e-15);
    }
}
