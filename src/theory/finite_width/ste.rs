//! The straight-through gradient norm at finite width: E‖δ⁰‖²/‖δ^L‖² of
//! one input (THEORY.md §7, §9; docs/finite-width.md).
//!
//! δ^l = s·1{|h^l| ≤ t} ⊙ (W^{l+1})ᵀ δ^{l+1}. With the backward weights
//! treated as independent of the forward pass (gradient independence), each
//! layer multiplies ‖δ‖² by σ_w² s² (1/n) Σⱼ 1{|h_j^l| ≤ t} z_j², z_j i.i.d.
//! N(0, 1), so E‖δ⁰‖²/‖δ^L‖² = (σ_w² s²)^L E Π_{l<L} A_l with A_l the
//! active fraction of layer l. A_l tracks the forward variance K^l_aa:
//! A_l = a(K^l) + ν_l, a(q) = erf(t/√(2q)), ν_l the sampling noise of the
//! n units given K^l, correlated with the next layer's K^{l+1} (the same
//! rows). To O(1/n):
//!
//! * n(E A_l − a_l) = a′ M_l + ½ a″ V_l (layer 0, the orthonormal input:
//!   −q⁰² a″(q⁰));
//! * n Cov(A_l, A_{l′}) = a′_{l′} (Π_{m=l+1}^{l′−1} j_m) g_l for l < l′, with
//!   g_l = n Cov(A_l, K^{l+1}) = a′_l j_l V_l + σ_w² b_l,
//!   b_l = E[1{|h| ≤ t} φ(h)²] − a E[φ²] (layer 0: σ_w² b_0 − a′_0 W_0 j_0,
//!   W_0 = 2q⁰²: the input's exact second moment removes the part linear in it);
//!
//! with M_l, V_l, j_l the K_aa entries of the forward expansion. First order:
//! E R = R_∞ [1 + (1/n)(Σ_l e_l/a_l + Σ_{l<l′} c_{ll′}/(a_l a_{l′}))]; the
//! log-normal resummation exponentiates the bracket's 1/n term (ln R
//! treated as Gaussian), which matters once L²/n is not small.

use super::kernel::{Jet, AA};
use super::{expand, quantizer};
use crate::error::{Error, Result};
use crate::gauss;
use crate::theory::backward::Ste;
use crate::theory::maps::Network;

/// The finite-width expansion of the STE gradient-norm ratio.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SteExpansion {
    /// Depth L: the ratio is ‖δ⁰‖²/‖δ^L‖² (masks of layers 0..L−1).
    pub depth: usize,
    /// The infinite-width ratio Π_l σ_w² s² a_l (M^L at q⁰ = q*).
    pub infinite: f64,
    /// n·(E R/R_∞ − 1) from the means of the active fractions.
    pub mean_part: f64,
    /// n·(E R/R_∞ − 1) from the covariances of the active fractions across layers.
    pub covariance_part: f64,
}

impl SteExpansion {
    /// The first-order prediction R_∞ (1 + (mean + covariance)/n).
    pub fn first_order(&self, width: usize) -> f64 {
        self.infinite * (1.0 + (self.mean_part + self.covariance_part) / width as f64)
    }

    /// The log-normal resummation R_∞ exp((mean + covariance)/n).
    pub fn lognormal(&self, width: usize) -> f64 {
        self.infinite * ((self.mean_part + self.covariance_part) / width as f64).exp()
    }
}

/// a(q) = P(|h| ≤ t), h ~ N(0, q), with its first and second derivatives in q.
fn active(ste: &Ste, q: f64) -> (f64, f64, f64) {
    if ste.threshold.is_infinite() {
        return (1.0, 0.0, 0.0);
    }
    let x = Jet::var(AA, q).powf(-0.5).scale(ste.threshold);
    let p = gauss::pdf(x.v);
    let a = x.unary(
        libm::erf(x.v * std::f64::consts::FRAC_1_SQRT_2),
        2.0 * p,
        -2.0 * x.v * p,
    );
    (a.v, a.g[AA], a.h[AA][AA])
}

/// E[1{|h| ≤ t} φ(h)²] for h ~ N(0, q).
fn active_second_moment(levels: &[f64], thresholds: &[f64], ste: &Ste, q: f64) -> f64 {
    let s = q.sqrt();
    let t = ste.threshold;
    let mut sum = 0.0;
    for (k, y) in levels.iter().enumerate() {
        let lo = if k == 0 {
            f64::NEG_INFINITY
        } else {
            thresholds[k - 1]
        };
        let hi = if k == thresholds.len() {
            f64::INFINITY
        } else {
            thresholds[k]
        };
        let (lo, hi) = (lo.max(-t), hi.min(t));
        if hi > lo {
            sum += y * y * (gauss::cdf(hi / s) - gauss::cdf(lo / s));
        }
    }
    sum
}

/// The 1/n expansion of E‖δ⁰‖²/‖δ^L‖² for one input with variance `q0`
/// through `depth` layers of `net` (Gaussian weights), STE surrogate `ste`.
pub fn ste_norm_ratio(net: &Network, ste: &Ste, q0: f64, depth: usize) -> Result<SteExpansion> {
    let quant = quantizer(net)?;
    let e = expand(net, q0, 0.0, depth)?;
    let sw2 = net.sigma_w * net.sigma_w;
    let s2 = ste.slope * ste.slope;
    let (levels, thresholds) = (quant.levels(), quant.thresholds());
    let l_count = depth;
    let mut abar = Vec::with_capacity(l_count);
    let mut mean_dev = Vec::with_capacity(l_count);
    let mut slope = Vec::with_capacity(l_count);
    let mut g = Vec::with_capacity(l_count);
    let mut jac = Vec::with_capacity(l_count);
    for r in &e.layers[..l_count] {
        let k = r.kernel[AA];
        let (a, a1, a2) = active(ste, k);
        let b = active_second_moment(levels, thresholds, ste, k) - a * quant.second_moment(k);
        let j = r.jacobian[AA][AA];
        let (e_l, g_l) = if r.layer == 0 {
            let w0 = 2.0 * k * k;
            (-k * k * a2, sw2 * b - a1 * w0 * j)
        } else {
            let (m, v) = (r.mean_shift[AA], r.v[AA][AA]);
            (a1 * m + 0.5 * a2 * v, a1 * j * v + sw2 * b)
        };
        abar.push(a);
        mean_dev.push(e_l);
        slope.push(a1);
        g.push(g_l);
        jac.push(j);
    }
    if let Some(l) = abar.iter().position(|a| a.is_nan() || *a <= 0.0) {
        return Err(Error::Numerical(format!(
            "layer {l}: no unit is inside the STE window (t = {}): the gradient vanishes",
            ste.threshold
        )));
    }
    let infinite = abar.iter().map(|a| sw2 * s2 * a).product::<f64>();
    let mean_part = (0..l_count).map(|l| mean_dev[l] / abar[l]).sum::<f64>();
    // Σ_{l<l′} a′_{l′} (Π_{m=l+1}^{l′−1} j_m) g_l / (a_l a_{l′}), O(L) per l.
    let mut covariance_part = 0.0;
    for l in 0..l_count {
        let mut prop = g[l];
        for lp in l + 1..l_count {
            covariance_part += slope[lp] * prop / (abar[l] * abar[lp]);
            prop *= jac[lp];
        }
    }
    if !(infinite.is_finite() && mean_part.is_finite() && covariance_part.is_finite()) {
        return Err(Error::Numerical(
            "the STE gradient expansion is not finite (gradients explode or vanish over these layers)"
                .into(),
        ));
    }
    Ok(SteExpansion {
        depth,
        infinite,
        mean_part,
        covariance_part,
    })
}
