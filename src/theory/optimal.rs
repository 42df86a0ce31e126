//! Optimal initialization of the uniform quantizer and the
//! quantization–depth trade-off (THEORY.md §6).
//!
//! With σ_b = 0 and the uniform symmetric quantizer, χ(c* = 0) depends on
//! the spacing only through D̃ = Δ/√q*:
//!
//! χ(D̃) = S²/V,  S = Σₖ ϕ(ĝₖ),  V = Σₖ,ₘ Φ(min(ĝₖ, ĝₘ))·Φ̄(max(ĝₖ, ĝₘ)),  ĝₖ = D̃(k − N/2).
//!
//! Differentiating (dS/dD̃ = −D̃ Σ ϕ(ĝₖ) uₖ², dV/dD̃ = −2 Σ ϕ(ĝₖ) uₖ², uₖ = k − N/2)
//! gives dχ/dD̃ ∝ S − D̃·V, so the optimum solves the implicit equation
//! **D̃·V(D̃) = S(D̃)**, which is solved here by Brent's method, not on a grid.
//!
//! 1 − χ is computed without cancellation as R/(β² + R): with β = S the
//! regression slope of φ(z) on z, R = E[(φ(z) − E φ − βz)²] is the residual
//! variance, an integral of a non-negative function computed interval by
//! interval, and Var φ = β² + R exactly.

use crate::activation::{Activation, Quantizer};
use crate::error::{Error, Result};
use crate::gauss;
use crate::quadrature::{brent_root, Neumaier};
use crate::theory::maps::Network;

/// Starting guess for D̃_opt: the authors' published fit
/// ln D̃_opt ≈ 1.40 − 0.879·ln(N + 1) (THEORY.md §6). Only a starting point;
/// the root is then bracketed and solved exactly.
const D_OPT_FIT_INTERCEPT: f64 = 1.40;
const D_OPT_FIT_SLOPE: f64 = -0.879;

/// Default κ in L_max = κ·ξ_max: Schoenholz et al. (2017) found networks
/// trainable up to about 6ξ.
pub const DEFAULT_KAPPA: f64 = 6.0;

/// The optimum of the uniform quantizer with N states.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UniformOptimum {
    /// Number of states N.
    pub states: usize,
    /// D̃_opt = Δ/√q* at the optimum; `None` for N = 2 (χ does not depend on Δ).
    pub d_opt: Option<f64>,
    /// χ_max = χ(D̃_opt).
    pub chi_max: f64,
    /// 1 − χ_max, computed without cancellation.
    pub one_minus_chi_max: f64,
    /// ξ_max = −1/ln χ_max.
    pub xi_max: f64,
    /// L_max = κ·ξ_max.
    pub l_max: f64,
}

/// χ and 1 − χ of a quantizer at c = 0, σ_b = 0, for thresholds already
/// divided by √q*; 1 − χ = R/(β² + R) without cancellation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiAtZero {
    /// χ(0) = β²/Var φ.
    pub chi: f64,
    /// 1 − χ(0) = R/Var φ.
    pub one_minus_chi: f64,
}

/// χ(0) and 1 − χ(0) (σ_b = 0, so χ = σ_w² (E φ')²/q* = Corr(z, φ(z))²)
/// for a quantizer with `levels` and normalized thresholds `ghat` = g/√q*.
///
/// Works for any quantizer; the residual R = E[(φ − μ − βz)²] is summed over
/// the N intervals, interior ones by 8-point Gauss–Legendre about each
/// interval's midpoint (non-negative integrand, no cancellation), the two
/// unbounded ones in closed form.
pub fn chi_at_zero(levels: &[f64], ghat: &[f64]) -> ChiAtZero {
    let steps: Vec<f64> = levels.windows(2).map(|w| w[1] - w[0]).collect();
    let mut beta = Neumaier::default();
    let mut mean = Neumaier::default();
    mean.add(levels[0]);
    for (a, g) in steps.iter().zip(ghat) {
        beta.add(a * gauss::pdf(*g));
        mean.add(a * gauss::sf(*g));
    }
    let (beta, mu) = (beta.total(), mean.total());
    let resid = residual_variance(levels, ghat, mu, beta);
    let var = beta * beta + resid;
    ChiAtZero {
        chi: beta * beta / var,
        one_minus_chi: resid / var,
    }
}

/// R = E[(φ(z) − μ − βz)²], z ~ N(0, 1).
fn residual_variance(levels: &[f64], ghat: &[f64], mu: f64, beta: f64) -> f64 {
    // 8-point Gauss–Legendre on [−1, 1] (exact to degree 15).
    const X: [f64; 4] = [
        0.183_434_642_495_649_8,
        0.525_532_409_916_329_0,
        0.796_666_477_413_626_7,
        0.960_289_856_497_536_3,
    ];
    const W: [f64; 4] = [
        0.362_683_783_378_362_0,
        0.313_706_645_877_887_3,
        0.222_381_034_453_374_5,
        0.101_228_536_290_376_3,
    ];
    let n = levels.len();
    let mut r = Neumaier::default();
    // Upper tail: ∫_g^∞ (e − β t)² ϕ(g + t) dt, e = y − μ − βg.
    let tail = |g: f64, y: f64, b: f64| -> f64 {
        let e = y - mu - b * g;
        let (p, s) = (gauss::pdf(g), gauss::sf(g));
        let j1 = p - g * s;
        let j2 = (1.0 + g * g) * s - g * p;
        (e * e * s - 2.0 * e * b * j1 + b * b * j2).max(0.0)
    };
    r.add(tail(ghat[n - 2], levels[n - 1], beta));
    // Lower tail, by z → −z: level y, threshold −g, slope −β.
    r.add(tail(-ghat[0], levels[0], -beta));
    for j in 1..n - 1 {
        let (lo, hi) = (ghat[j - 1], ghat[j]);
        let panels = (hi - lo).ceil().max(1.0) as usize;
        let h = (hi - lo) / panels as f64;
        for p in 0..panels {
            let m = lo + (p as f64 + 0.5) * h;
            let e = levels[j] - mu - beta * m;
            for (x, w) in X.iter().zip(W) {
                for t in [-0.5 * h * x, 0.5 * h * x] {
                    let d = e - beta * t;
                    r.add(0.5 * h * w * d * d * gauss::pdf(m + t));
                }
            }
        }
    }
    r.total()
}

/// Normalized thresholds ĝₖ = D̃(k − N/2) of the uniform quantizer.
fn uniform_ghat(n: usize, d: f64) -> Vec<f64> {
    (1..n).map(|k| d * (k as f64 - n as f64 / 2.0)).collect()
}

/// Centred unit-step levels yⱼ = j − (N − 1)/2 (χ is scale-free).
fn unit_levels(n: usize) -> Vec<f64> {
    (0..n).map(|j| j as f64 - (n as f64 - 1.0) / 2.0).collect()
}

/// S(D̃) = Σ ϕ(ĝₖ) and V(D̃) = Σₖ,ₘ Φ(min)Φ̄(max) in O(N) (prefix sums;
/// all terms positive).
fn s_and_v(n: usize, d: f64) -> (f64, f64) {
    let g = uniform_ghat(n, d);
    let sf: Vec<f64> = g.iter().map(|&x| gauss::sf(x)).collect();
    let m = g.len();
    let (mut s, mut v, mut prefix) = (Neumaier::default(), Neumaier::default(), 0.0);
    for k in 0..m {
        let cdf = sf[m - 1 - k]; // Φ(ĝₖ) = Φ̄(−ĝₖ) = Φ̄(ĝ_{N−k}) by symmetry.
        s.add(gauss::pdf(g[k]));
        v.add(sf[k] * (cdf + 2.0 * prefix));
        prefix += cdf;
    }
    (s.total(), v.total())
}

/// χ(D̃) = S²/V for the uniform quantizer with N states at normalized
/// spacing D̃ (σ_b = 0, c* = 0).
pub fn chi_uniform(n: usize, d: f64) -> f64 {
    let (s, v) = s_and_v(n, d);
    s * s / v
}

/// χ and 1 − χ (without cancellation) for the uniform quantizer at D̃.
pub fn chi_uniform_parts(n: usize, d: f64) -> ChiAtZero {
    chi_at_zero(&unit_levels(n), &uniform_ghat(n, d))
}

/// D̃_opt(N) = argmax χ(D̃), the root of D̃·V(D̃) − S(D̃) (None for N = 2).
pub fn optimal_spacing(n: usize) -> Result<Option<f64>> {
    check_states(n)?;
    if n == 2 {
        return Ok(None);
    }
    let guess = (D_OPT_FIT_INTERCEPT + D_OPT_FIT_SLOPE * ((n + 1) as f64).ln()).exp();
    let g = |d: f64| {
        let (s, v) = s_and_v(n, d);
        d * v / s - 1.0
    };
    let (mut lo, mut hi) = (0.5 * guess, 2.0 * guess);
    for _ in 0..60 {
        if g(lo) < 0.0 {
            break;
        }
        lo *= 0.5;
    }
    for _ in 0..60 {
        if g(hi) > 0.0 {
            break;
        }
        hi *= 2.0;
    }
    brent_root(g, lo, hi, 1e-14 * guess)
        .map(Some)
        .ok_or_else(|| {
            Error::Numerical(format!("could not bracket the optimal spacing for N = {n}"))
        })
}

fn check_states(n: usize) -> Result<()> {
    if n < 2 {
        return Err(Error::invalid(
            "states N",
            n,
            "a quantizer needs N >= 2 states",
        ));
    }
    Ok(())
}

/// The optimum for N states: D̃_opt, χ_max, 1 − χ_max, ξ_max and
/// L_max = κ·ξ_max.
pub fn uniform_optimum(n: usize, kappa: f64) -> Result<UniformOptimum> {
    if !(kappa.is_finite() && kappa > 0.0) {
        return Err(Error::invalid(
            "kappa",
            kappa,
            "must be a finite number > 0",
        ));
    }
    let d_opt = optimal_spacing(n)?;
    // N = 2: S = ϕ(0), V = Φ(0)Φ̄(0) = ¼, so χ = 4ϕ(0)² = 2/π whatever the spacing.
    let parts = chi_uniform_parts(n, d_opt.unwrap_or(1.0));
    let xi_max = -1.0 / (-parts.one_minus_chi).ln_1p();
    Ok(UniformOptimum {
        states: n,
        d_opt,
        chi_max: parts.chi,
        one_minus_chi_max: parts.one_minus_chi,
        xi_max,
        l_max: kappa * xi_max,
    })
}

/// The optimal initialization of the uniform quantizer with N states,
/// spacing Δ and amplitude A, σ_b = 0: σ_w^opt puts √q* at Δ/D̃_opt(N), so
/// σ_w^opt = √(q*/E[φ(√q* z)²]). For N = 2 every σ_w is optimal; the one
/// giving q* = 1 is returned. Returns (σ_w^opt, q*).
pub fn optimal_sigma_w(n: usize, spacing: f64, amplitude: f64) -> Result<(f64, f64)> {
    let quant = Quantizer::uniform(n, spacing, amplitude)?;
    let q_star = match optimal_spacing(n)? {
        Some(d) => (spacing / d).powi(2),
        None => 1.0,
    };
    let sigma_w = (q_star / quant.second_moment(q_star)).sqrt();
    Ok((sigma_w, q_star))
}

/// The optimally initialized network for a uniform quantizer (σ_b = 0).
pub fn optimal_network(n: usize, spacing: f64, amplitude: f64) -> Result<Network> {
    let (sigma_w, _) = optimal_sigma_w(n, spacing, amplitude)?;
    Network::new(
        Activation::Quantized(Quantizer::uniform(n, spacing, amplitude)?),
        sigma_w,
        0.0,
    )
}
