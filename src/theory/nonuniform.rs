//! Optimal non-uniform quantizers: maximize χ(c* = 0) over all thresholds
//! of a symmetric quantizer with equal level steps (σ_b = 0), with analytic
//! gradients.
//!
//! With levels yⱼ = j − (N − 1)/2 and thresholds ĝₖ (in units of √q*),
//! χ = S²/V, S = Σₖ ϕ(ĝₖ), V = Var φ, and
//!
//! ∂S/∂ĝₖ = −ĝₖ ϕ(ĝₖ),   ∂V/∂ĝₖ = −ϕ(ĝₖ)(yₖ₋₁ + yₖ − 2 E φ),
//!
//! (moving threshold k turns a sliver of level yₖ into yₖ₋₁). The symmetric
//! thresholds are parameterized without constraints by log-increments
//! (p₁ = e^θ₁, pⱼ = pⱼ₋₁ + e^θⱼ for the positive ones; N even keeps 0), and
//! ln(1 − χ) — computed without cancellation — is minimized by BFGS with a
//! backtracking line search, from the uniform optimum.
//!
//! **Result.** With equal level steps the uniform optimum is already a
//! stationary point for every threshold: χ = Corr(z, φ(z))², and at the
//! optimal scale the best thresholds for equally spaced levels are the
//! midpoints between them (Lloyd's condition), i.e. uniform. The gradient
//! vanishes there (to rounding) and BFGS stays put: the gain is exactly 1.
//!
//! **Free levels.** Optimizing the levels as well makes the problem the
//! Lloyd–Max quantizer of a Gaussian (Lloyd 1957/1982; Max 1960): maximizing
//! Corr(z, φ)² is minimizing the mean-square error of the rescaled φ, whose
//! optimum has levels at the interval centroids and thresholds at the
//! midpoints, and there 1 − χ equals that minimal error. [`lloyd_max`]
//! solves it by Lloyd's iteration and checks stationarity with the analytic
//! gradient in levels and thresholds.

use crate::error::{Error, Result};
use crate::gauss;
use crate::quadrature::Neumaier;
use crate::theory::optimal::{chi_at_zero, optimal_spacing, ChiAtZero};

/// The non-uniform optimum for N states.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NonUniformOptimum {
    /// N.
    pub states: usize,
    /// The optimal thresholds ĝ₁ < … < ĝ_{N−1} (units of √q*).
    pub thresholds: Vec<f64>,
    /// χ_max over symmetric quantizers with equal level steps.
    pub chi_max: f64,
    /// 1 − χ_max (no cancellation).
    pub one_minus_chi_max: f64,
    /// ξ_max = −1/ln χ_max.
    pub xi_max: f64,
    /// (1 − χ_max of the uniform optimum)/(1 − χ_max here): the factor gained in ξ.
    pub gain: f64,
    /// BFGS iterations used.
    pub iterations: usize,
}

/// χ and its gradient with respect to every level and every threshold, for
/// any quantizer: ∂S/∂yⱼ = ϕ(ĝⱼ) − ϕ(ĝⱼ₊₁) (ĝ₀ = −∞, ĝ_N = ∞) and
/// ∂V/∂yⱼ = 2Pⱼ(yⱼ − E φ), Pⱼ the probability of level j's interval.
pub fn chi_gradients(levels: &[f64], ghat: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
    let (chi, dg) = chi_and_gradient(levels, ghat);
    let n = levels.len();
    let pdf_at = |k: isize| {
        if k < 0 || k as usize >= ghat.len() {
            0.0
        } else {
            gauss::pdf(ghat[k as usize])
        }
    };
    let mut s = Neumaier::default();
    let mut mu = Neumaier::default();
    let probs: Vec<f64> = (0..n).map(|j| interval_probability(ghat, j)).collect();
    for j in 0..n {
        mu.add(levels[j] * probs[j]);
    }
    for (k, &g) in ghat.iter().enumerate() {
        s.add((levels[k + 1] - levels[k]) * gauss::pdf(g));
    }
    let (s, mu) = (s.total(), mu.total());
    let v = s * s / chi;
    let dy = (0..n)
        .map(|j| {
            let ds = pdf_at(j as isize - 1) - pdf_at(j as isize);
            let dv = 2.0 * probs[j] * (levels[j] - mu);
            (2.0 * s * ds * v - s * s * dv) / (v * v)
        })
        .collect();
    (chi, dy, dg)
}

/// P(ĝⱼ < z < ĝⱼ₊₁) for level j (tails from Φ̄, no cancellation).
fn interval_probability(ghat: &[f64], j: usize) -> f64 {
    let lo = if j == 0 {
        f64::NEG_INFINITY
    } else {
        ghat[j - 1]
    };
    let hi = if j == ghat.len() {
        f64::INFINITY
    } else {
        ghat[j]
    };
    if lo >= 0.0 {
        gauss::sf(lo) - gauss::sf(hi)
    } else if hi <= 0.0 {
        gauss::sf(-hi) - gauss::sf(-lo)
    } else {
        1.0 - gauss::sf(hi) - gauss::sf(-lo)
    }
}

/// The optimum over levels and thresholds together: the Lloyd–Max quantizer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LloydMax {
    /// N.
    pub states: usize,
    /// Levels (centroids, for z ~ N(0, 1)).
    pub levels: Vec<f64>,
    /// Thresholds ĝ (midpoints), units of √q*.
    pub thresholds: Vec<f64>,
    /// χ_max.
    pub chi_max: f64,
    /// 1 − χ_max (equals the Lloyd–Max mean-square error).
    pub one_minus_chi_max: f64,
    /// ξ_max.
    pub xi_max: f64,
    /// (1 − χ_max uniform)/(1 − χ_max here).
    pub gain: f64,
    /// Euclidean norm of the analytic gradient of χ in (levels, thresholds) at the end.
    pub gradient_norm: f64,
    /// Lloyd iterations used.
    pub iterations: usize,
}

/// The Lloyd–Max quantizer with N levels for a standard Gaussian, by
/// Lloyd's iteration from the uniform optimum (levels ← centroids,
/// thresholds ← midpoints) until thresholds move less than 1e-14.
pub fn lloyd_max(n: usize) -> Result<LloydMax> {
    if n < 2 {
        return Err(Error::invalid(
            "states N",
            n,
            "a quantizer needs N >= 2 levels",
        ));
    }
    let d = optimal_spacing(n)?.unwrap_or(1.0);
    let mut g: Vec<f64> = (1..n).map(|k| d * (k as f64 - n as f64 / 2.0)).collect();
    let mut y = vec![0.0; n];
    let mut iterations = 0;
    for it in 0..1_000_000 {
        iterations = it + 1;
        for (j, yj) in y.iter_mut().enumerate() {
            let lo = if j == 0 { f64::NEG_INFINITY } else { g[j - 1] };
            let hi = if j == n - 1 { f64::INFINITY } else { g[j] };
            let p = interval_probability(&g, j);
            let (pl, ph) = (
                if lo.is_finite() { gauss::pdf(lo) } else { 0.0 },
                if hi.is_finite() { gauss::pdf(hi) } else { 0.0 },
            );
            *yj = (pl - ph) / p;
        }
        let mut moved = 0f64;
        for k in 0..n - 1 {
            let m = 0.5 * (y[k] + y[k + 1]);
            moved = moved.max((m - g[k]).abs());
            g[k] = m;
        }
        if moved < 1e-14 {
            break;
        }
    }
    let parts = chi_at_zero(&y, &g);
    let (_, dy, dg) = chi_gradients(&y, &g);
    let gradient_norm = dy.iter().chain(&dg).map(|x| x * x).sum::<f64>().sqrt();
    let uniform = chi_at_zero(
        &levels(n),
        &(1..n)
            .map(|k| d * (k as f64 - n as f64 / 2.0))
            .collect::<Vec<_>>(),
    )
    .one_minus_chi;
    Ok(LloydMax {
        states: n,
        levels: y,
        thresholds: g,
        chi_max: parts.chi,
        one_minus_chi_max: parts.one_minus_chi,
        xi_max: -1.0 / (-parts.one_minus_chi).ln_1p(),
        gain: uniform / parts.one_minus_chi,
        gradient_norm,
        iterations,
    })
}

/// Centred unit-step levels.
fn levels(n: usize) -> Vec<f64> {
    (0..n).map(|j| j as f64 - (n as f64 - 1.0) / 2.0).collect()
}

/// χ and its gradient with respect to every threshold (equal unit steps).
pub fn chi_and_gradient(levels: &[f64], ghat: &[f64]) -> (f64, Vec<f64>) {
    let mut s = Neumaier::default();
    let mut mean = Neumaier::default();
    mean.add(levels[0]);
    for (k, &g) in ghat.iter().enumerate() {
        let a = levels[k + 1] - levels[k];
        s.add(a * gauss::pdf(g));
        mean.add(a * gauss::sf(g));
    }
    let (s, mu) = (s.total(), mean.total());
    let parts: ChiAtZero = chi_at_zero(levels, ghat);
    let v = s * s / parts.chi;
    let grad = ghat
        .iter()
        .enumerate()
        .map(|(k, &g)| {
            let a = levels[k + 1] - levels[k];
            let p = gauss::pdf(g);
            let ds = -a * g * p;
            let dv = -p * a * (levels[k] + levels[k + 1] - 2.0 * mu);
            (2.0 * s * ds * v - s * s * dv) / (v * v)
        })
        .collect();
    (parts.chi, grad)
}

/// Thresholds from the unconstrained parameters.
fn thresholds(n: usize, theta: &[f64]) -> Vec<f64> {
    let mut pos = Vec::with_capacity(theta.len());
    let mut acc = 0.0;
    for t in theta {
        acc += t.exp();
        pos.push(acc);
    }
    let mut g: Vec<f64> = pos.iter().rev().map(|p| -p).collect();
    if n.is_multiple_of(2) {
        g.push(0.0);
    }
    g.extend(&pos);
    g
}

/// ln(1 − χ) and its gradient in θ.
fn objective(n: usize, lv: &[f64], theta: &[f64]) -> (f64, Vec<f64>) {
    let g = thresholds(n, theta);
    let (_, dchi) = chi_and_gradient(lv, &g);
    let om = chi_at_zero(lv, &g).one_minus_chi;
    let m = theta.len();
    let mid = (n - 1) / 2 + usize::from(n.is_multiple_of(2)); // index of p₁ in g
                                                              // d/dp_j = d/dg(upper j) − d/dg(mirror j)
    let dp: Vec<f64> = (0..m)
        .map(|j| dchi[mid + j] - dchi[mid - 1 - j - usize::from(n.is_multiple_of(2))])
        .collect();
    let mut grad = vec![0.0; m];
    let mut tail = 0.0;
    for j in (0..m).rev() {
        tail += dp[j];
        grad[j] = -theta[j].exp() * tail / om;
    }
    (om.ln(), grad)
}

/// The optimum over symmetric quantizers with N states and equal level steps.
pub fn nonuniform_optimum(n: usize) -> Result<NonUniformOptimum> {
    if n < 3 {
        return Err(Error::invalid(
            "states N",
            n,
            "a non-uniform quantizer needs N >= 3 (N = 2 has one threshold, at 0)",
        ));
    }
    let lv = levels(n);
    let d = optimal_spacing(n)?.unwrap_or(1.0);
    let m = (n - 1) / 2;
    // Uniform start: positive thresholds D(k − N/2) for the upper half.
    let start: Vec<f64> = (1..n)
        .map(|k| d * (k as f64 - n as f64 / 2.0))
        .filter(|g| *g > 1e-12)
        .collect();
    let mut theta = Vec::with_capacity(m);
    let mut prev = 0.0;
    for p in &start {
        theta.push((p - prev).ln());
        prev = *p;
    }
    let uniform = chi_at_zero(&lv, &thresholds(n, &theta)).one_minus_chi;
    let (mut f, mut g) = objective(n, &lv, &theta);
    let mut h = vec![vec![0.0; m]; m];
    for (i, row) in h.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let mut iterations = 0;
    for it in 0..2000 {
        iterations = it;
        let gnorm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        if gnorm < 1e-9 {
            break;
        }
        let dir: Vec<f64> = (0..m)
            .map(|i| -(0..m).map(|j| h[i][j] * g[j]).sum::<f64>())
            .collect();
        let slope: f64 = dir.iter().zip(&g).map(|(d, g)| d * g).sum();
        let (dir, slope) = if slope < 0.0 {
            (dir, slope)
        } else {
            (g.iter().map(|x| -x).collect(), -gnorm * gnorm)
        };
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let trial: Vec<f64> = theta.iter().zip(&dir).map(|(t, d)| t + step * d).collect();
            let (ft, gt) = objective(n, &lv, &trial);
            if ft.is_finite() && ft <= f + 1e-4 * step * slope {
                accepted = Some((trial, ft, gt));
                break;
            }
            step *= 0.5;
        }
        let Some((next, fn_, gn)) = accepted else {
            break;
        };
        let s: Vec<f64> = next.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        if sy > 1e-300 {
            // BFGS update of the inverse Hessian.
            let hy: Vec<f64> = (0..m)
                .map(|i| (0..m).map(|j| h[i][j] * y[j]).sum())
                .collect();
            let yhy: f64 = y.iter().zip(&hy).map(|(a, b)| a * b).sum();
            for i in 0..m {
                for j in 0..m {
                    h[i][j] +=
                        (1.0 + yhy / sy) * s[i] * s[j] / sy - (hy[i] * s[j] + s[i] * hy[j]) / sy;
                }
            }
        }
        let done = (f - fn_).abs() < 1e-15 * f.abs();
        theta = next;
        f = fn_;
        g = gn;
        if done {
            break;
        }
    }
    let ghat = thresholds(n, &theta);
    let parts = chi_at_zero(&lv, &ghat);
    Ok(NonUniformOptimum {
        states: n,
        thresholds: ghat,
        chi_max: parts.chi,
        one_minus_chi_max: parts.one_minus_chi,
        xi_max: -1.0 / (-parts.one_minus_chi).ln_1p(),
        gain: uniform / parts.one_minus_chi,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analytic_gradient_matches_finite_differences() {
        let lv = levels(6);
        let g = vec![-1.7, -0.9, 0.1, 0.8, 1.9];
        let (chi, grad) = chi_and_gradient(&lv, &g);
        assert!((chi - chi_at_zero(&lv, &g).chi).abs() < 1e-15);
        for k in 0..g.len() {
            let h = 1e-6;
            let (mut up, mut dn) = (g.clone(), g.clone());
            up[k] += h;
            dn[k] -= h;
            let fd = (chi_at_zero(&lv, &up).chi - chi_at_zero(&lv, &dn).chi) / (2.0 * h);
            assert!(
                (fd - grad[k]).abs() < 1e-8,
                "k = {k}: fd {fd} vs analytic {}",
                grad[k]
            );
        }
    }

    #[test]
    fn level_gradient_matches_finite_differences() {
        let lv = vec![-1.3, -0.2, 0.4, 1.7, 2.2];
        let g = vec![-0.9, 0.1, 0.8, 1.9];
        let (_, dy, dg) = chi_gradients(&lv, &g);
        let h = 1e-6;
        for j in 0..lv.len() {
            let (mut up, mut dn) = (lv.clone(), lv.clone());
            up[j] += h;
            dn[j] -= h;
            let fd = (chi_at_zero(&up, &g).chi - chi_at_zero(&dn, &g).chi) / (2.0 * h);
            assert!(
                (fd - dy[j]).abs() < 1e-8,
                "level {j}: fd {fd} vs analytic {}",
                dy[j]
            );
        }
        for k in 0..g.len() {
            let (mut up, mut dn) = (g.clone(), g.clone());
            up[k] += h;
            dn[k] -= h;
            let fd = (chi_at_zero(&lv, &up).chi - chi_at_zero(&lv, &dn).chi) / (2.0 * h);
            assert!(
                (fd - dg[k]).abs() < 1e-8,
                "threshold {k}: fd {fd} vs analytic {}",
                dg[k]
            );
        }
    }
}
