//! Activation functions: quantizers (the subject of the theory) and the
//! continuous references tanh, hard-tanh and linear.
//!
//! As in neural-tangents' `stax`, one type knows both how to evaluate φ (for
//! the simulators) and its Gaussian expectations (for the theory), so the two
//! cannot drift apart.

use crate::error::{Error, Result};
use crate::gauss;
use crate::quadrature::gaussian_expectation;

/// A quantized activation: a non-decreasing step function
/// φ(x) = y₀ + Σₖ aₖ·H(x − gₖ), aₖ = yₖ − yₖ₋₁ > 0, with H(0) = 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantizer {
    levels: Vec<f64>,
    thresholds: Vec<f64>,
    /// Set for the uniform symmetric family: (N, spacing Δ, amplitude A).
    uniform: Option<(usize, f64, f64)>,
}

impl Quantizer {
    /// A general quantizer from its `levels` y₀ < … < y_{N−1} and
    /// `thresholds` g₁ < … < g_{N−1}.
    ///
    /// Errors when there are fewer than 2 levels, the counts do not match,
    /// a value is not finite, or either list is not strictly increasing; the
    /// message names the offending entry.
    pub fn new(levels: Vec<f64>, thresholds: Vec<f64>) -> Result<Self> {
        if levels.len() < 2 {
            return Err(Error::invalid(
                "number of levels",
                levels.len(),
                "a quantizer needs at least 2 levels",
            ));
        }
        if thresholds.len() + 1 != levels.len() {
            return Err(Error::invalid(
                "number of thresholds",
                thresholds.len(),
                &format!(
                    "{} levels need exactly {} thresholds",
                    levels.len(),
                    levels.len() - 1
                ),
            ));
        }
        for (name, v) in [("level", &levels), ("threshold", &thresholds)] {
            for (i, x) in v.iter().enumerate() {
                if !x.is_finite() {
                    return Err(Error::invalid(
                        &format!("{name} {i}"),
                        x,
                        "must be a finite number",
                    ));
                }
                if i > 0 && *x <= v[i - 1] {
                    return Err(Error::invalid(
                        &format!("{name} {i}"),
                        x,
                        &format!(
                            "{name}s must be strictly increasing, but the previous one is {}",
                            v[i - 1]
                        ),
                    ));
                }
            }
        }
        Ok(Quantizer {
            levels,
            thresholds,
            uniform: None,
        })
    }

    /// The uniform symmetric quantizer with `n` states, spacing Δ and amplitude A:
    /// yₖ = −A + 2A·k/(N−1), gₖ = Δ·(k − N/2), k = 1..N−1.
    pub fn uniform(n: usize, spacing: f64, amplitude: f64) -> Result<Self> {
        if n < 2 {
            return Err(Error::invalid("states N", n, "N must be at least 2"));
        }
        for (name, x) in [("spacing", spacing), ("amplitude", amplitude)] {
            if !(x.is_finite() && x > 0.0) {
                return Err(Error::invalid(
                    name,
                    crate::error::fmt_value(x),
                    "must be a finite number > 0",
                ));
            }
            if !(1e-150..=1e150).contains(&x) {
                return Err(Error::invalid(
                    name,
                    crate::error::fmt_value(x),
                    "must lie between 1e-150 and 1e150 (its square must be a normal double)",
                ));
            }
        }
        let levels = (0..n)
            .map(|k| -amplitude + 2.0 * amplitude * k as f64 / (n - 1) as f64)
            .collect();
        let thresholds = (1..n)
            .map(|k| spacing * (k as f64 - n as f64 / 2.0))
            .collect();
        let mut q = Quantizer::new(levels, thresholds)?;
        q.uniform = Some((n, spacing, amplitude));
        Ok(q)
    }

    /// The sign activation A·sign(x) (the uniform family with N = 2).
    pub fn sign(amplitude: f64) -> Result<Self> {
        Quantizer::uniform(2, 1.0, amplitude)
    }

    /// Number of states N.
    pub fn states(&self) -> usize {
        self.levels.len()
    }

    /// Levels y₀ < … < y_{N−1}.
    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    /// Thresholds g₁ < … < g_{N−1}.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// (N, Δ, A) for the uniform symmetric family, `None` for a general quantizer.
    pub fn uniform_params(&self) -> Option<(usize, f64, f64)> {
        self.uniform
    }

    /// Step heights aₖ = yₖ − yₖ₋₁, k = 1..N−1.
    pub fn steps(&self) -> impl Iterator<Item = f64> + '_ {
        self.levels.windows(2).map(|w| w[1] - w[0])
    }

    /// φ(x): the level of the interval that holds x (H(0) = 1).
    pub fn eval(&self, x: f64) -> f64 {
        self.levels[self.thresholds.partition_point(|&g| g <= x)]
    }

    /// E[φ(√q z)] = y₀ + Σₖ aₖ Φ̄(gₖ/√q).
    pub fn mean(&self, q: f64) -> f64 {
        let s = q.sqrt();
        self.levels[0]
            + self
                .steps()
                .zip(&self.thresholds)
                .map(|(a, g)| a * gauss::sf(g / s))
                .sum::<f64>()
    }

    /// E[φ(√q z)²] = y₀² + 2y₀ Σₖ aₖ Φ̄ₖ + Σₖ,ₘ aₖ aₘ Φ̄(max(gₖ, gₘ)/√q),
    /// the double sum in O(N) with prefix sums over the sorted thresholds.
    pub fn second_moment(&self, q: f64) -> f64 {
        let s = q.sqrt();
        let y0 = self.levels[0];
        let (mut lin, mut quad, mut prefix) = (0.0, 0.0, 0.0);
        for (a, g) in self.steps().zip(&self.thresholds) {
            let tail = gauss::sf(g / s);
            lin += a * tail;
            // Pairs (k, m) with max index m: a_m Φ̄_m (a_m + 2 Σ_{k<m} a_k).
            quad += a * tail * (a + 2.0 * prefix);
            prefix += a;
        }
        y0 * y0 + 2.0 * y0 * lin + quad
    }

    /// E[φ(u_a) φ(u_b)] for (u_a, u_b) centred Gaussian with variances
    /// q_a, q_b and correlation c, through the bivariate normal CDF:
    /// y₀² + y₀ Σₖ aₖ [Φ̄(gₖ/s_a) + Φ̄(gₖ/s_b)] + Σₖ,ₘ aₖ aₘ Φ₂(−gₖ/s_a, −gₘ/s_b; c).
    ///
    /// O(N²) bivariate CDFs in general; at c = 0 the inputs are independent
    /// and it is E[φ(u_a)]·E[φ(u_b)], O(N) (the training initialization's
    /// c* = 0 with σ_b = 0, where N runs to 65536).
    pub fn cross_moment(&self, q_a: f64, q_b: f64, c: f64) -> f64 {
        if c == 0.0 {
            return self.mean(q_a) * self.mean(q_b);
        }
        self.cross_moment_pairs(q_a, q_b, c)
    }

    /// [`Quantizer::cross_moment`] as the double sum over threshold pairs.
    fn cross_moment_pairs(&self, q_a: f64, q_b: f64, c: f64) -> f64 {
        let (sa, sb) = (q_a.sqrt(), q_b.sqrt());
        let y0 = self.levels[0];
        let a: Vec<f64> = self.steps().collect();
        let ha: Vec<f64> = self.thresholds.iter().map(|g| g / sa).collect();
        let hb: Vec<f64> = self.thresholds.iter().map(|g| g / sb).collect();
        let mut lin = 0.0;
        for k in 0..a.len() {
            lin += a[k] * (gauss::sf(ha[k]) + gauss::sf(hb[k]));
        }
        let quad: f64 = if q_a == q_b {
            // Φ₂ is symmetric under swapping both arguments: half the work.
            rows(a.len(), |k| {
                let mut r = a[k] * a[k] * gauss::bvn_upper(ha[k], ha[k], c);
                for m in k + 1..a.len() {
                    r += 2.0 * a[k] * a[m] * gauss::bvn_upper(ha[k], ha[m], c);
                }
                r
            })
        } else {
            rows(a.len(), |k| {
                let mut r = 0.0;
                for m in 0..a.len() {
                    r += a[k] * a[m] * gauss::bvn_upper(ha[k], hb[m], c);
                }
                r
            })
        };
        y0 * y0 + y0 * lin + quad
    }

    /// ∂E[φ(u_a)φ(u_b)]/∂c = Σₖ,ₘ aₖ aₘ ϕ₂(gₖ/s_a, gₘ/s_b; c) (Price's theorem
    /// with φ' a sum of deltas). Diverges as c → 1. At c = 0, ϕ₂ factorizes
    /// and the sum is (Σₖ aₖ ϕ(gₖ/s_a))·(Σₘ aₘ ϕ(gₘ/s_b)), O(N).
    pub fn cross_moment_dc(&self, q_a: f64, q_b: f64, c: f64) -> f64 {
        if c == 0.0 {
            let side = |q: f64| {
                let s = q.sqrt();
                self.steps()
                    .zip(&self.thresholds)
                    .map(|(a, g)| a * gauss::pdf(g / s))
                    .sum::<f64>()
            };
            return side(q_a) * side(q_b);
        }
        self.cross_moment_dc_pairs(q_a, q_b, c)
    }

    /// [`Quantizer::cross_moment_dc`] as the double sum over threshold pairs.
    fn cross_moment_dc_pairs(&self, q_a: f64, q_b: f64, c: f64) -> f64 {
        let (sa, sb) = (q_a.sqrt(), q_b.sqrt());
        let a: Vec<f64> = self.steps().collect();
        let g = &self.thresholds;
        rows(a.len(), |k| {
            let mut r = 0.0;
            for m in 0..a.len() {
                r += a[k] * a[m] * gauss::pdf2(g[k] / sa, g[m] / sb, c);
            }
            r
        })
    }
}

/// Σₖ row(k) for k in 0..n, the rows computed in parallel when there are
/// many (a row of a pair sum is O(N) bivariate normal terms) and added in
/// k order, so the value does not depend on the thread count.
fn rows(n: usize, row: impl Fn(usize) -> f64 + Sync) -> f64 {
    use rayon::prelude::*;
    let r: Vec<f64> = if n >= 64 {
        (0..n).into_par_iter().map(&row).collect()
    } else {
        (0..n).map(&row).collect()
    };
    r.iter().sum()
}

/// An activation function: a quantizer or a continuous reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Activation {
    /// A quantized (step) activation.
    Quantized(Quantizer),
    /// tanh(x).
    Tanh,
    /// Hard-tanh: clamp(x, −1, 1).
    HardTanh,
    /// The identity.
    Linear,
}

impl Activation {
    /// φ(x).
    pub fn eval(&self, x: f64) -> f64 {
        match self {
            Activation::Quantized(q) => q.eval(x),
            Activation::Tanh => x.tanh(),
            Activation::HardTanh => x.clamp(-1.0, 1.0),
            Activation::Linear => x,
        }
    }

    /// φ'(x) for the continuous references (0 almost everywhere for quantizers).
    pub fn derivative(&self, x: f64) -> f64 {
        match self {
            Activation::Quantized(_) => 0.0,
            Activation::Tanh => 1.0 - x.tanh().powi(2),
            Activation::HardTanh => f64::from(x.abs() < 1.0),
            Activation::Linear => 1.0,
        }
    }

    /// A short human-readable name.
    pub fn name(&self) -> String {
        match self {
            Activation::Quantized(q) => match q.uniform_params() {
                Some((n, d, a)) => format!("uniform quantizer N={n} Δ={d:.6} A={a}"),
                None => format!("quantizer with {} levels", q.states()),
            },
            Activation::Tanh => "tanh".into(),
            Activation::HardTanh => "hard-tanh".into(),
            Activation::Linear => "linear".into(),
        }
    }

    /// Largest |φ(x)| over x, or `None` when φ is unbounded.
    pub fn bound(&self) -> Option<f64> {
        match self {
            Activation::Quantized(q) => {
                Some(q.levels()[0].abs().max(q.levels()[q.states() - 1].abs()))
            }
            Activation::Tanh | Activation::HardTanh => Some(1.0),
            Activation::Linear => None,
        }
    }

    fn kinks(&self) -> &'static [f64] {
        match self {
            Activation::HardTanh => &[-1.0, 1.0],
            _ => &[],
        }
    }

    fn scaled_kinks(&self, s: f64) -> Vec<f64> {
        self.kinks().iter().map(|k| k / s).collect()
    }

    /// E[φ(√q z)], z ~ N(0, 1): exact for quantizers, quadrature otherwise.
    pub fn mean(&self, q: f64) -> f64 {
        match self {
            Activation::Quantized(qz) => qz.mean(q),
            Activation::Linear => 0.0,
            _ => {
                let s = q.sqrt();
                gaussian_expectation(|z| self.eval(s * z), &self.scaled_kinks(s))
            }
        }
    }

    /// E[φ(√q z)²], z ~ N(0, 1).
    pub fn second_moment(&self, q: f64) -> f64 {
        match self {
            Activation::Quantized(qz) => qz.second_moment(q),
            Activation::Linear => q,
            _ => {
                let s = q.sqrt();
                gaussian_expectation(|z| self.eval(s * z).powi(2), &self.scaled_kinks(s))
            }
        }
    }

    /// E[φ(u_a)φ(u_b)] for centred Gaussians with variances q_a, q_b and
    /// correlation c. Quantizers: exact through Φ₂. Continuous references:
    /// nested quadrature, with the inner conditional expectation in closed
    /// form for hard-tanh.
    pub fn cross_moment(&self, q_a: f64, q_b: f64, c: f64) -> f64 {
        match self {
            Activation::Quantized(qz) => qz.cross_moment(q_a, q_b, c),
            Activation::Linear => c * (q_a * q_b).sqrt(),
            _ => self.nested(q_a, q_b, c, false),
        }
    }

    /// ∂E[φ(u_a)φ(u_b)]/∂c = √(q_a q_b)·E[φ'(u_a)φ'(u_b)] (Price's theorem).
    pub fn cross_moment_dc(&self, q_a: f64, q_b: f64, c: f64) -> f64 {
        match self {
            Activation::Quantized(qz) => qz.cross_moment_dc(q_a, q_b, c),
            Activation::Linear => (q_a * q_b).sqrt(),
            _ => (q_a * q_b).sqrt() * self.nested(q_a, q_b, c, true),
        }
    }

    /// E[g(u_a) g(u_b)] with g = φ or φ', writing u_b = s_b(c z + √(1−c²) w)
    /// and integrating w inside z.
    fn nested(&self, q_a: f64, q_b: f64, c: f64, deriv: bool) -> f64 {
        let (sa, sb) = (q_a.sqrt(), q_b.sqrt());
        let g = |x: f64| {
            if deriv {
                self.derivative(x)
            } else {
                self.eval(x)
            }
        };
        let sigma = sb * ((1.0 - c) * (1.0 + c)).max(0.0).sqrt();
        let inner = |mu: f64| -> f64 {
            if sigma == 0.0 {
                return g(mu);
            }
            match self {
                Activation::HardTanh => {
                    let (lo, hi) = ((-1.0 - mu) / sigma, (1.0 - mu) / sigma);
                    let inside = gauss::sf(lo) - gauss::sf(hi);
                    if deriv {
                        inside
                    } else {
                        gauss::sf(hi) - gauss::cdf(lo)
                            + mu * inside
                            + sigma * (gauss::pdf(lo) - gauss::pdf(hi))
                    }
                }
                _ => gaussian_expectation(|w| g(mu + sigma * w), &[]),
            }
        };
        gaussian_expectation(|z| g(sa * z) * inner(sb * c * z), &self.scaled_kinks(sa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_thresholds_are_centred_on_zero() {
        // THEORY.md §2: N = 4 → −Δ, 0, Δ; N = 5 → ±0.5Δ, ±1.5Δ.
        let q4 = Quantizer::uniform(4, 1.0, 1.0).unwrap();
        assert_eq!(q4.thresholds(), &[-1.0, 0.0, 1.0]);
        let q5 = Quantizer::uniform(5, 2.0, 1.0).unwrap();
        assert_eq!(q5.thresholds(), &[-3.0, -1.0, 1.0, 3.0]);
        assert_eq!(q5.levels(), &[-1.0, -0.5, 0.0, 0.5, 1.0]);
    }

    #[test]
    fn eval_uses_h_of_zero_equal_one() {
        let s = Quantizer::sign(2.0).unwrap();
        assert_eq!(s.eval(0.0), 2.0);
        assert_eq!(s.eval(-1e-300), -2.0);
    }

    #[test]
    fn bad_quantizers_name_the_offending_value() {
        let e = Quantizer::new(vec![0.0, 1.0, 2.0], vec![1.0, 0.5]).unwrap_err();
        assert!(e.to_string().contains("threshold 1 = 0.5"), "{e}");
        let e = Quantizer::new(vec![0.0], vec![]).unwrap_err();
        assert!(e.to_string().contains("at least 2"), "{e}");
        let e = Quantizer::new(vec![0.0, f64::NAN], vec![0.0]).unwrap_err();
        assert!(e.to_string().contains("level 1"), "{e}");
        assert!(Quantizer::uniform(1, 1.0, 1.0).is_err());
    }

    #[test]
    fn second_moment_matches_quadrature() {
        let q = Quantizer::uniform(7, 0.4, 1.3).unwrap();
        let s = 0.8f64;
        let breaks: Vec<f64> = q.thresholds().iter().map(|g| g / s).collect();
        let quad = gaussian_expectation(|z| q.eval(s * z).powi(2), &breaks);
        assert!((q.second_moment(s * s) - quad).abs() < 1e-14);
        let quad_mean = gaussian_expectation(|z| q.eval(s * z), &breaks);
        assert!((q.mean(s * s) - quad_mean).abs() < 1e-14);
    }

    /// The O(N) forms at c = 0 equal the double sums over threshold pairs
    /// (the only path before them) to 1e-12 relative, at N up to 257 and
    /// equal or unequal variances.
    #[test]
    fn independent_inputs_factorize_as_the_pair_sums() {
        for (n, d) in [
            (2usize, 1.0),
            (3, 0.9),
            (16, 0.21),
            (64, 0.06),
            (257, 0.013),
        ] {
            let q = Quantizer::uniform(n, d, 1.0).unwrap();
            for (qa, qb) in [(1.0, 1.0), (0.7, 1.9)] {
                let (fast, pairs) = (
                    q.cross_moment(qa, qb, 0.0),
                    q.cross_moment_pairs(qa, qb, 0.0),
                );
                let scale = q.second_moment(qa).max(1e-300);
                assert!(
                    (fast - pairs).abs() <= 1e-12 * scale,
                    "N = {n}, q = ({qa}, {qb}): {fast} vs {pairs}"
                );
                let (fast, pairs) = (
                    q.cross_moment_dc(qa, qb, 0.0),
                    q.cross_moment_dc_pairs(qa, qb, 0.0),
                );
                assert!(
                    (fast - pairs).abs() <= 1e-12 * pairs.abs(),
                    "dc, N = {n}, q = ({qa}, {qb}): {fast} vs {pairs}"
                );
            }
        }
    }

    #[test]
    fn cross_moment_limits() {
        // c = 1 and q_a = q_b: E[φ(u)²]; c = 0: E[φ]².
        let q = Quantizer::uniform(5, 0.7, 1.0).unwrap();
        let (qa, qb) = (1.3, 0.6);
        assert!((q.cross_moment(qa, qa, 1.0) - q.second_moment(qa)).abs() < 1e-14);
        assert!((q.cross_moment(qa, qb, 0.0) - q.mean(qa) * q.mean(qb)).abs() < 1e-14);
        let t = Activation::Tanh;
        assert!((t.cross_moment(qa, qa, 1.0) - t.second_moment(qa)).abs() < 1e-13);
        let h = Activation::HardTanh;
        assert!((h.cross_moment(qa, qa, 1.0) - h.second_moment(qa)).abs() < 1e-13);
        assert!(h.cross_moment(qa, qb, 0.0).abs() < 1e-15);
    }
}
