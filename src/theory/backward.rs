//! Gradients through quantized networks with a straight-through estimator
//! (STE), and the neural tangent kernel, in mean field (THEORY.md §7).
//!
//! The surrogate derivative is φ'_STE(x) = s·1{|x| ≤ t} (t = ∞: the identity
//! surrogate s). Per layer the squared gradient norm is multiplied by
//! M = σ_w² E[φ'_STE(√q* z)²] = σ_w² s² erf(t/√(2q*)); two inputs' gradients
//! keep the covariance factor σ_w² E[φ'(u_a)φ'(u_b)] = σ_w² s² P(|u_a| ≤ t,
//! |u_b| ≤ t), a bivariate normal rectangle probability.

use crate::error::{Error, Result};
use crate::gauss::cdf2;
use crate::theory::maps::Network;

/// The STE surrogate s·1{|x| ≤ t}.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ste {
    /// Slope s.
    pub slope: f64,
    /// Clipping threshold t (`f64::INFINITY` for the identity surrogate).
    pub threshold: f64,
}

impl Ste {
    /// A surrogate after checking s > 0 and t > 0.
    pub fn new(slope: f64, threshold: f64) -> Result<Self> {
        if !(slope.is_finite() && (1e-150..=1e150).contains(&slope)) {
            return Err(Error::invalid(
                "ste slope",
                crate::error::fmt_value(slope),
                "a number between 1e-150 and 1e150 (its square must be a normal double)",
            ));
        }
        if threshold.is_nan() || !(threshold.is_infinite() || (1e-4..=1e150).contains(&threshold)) {
            return Err(Error::invalid(
                "ste threshold",
                crate::error::fmt_value(threshold),
                "a number between 1e-4 and 1e150, or inf for the identity surrogate (below \
                 1e-4 the probability that both inputs of a pair fall inside ±t is lost to \
                 rounding: a difference of four Φ₂ values of order 1/4)",
            ));
        }
        Ok(Ste { slope, threshold })
    }

    /// P(|u| ≤ t) for u ~ N(0, q): erf(t/√(2q)).
    pub fn inside(&self, q: f64) -> f64 {
        if self.threshold.is_infinite() {
            1.0
        } else {
            libm::erf(self.threshold / (2.0 * q).sqrt())
        }
    }

    /// E[φ'(u_a)φ'(u_b)] = s²·P(|u_a| ≤ t, |u_b| ≤ t) for centred Gaussians
    /// with variances q_a, q_b and correlation c (rectangle probability from Φ₂).
    pub fn cross(&self, q_a: f64, q_b: f64, c: f64) -> f64 {
        if self.threshold.is_infinite() {
            return self.slope * self.slope;
        }
        let (ha, hb) = (self.threshold / q_a.sqrt(), self.threshold / q_b.sqrt());
        let rect = cdf2(ha, hb, c) - cdf2(ha, -hb, c) - cdf2(-ha, hb, c) + cdf2(-ha, -hb, c);
        self.slope * self.slope * rect.max(0.0)
    }
}

/// M = σ_w² s² erf(t/√(2q*)): the per-layer factor of the squared gradient norm.
pub fn backward_factor(net: &Network, q_star: f64, ste: &Ste) -> f64 {
    net.sigma_w.powi(2) * ste.slope.powi(2) * ste.inside(q_star)
}

/// The slope s that makes M = 1: s = 1/(σ_w √erf(t/√(2q*))).
pub fn unit_slope(net: &Network, q_star: f64, threshold: f64) -> Result<f64> {
    let ste = Ste::new(1.0, threshold)?;
    let p = ste.inside(q_star);
    if p <= 0.0 {
        return Err(Error::Numerical(format!(
            "P(|u| ≤ {threshold}) underflows at q* = {q_star}: no finite slope gives M = 1"
        )));
    }
    Ok(1.0 / (net.sigma_w * p.sqrt()))
}

/// One layer of the backward and NTK curves of a pair of inputs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BackwardPoint {
    /// Layer l (pre-activations h^l).
    pub layer: usize,
    /// Forward correlation c^l.
    pub c: f64,
    /// ‖δ^l‖²/‖δ^L‖² = Π M over the layers between l and the output.
    pub grad_norm_ratio: f64,
    /// Correlation of the two inputs' gradients δ^l.
    pub grad_corr: f64,
    /// NTK Θ^l(a, a) (pre-activations of layer l, NTK parameterization).
    pub ntk_aa: f64,
    /// NTK Θ^l(a, b).
    pub ntk_ab: f64,
    /// Θ^l(a, b)/Θ^l(a, a) (`None` at layer 0, below every parameter).
    pub ntk_corr: Option<f64>,
}

/// Forward, backward and NTK curves for two inputs with variance q⁰ and
/// correlation c⁰ through `depth` layers, gradients entering the output
/// layer with correlation `grad_c_out`.
///
/// Backward (gradient independence): q̃^l = σ_w² E[φ'(u^l)²]·q̃^{l+1} and
/// q̃_ab^l = σ_w² E[φ'(u_a^l)φ'(u_b^l)]·q̃_ab^{l+1}, evaluated at the forward
/// variances and correlation of layer l. NTK: Θ^1 = Σ^1 and
/// Θ^{l+1} = Σ^{l+1} + σ_w² E[φ'(u_a^l)φ'(u_b^l)]·Θ^l, Σ the forward covariance.
pub fn backward_curve(
    net: &Network,
    ste: &Ste,
    q0: f64,
    c0: f64,
    depth: usize,
    grad_c_out: f64,
) -> Result<Vec<BackwardPoint>> {
    let never = std::sync::atomic::AtomicBool::new(false);
    backward_curve_with(net, ste, q0, c0, depth, grad_c_out, &|_| {}, &never)
}

/// [`backward_curve`] with the forward curve's progress (layers done) and
/// cancellation ([`Network::depth_curve_with`]): the forward curve is its
/// only slow part.
#[allow(clippy::too_many_arguments)]
pub fn backward_curve_with(
    net: &Network,
    ste: &Ste,
    q0: f64,
    c0: f64,
    depth: usize,
    grad_c_out: f64,
    progress: &dyn Fn(usize),
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<Vec<BackwardPoint>> {
    if depth == 0 {
        return Err(Error::invalid("depth", 0, "at least 1 layer"));
    }
    if !(-1.0..=1.0).contains(&grad_c_out) {
        return Err(Error::invalid(
            "grad_c_out",
            grad_c_out,
            "a correlation in [-1, 1]",
        ));
    }
    let fwd = net.depth_curve_with(q0, q0, c0, depth, progress, cancel)?;
    let sw2 = net.sigma_w.powi(2);
    // Backward from the output: factors of layer l act on δ^l.
    let mut ratio = vec![1.0; depth + 1];
    let mut corr = vec![grad_c_out; depth + 1];
    let (mut qt, mut ct) = (1.0, grad_c_out);
    for l in (0..depth).rev() {
        let p = &fwd[l];
        // δ^l = φ'(h^l) ⊙ W^{l+1}ᵀ δ^{l+1}: the norm grows by M_l = σ_w²·E[φ'²]
        // and the correlation by E[φ'_aφ'_b]/E[φ'²] (a running product of
        // ratios ≤ 1, so it stays finite where the norm overflows).
        let (aa, ab) = (ste.cross(p.q_a, p.q_a, 1.0), ste.cross(p.q_a, p.q_b, p.c));
        qt *= sw2 * aa;
        ct = if aa > 0.0 { ct * (ab / aa) } else { 0.0 };
        ratio[l] = qt;
        corr[l] = ct;
    }
    let mut out = Vec::with_capacity(depth + 1);
    let (mut taa, mut tab) = (0.0, 0.0);
    for (l, p) in fwd.iter().enumerate() {
        if l >= 1 {
            let prev = &fwd[l - 1];
            let grow_aa = sw2 * ste.cross(prev.q_a, prev.q_a, 1.0);
            let grow_ab = sw2 * ste.cross(prev.q_a, prev.q_b, prev.c);
            let sigma_ab = p.c * (p.q_a * p.q_b).sqrt();
            taa = p.q_a + grow_aa * taa;
            tab = sigma_ab + grow_ab * tab;
        }
        out.push(BackwardPoint {
            layer: l,
            c: p.c,
            grad_norm_ratio: ratio[l],
            grad_corr: corr[l],
            ntk_aa: taa,
            ntk_ab: tab,
            ntk_corr: (taa > 0.0).then(|| tab / taa),
        });
    }
    Ok(out)
}

/// The curve of [`backward_curve`] when every value is finite; else the
/// layer where the squared gradient norm (or the NTK) overflows f64, with
/// the depth that fits at this backward factor (for a caller that prints
/// the curve: a run keeps the infinite values and flags them instead).
pub fn finite_backward_curve(curve: Vec<BackwardPoint>, m: f64) -> Result<Vec<BackwardPoint>> {
    let depth = curve.len().saturating_sub(1);
    if let Some(bad) = curve
        .iter()
        .find(|b| !(b.grad_norm_ratio.is_finite() && b.ntk_aa.is_finite() && b.ntk_ab.is_finite()))
    {
        let m_text = if m < 1e6 {
            format!("{m:.4}")
        } else {
            format!("{m:.3e}")
        };
        let fits = if m > 1.0 {
            format!(
                "at most about {} layers at this M",
                (709.0 / m.ln()).floor()
            )
        } else {
            "fewer layers".to_string()
        };
        return Err(Error::TooLarge(format!(
            "the backward curve overflows the largest double (1.8e308) at layer {} of {depth}: \
             the squared gradient norm grows by M = {m_text} per layer (and the NTK with it); \
             take {fits}, or an STE slope nearer the one that makes M = 1",
            bad.layer
        )));
    }
    Ok(curve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::{Activation, Quantizer};

    #[test]
    fn an_overflowing_gradient_norm_keeps_its_correlation_and_is_refused_for_printing() {
        // s = 3 at N = 4, σ_w = 1.6: M ≈ 15 per layer, so M^300 > 1e308.
        let net = Network::new(
            Activation::Quantized(Quantizer::uniform(4, 1.0, 1.0).unwrap()),
            1.6,
            0.0,
        )
        .unwrap();
        let ste = Ste::new(3.0, 1.0).unwrap();
        let curve = backward_curve(&net, &ste, 1.0, 0.5, 300, 1.0).unwrap();
        assert!(curve[0].grad_norm_ratio.is_infinite());
        // The correlation is a product of ratios ≤ 1: finite everywhere (it
        // was inf/inf = NaN); on a short curve it equals the quotient of the
        // two running products, E[δ_aδ_b]/E[δ_a²], computed directly.
        assert!(curve.iter().all(|p| p.grad_corr.is_finite()));
        let short = backward_curve(&net, &ste, 1.0, 0.5, 10, 1.0).unwrap();
        let fwd = net.depth_curve(1.0, 1.0, 0.5, 10).unwrap();
        let (mut aa, mut ab) = (1.0, 1.0);
        for l in (0..10).rev() {
            aa *= ste.cross(fwd[l].q_a, fwd[l].q_a, 1.0);
            ab *= ste.cross(fwd[l].q_a, fwd[l].q_b, fwd[l].c);
            assert!((short[l].grad_corr - ab / aa).abs() < 1e-12, "layer {l}");
        }
        let m = 1.6f64.powi(2) * ste.cross(1.0, 1.0, 1.0);
        let e = finite_backward_curve(curve, m).unwrap_err().to_string();
        assert!(
            e.contains("overflows") && e.contains("layers at this M"),
            "{e}"
        );
        assert_eq!(finite_backward_curve(short, m).unwrap().len(), 11);
    }

    #[test]
    fn unit_slope_makes_the_backward_factor_one() {
        let net = Network::new(
            Activation::Quantized(Quantizer::uniform(4, 1.0, 1.0).unwrap()),
            1.6,
            0.0,
        )
        .unwrap();
        let q = net.q_star().unwrap();
        for t in [0.5, 1.0, 3.0, f64::INFINITY] {
            let s = unit_slope(&net, q, t).unwrap();
            let m = backward_factor(&net, q, &Ste::new(s, t).unwrap());
            assert!((m - 1.0).abs() < 1e-14, "t = {t}: M = {m}");
        }
    }

    #[test]
    fn rectangle_probability_limits() {
        let ste = Ste::new(1.0, 0.8).unwrap();
        // c = 1: P(|u| ≤ t) = erf(t/√(2q)); c = 0: its square.
        let q = 1.3;
        let p = ste.inside(q);
        assert!((ste.cross(q, q, 1.0) - p).abs() < 1e-15);
        assert!((ste.cross(q, q, 0.0) - p * p).abs() < 1e-15);
    }
}
