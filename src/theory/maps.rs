//! The mean-field maps of a random network: the variance map V(q) and its
//! fixed point q*, the correlation map f(c), its slope χ(c), the stable
//! fixed point c* and the depth scale ξ_c = −1/ln χ(c*) (THEORY.md §3–5).

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::quadrature::brent_root;

/// Smallest σ_w (and σ_b) whose square is a normal double.
pub const SIGMA_MIN: f64 = 1.5e-154;
/// Largest σ_w (and σ_b) whose square is finite.
pub const SIGMA_MAX: f64 = 1.3e154;

/// Longest depth curve computed (layers); each layer is 32 bytes.
pub const MAX_CURVE_DEPTH: usize = 10_000_000;

/// A random network in the mean-field limit: activation φ, weight scale
/// σ_w (W_ij ~ N(0, σ_w²/n)) and bias scale σ_b (b_i ~ N(0, σ_b²)).
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// The activation φ.
    pub activation: Activation,
    /// Weight standard deviation times √n.
    pub sigma_w: f64,
    /// Bias standard deviation.
    pub sigma_b: f64,
}

/// One layer of a mean-field depth curve.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CurvePoint {
    /// Layer index l (0 = the inputs).
    pub layer: usize,
    /// Pre-activation variance of input a.
    pub q_a: f64,
    /// Pre-activation variance of input b.
    pub q_b: f64,
    /// Correlation between the two inputs' pre-activations.
    pub c: f64,
}

impl Network {
    /// A network after checking σ_w > 0 and σ_b ≥ 0 (finite).
    ///
    /// The maps use σ_w² and σ_b², so these must be representable too:
    /// σ_w² a normal f64 (σ_w in [1.5e-154, 1.3e154]) and σ_b² finite; and
    /// the largest variance σ_w² max φ² + σ_b² of a bounded φ must be finite.
    /// Outside these ranges every fixed-point search would meet 0 or ∞.
    pub fn new(activation: Activation, sigma_w: f64, sigma_b: f64) -> Result<Self> {
        if !(sigma_w.is_finite() && sigma_w > 0.0) {
            return Err(Error::invalid(
                "sigma_w",
                crate::error::fmt_value(sigma_w),
                "must be a finite number > 0",
            ));
        }
        let sw2 = sigma_w * sigma_w;
        if !(sw2.is_finite() && sw2.is_normal()) {
            return Err(Error::invalid(
                "sigma_w",
                crate::error::fmt_value(sigma_w),
                &format!(
                    "sigma_w² {} a double: give sigma_w between {:.1e} and {:.1e}",
                    if sw2.is_finite() {
                        "underflows"
                    } else {
                        "overflows"
                    },
                    SIGMA_MIN,
                    SIGMA_MAX
                ),
            ));
        }
        if !(sigma_b.is_finite() && sigma_b >= 0.0) {
            return Err(Error::invalid(
                "sigma_b",
                crate::error::fmt_value(sigma_b),
                "must be a finite number >= 0",
            ));
        }
        if !(sigma_b * sigma_b).is_finite() || sigma_b > SIGMA_MAX {
            return Err(Error::invalid(
                "sigma_b",
                crate::error::fmt_value(sigma_b),
                &format!("sigma_b² overflows a double: give sigma_b at most {SIGMA_MAX:.1e}"),
            ));
        }
        if let Some(bound) = activation.bound() {
            let upper = sw2 * bound * bound + sigma_b * sigma_b;
            if !upper.is_finite() {
                return Err(Error::invalid(
                    "sigma_w",
                    crate::error::fmt_value(sigma_w),
                    &format!(
                        "the largest variance sigma_w²·max φ² + sigma_b² (max |φ| = {}) overflows a double: \
                         make sigma_w, sigma_b or the levels smaller",
                        crate::error::fmt_value(bound)
                    ),
                ));
            }
        }
        Ok(Network {
            activation,
            sigma_w,
            sigma_b,
        })
    }

    /// The variance map V(q) = σ_w² E[φ(√q z)²] + σ_b².
    pub fn variance_map(&self, q: f64) -> f64 {
        self.sigma_w.powi(2) * self.activation.second_moment(q) + self.sigma_b.powi(2)
    }

    /// The fixed point q* = V(q*) that the iteration reaches from large q
    /// (the largest fixed point).
    ///
    /// For bounded φ, V(q) ≤ U = σ_w² max φ² + σ_b², so q* ∈ (0, U]: the
    /// bracket is walked down from U until V(q) − q changes sign, then
    /// refined by Brent's method. Errors when the variance collapses to 0
    /// (σ_w too small for the activation, σ_b = 0) or diverges (linear φ with
    /// σ_w ≥ 1).
    pub fn q_star(&self) -> Result<f64> {
        let sw2 = self.sigma_w.powi(2);
        let sb2 = self.sigma_b.powi(2);
        let Some(bound) = self.activation.bound() else {
            // Linear: q* = σ_b²/(1 − σ_w²).
            if sw2 >= 1.0 || sb2 == 0.0 {
                return Err(Error::NoFixedPoint(format!(
                    "a linear network has a positive finite q* only for sigma_w < 1 and sigma_b > 0 (got sigma_w = {}, sigma_b = {})",
                    self.sigma_w, self.sigma_b
                )));
            }
            return Ok(sb2 / (1.0 - sw2));
        };
        let upper = sw2 * bound * bound + sb2;
        if !(upper.is_finite() && upper.is_normal()) {
            return Err(Error::Numerical(format!(
                "the largest variance sigma_w²·max φ² + sigma_b² = {} is not a normal double \
                 (sigma_w = {}, sigma_b = {}): no fixed point can be represented",
                crate::error::fmt_value(upper),
                crate::error::fmt_value(self.sigma_w),
                crate::error::fmt_value(self.sigma_b)
            )));
        }
        let g = |q: f64| self.variance_map(q) - q;
        let mut hi = upper;
        let ghi = g(hi);
        if !ghi.is_finite() {
            return Err(Error::Numerical(format!(
                "the variance map is not finite at q = {} (sigma_w = {}, sigma_b = {})",
                crate::error::fmt_value(hi),
                crate::error::fmt_value(self.sigma_w),
                crate::error::fmt_value(self.sigma_b)
            )));
        }
        if ghi >= 0.0 {
            return Ok(hi); // V is constant at its bound (e.g. sign).
        }
        let mut lo = hi;
        // lo halves from the upper bound to 1e-12 of it: at most 40 steps.
        for step in 0.. {
            lo *= 0.5;
            if step >= 64 || lo < upper * 1e-12 || !lo.is_normal() {
                return Err(Error::NoFixedPoint(format!(
                    "the variance map has no fixed point above {:.3e}: the pre-activation variance collapses to 0 \
                     (sigma_w = {} is too small for {} with sigma_b = {}); raise sigma_w or sigma_b",
                    lo, self.sigma_w, self.activation.name(), self.sigma_b
                )));
            }
            if g(lo) > 0.0 {
                break;
            }
            hi = lo;
        }
        let q = brent_root(g, lo, hi, 1e-15 * upper)
            .ok_or_else(|| Error::Numerical("Brent's method failed on the variance map".into()))?;
        if !q.is_normal() {
            return Err(Error::Numerical(format!(
                "q* = {} is not a normal double (sigma_w = {}, sigma_b = {}): correlations cannot be computed",
                crate::error::fmt_value(q),
                crate::error::fmt_value(self.sigma_w),
                crate::error::fmt_value(self.sigma_b)
            )));
        }
        Ok(q)
    }

    /// One step of the covariance map: from (q_a, q_b, c) to the next
    /// layer's (q_a, q_b, c), with q_ab = σ_w² E[φ(u_a)φ(u_b)] + σ_b² and
    /// c' = q_ab / √(q_a' q_b').
    pub fn step(&self, q_a: f64, q_b: f64, c: f64) -> (f64, f64, f64) {
        let qa1 = self.variance_map(q_a);
        let qb1 = if q_b == q_a {
            qa1
        } else {
            self.variance_map(q_b)
        };
        let qab =
            self.sigma_w.powi(2) * self.activation.cross_moment(q_a, q_b, c) + self.sigma_b.powi(2);
        // √(q_a' q_b') as one square root unless the product leaves the
        // normal range (tiny or huge variances), then as two.
        let prod = qa1 * qb1;
        let norm = if prod.is_normal() {
            prod.sqrt()
        } else {
            qa1.sqrt() * qb1.sqrt()
        };
        let raw = qab / norm;
        // A non-finite ratio stays NaN (and is reported by the caller) rather
        // than being clamped to ±1.
        let mut c1 = if raw.is_finite() {
            raw.clamp(-1.0, 1.0)
        } else {
            f64::NAN
        };
        // c = ±1 are fixed points when the map fixes them (c = 1 with q_a = q_b
        // always; c = −1 for odd φ with σ_b = 0), but unstable ones (χ = ∞ for
        // quantizers): keep them exact, or rounding alone walks the curve away.
        if c.abs() == 1.0 && q_a == q_b && (c1 - c).abs() < 1e-12 {
            c1 = c;
        }
        (qa1, qb1, c1)
    }

    /// The correlation map at the fixed point, c ↦ f(c) (q_a = q_b = q*).
    pub fn correlation_map(&self, q_star: f64, c: f64) -> f64 {
        let qab = self.sigma_w.powi(2) * self.activation.cross_moment(q_star, q_star, c)
            + self.sigma_b.powi(2);
        qab / q_star
    }

    /// χ(c) = ∂f/∂c = (σ_w²/q*)·Σₖ,ₘ aₖ aₘ ϕ₂(ĝₖ, ĝₘ; c) for quantizers
    /// (σ_w² E[φ'(u_a)φ'(u_b)] for continuous φ). Infinite at c = 1 for
    /// every quantizer.
    pub fn chi(&self, q_star: f64, c: f64) -> f64 {
        self.sigma_w.powi(2) * self.activation.cross_moment_dc(q_star, q_star, c) / q_star
    }

    /// The stable fixed point c* < 1 of the correlation map: the first fixed
    /// point above c = 0, which iterating f from c = 0 reaches (never the
    /// unstable root at c = 1). f is increasing (χ > 0), so
    /// f(c) − c > 0 below c*; the bracket's upper end is walked towards 1
    /// until f(c) − c < 0, then Brent's method refines it.
    pub fn c_star(&self, q_star: f64) -> Result<f64> {
        let h = |c: f64| self.correlation_map(q_star, c) - c;
        let h0 = h(0.0);
        if h0 <= 1e-15 {
            // f(0) = (σ_w² E[φ]² + σ_b²)/q* ≥ 0 ; zero only for odd φ with σ_b = 0.
            return Ok(0.0);
        }
        let mut lo = 0.0;
        let mut gap = 1.0;
        for _ in 0..50 {
            gap *= 0.5;
            let hi = 1.0 - gap;
            let hv = h(hi);
            if hv < 0.0 {
                return brent_root(h, lo, hi, 1e-15).ok_or_else(|| {
                    Error::Numerical("Brent's method failed on the correlation map".into())
                });
            }
            lo = hi;
        }
        Err(Error::NoFixedPoint(format!(
            "the correlation map of {} (sigma_w = {}, sigma_b = {}) has no stable fixed point below c = 1",
            self.activation.name(),
            self.sigma_w,
            self.sigma_b
        )))
    }

    /// The depth scale ξ_c = −1/ln χ(c*): |c^l − c*| ∝ exp(−l/ξ_c).
    /// Infinite when χ(c*) ≥ 1 (c* not attracting at a finite rate).
    pub fn depth_scale(&self, q_star: f64, c_star: f64) -> f64 {
        let chi = self.chi(q_star, c_star);
        if chi >= 1.0 {
            f64::INFINITY
        } else {
            -1.0 / chi.ln()
        }
    }

    /// The depth curve (q_a^l, q_b^l, c^l), l = 0..=depth, from the inputs'
    /// (q_a^0, q_b^0, c^0); q^0 need not be q*.
    pub fn depth_curve(
        &self,
        q_a0: f64,
        q_b0: f64,
        c0: f64,
        depth: usize,
    ) -> Result<Vec<CurvePoint>> {
        let never = std::sync::atomic::AtomicBool::new(false);
        self.depth_curve_with(q_a0, q_b0, c0, depth, &|_| {}, &never)
    }

    /// [`Network::depth_curve`] with `progress` called with the layers done
    /// after every layer, and [`Error::Interrupted`] once `cancel` is set
    /// (checked every layer: a layer of an N-state quantizer costs O(N²)
    /// bivariate normal CDFs, half a second at N = 1024).
    ///
    /// Once the map returns exactly the state it was given (q_a, q_b, c to
    /// the last bit), or the state of two layers before (a 2-cycle in the
    /// last bits), every later layer repeats it: those layers are copied,
    /// not computed, with the same values the iteration would give.
    pub fn depth_curve_with(
        &self,
        q_a0: f64,
        q_b0: f64,
        c0: f64,
        depth: usize,
        progress: &dyn Fn(usize),
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<Vec<CurvePoint>> {
        for (name, q) in [("q0 (input a)", q_a0), ("q0 (input b)", q_b0)] {
            if !(q.is_finite() && q > 0.0) {
                return Err(Error::invalid(
                    name,
                    q,
                    "the input variance must be a finite number > 0",
                ));
            }
        }
        if !(-1.0..=1.0).contains(&c0) {
            return Err(Error::invalid(
                "c0",
                c0,
                "a correlation must lie in [-1, 1]",
            ));
        }
        if depth > MAX_CURVE_DEPTH {
            return Err(Error::invalid(
                "depth",
                depth,
                &format!("a depth curve has at most {MAX_CURVE_DEPTH} layers"),
            ));
        }
        let mut out = Vec::with_capacity(depth + 1);
        let (mut qa, mut qb, mut c) = (q_a0, q_b0, c0);
        out.push(CurvePoint {
            layer: 0,
            q_a: qa,
            q_b: qb,
            c,
        });
        let bits = |p: &CurvePoint| (p.q_a.to_bits(), p.q_b.to_bits(), p.c.to_bits());
        for layer in 1..=depth {
            // Periodic from here on (period 1 or 2): the rest repeats exactly.
            let n = out.len();
            if n >= 3 && bits(&out[n - 1]) == bits(&out[n - 3]) {
                let period = if bits(&out[n - 1]) == bits(&out[n - 2]) {
                    1
                } else {
                    2
                };
                for l in layer..=depth {
                    let p = out[out.len() - period];
                    out.push(CurvePoint { layer: l, ..p });
                }
                progress(depth);
                break;
            }
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            (qa, qb, c) = self.step(qa, qb, c);
            if !(qa.is_normal() && qb.is_normal() && c.is_finite()) || qa <= 0.0 || qb <= 0.0 {
                return Err(Error::Numerical(format!(
                    "the depth curve left the domain at layer {layer} (q_a = {qa}, q_b = {qb}, c = {c})"
                )));
            }
            out.push(CurvePoint {
                layer,
                q_a: qa,
                q_b: qb,
                c,
            });
            progress(layer);
        }
        Ok(out)
    }
}
