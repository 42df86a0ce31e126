//! The initialization a user types into a model: everything a PyTorch or JAX
//! user needs to start an N-state quantized network where the theory says
//! signals propagate furthest (THEORY.md §6, §7).
//!
//! The pre-activations are measured in their own standard deviation at the
//! fixed point: q* = 1, so the threshold spacing is Δ = D̃_opt(N) and the
//! thresholds read directly in units of the pre-activation std. With the
//! user's amplitude A the levels are −A … A, and σ_w^opt
//! ([`optimal_sigma_w`]) puts √q* at Δ/D̃_opt(N). With a bias σ_b > 0 the
//! weight scale is lowered so that q* — and so D̃ — stays put:
//! σ_w² E[φ(√q* z)²] + σ_b² = q*, i.e. σ_w = σ_w^opt·√(1 − σ_b²/q*).
//! The slope χ(c*), the depth scale ξ and L_max = κ·ξ are then those of the
//! resulting network ([`Network::chi`], [`Network::depth_scale`]); with
//! σ_b = 0 they are χ_max(N), ξ_max(N) and L_max(N).
//!
//! ```
//! use quantdepth::theory::init::recommend;
//! let r = recommend(16, 1.0, 0.0, 6.0, 1.0).unwrap();
//! // Weight std = σ_w/√fan_in with σ_w = 2.5286408548 for 4-bit activations.
//! assert!((r.sigma_w - 2.5286408548).abs() < 1e-9);
//! ```

use crate::activation::{Activation, Quantizer};
use crate::error::{Error, Result};
use crate::theory::backward::unit_slope;
use crate::theory::maps::Network;
use crate::theory::optimal::{optimal_sigma_w, optimal_spacing, uniform_optimum};

/// The largest N [`recommend`] accepts: 2²⁰ states (20 bits), the range over
/// which 1 − χ_max is checked against 40-digit arithmetic (N = 10⁶).
pub const MAX_STATES: usize = 1 << 20;

/// The largest N for σ_b > 0, where c* > 0 and χ(c*) come from the
/// correlation map, O(N²) bivariate normal probabilities per evaluation
/// (about a second at N = 256 on one core).
pub const MAX_STATES_WITH_BIAS: usize = 256;

/// Everything a user types into a model to initialize an N-state quantized
/// network at the theory's optimum.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InitRecommendation {
    /// Number of states N.
    pub states: usize,
    /// log₂ N when N is a power of two (the bit width), else `None`.
    pub bits: Option<u32>,
    /// Amplitude A: the levels run from −A to A.
    pub amplitude: f64,
    /// σ_w: weights W_ij ~ N(0, σ_w²/fan_in), i.e. std σ_w/√fan_in.
    pub sigma_w: f64,
    /// σ_b: biases b_i ~ N(0, σ_b²).
    pub sigma_b: f64,
    /// Threshold spacing Δ = D̃_opt·√q* (`None` for N = 2: sign has one
    /// threshold, at 0, and any spacing is the same quantizer).
    pub spacing: Option<f64>,
    /// D̃_opt(N) = Δ/√q* (`None` for N = 2).
    pub d_opt: Option<f64>,
    /// Levels y₀ < … < y_{N−1} (yₖ = −A + 2A·k/(N − 1)).
    pub levels: Vec<f64>,
    /// Thresholds g₁ < … < g_{N−1} (gₖ = Δ·(k − N/2)); φ(x) is the level of
    /// the interval that holds x, with φ(gₖ) = yₖ.
    pub thresholds: Vec<f64>,
    /// The pre-activation variance at the fixed point, q*.
    pub q_star: f64,
    /// √q*: scale standardized inputs by this so that q⁰ = q* (every
    /// coordinate's mean square is q*).
    pub input_scale: f64,
    /// The first layer's σ when the inputs reach the first quantizer through a
    /// Linear layer (standardized inputs, mean square 1 per coordinate):
    /// √(q* − σ_b²), so q¹ = σ₁² + σ_b² = q* (σ_w there would give q¹ = σ_w² + σ_b²).
    /// Weights of that layer: std `first_layer_sigma_w / √fan_in`.
    pub first_layer_sigma_w: f64,
    /// The stable fixed point c* of the correlation map (0 when σ_b = 0).
    pub c_star: f64,
    /// χ(c*), the slope of the correlation map at c*.
    pub chi: f64,
    /// 1 − χ(c*) (without cancellation when σ_b = 0).
    pub one_minus_chi: f64,
    /// ξ = −1/ln χ(c*), the depth scale of correlations.
    pub xi: f64,
    /// κ in L_max = κ·ξ.
    pub kappa: f64,
    /// L_max = κ·ξ, the estimated maximal trainable depth.
    pub l_max: f64,
    /// Clipping threshold t of the straight-through surrogate s·1{|x| ≤ t}.
    pub ste_threshold: f64,
    /// The STE slope s that makes the per-layer gradient factor
    /// M = σ_w² s² erf(t/√(2q*)) equal to 1.
    pub ste_slope: f64,
}

/// N = 2^bits, checked: `bits` from 1 to 20.
pub fn states_from_bits(bits: u32) -> Result<usize> {
    let max_bits = MAX_STATES.trailing_zeros();
    if bits == 0 || bits > max_bits {
        return Err(Error::invalid(
            "bits",
            bits,
            &format!("a bit width from 1 (N = 2, sign) to {max_bits} (N = 2^{max_bits})"),
        ));
    }
    Ok(1usize << bits)
}

/// The initialization of the uniform N-state quantizer with amplitude A at
/// the theory's optimum, with bias scale σ_b, κ for L_max = κ·ξ, and the
/// STE clipping threshold t (in the same units as the pre-activations,
/// whose std at the fixed point is 1; `f64::INFINITY` for the identity
/// surrogate).
///
/// With σ_b = 0 (the default) c* = 0 and χ, ξ, L_max are those of
/// [`uniform_optimum`] (1 − χ computed without cancellation, O(N)); with
/// σ_b > 0 they come from the network's correlation map, so N is limited to
/// [`MAX_STATES_WITH_BIAS`].
///
/// Errors name the parameter: N outside 2..=2²⁰, A or κ not finite and
/// positive, σ_b not finite, negative or ≥ √q* = 1 (then no σ_w keeps
/// q* = 1), t not positive.
pub fn recommend(
    n_states: usize,
    amplitude: f64,
    sigma_b: f64,
    kappa: f64,
    ste_threshold: f64,
) -> Result<InitRecommendation> {
    if !(2..=MAX_STATES).contains(&n_states) {
        return Err(Error::invalid(
            "states N",
            n_states,
            &format!("a quantizer needs N from 2 to {MAX_STATES} (2^20) states"),
        ));
    }
    if !(amplitude.is_finite() && amplitude > 0.0) {
        return Err(Error::invalid(
            "amplitude",
            amplitude,
            "must be a finite number > 0 (the levels run from -A to A)",
        ));
    }
    if !(kappa.is_finite() && kappa > 0.0) {
        return Err(Error::invalid(
            "kappa",
            kappa,
            "must be a finite number > 0 (L_max = kappa * xi; 6 is usual)",
        ));
    }
    if ste_threshold.is_nan() || ste_threshold <= 0.0 {
        return Err(Error::invalid(
            "ste threshold",
            ste_threshold,
            "must be a number > 0 (inf for the identity surrogate)",
        ));
    }
    let d_opt = optimal_spacing(n_states)?;
    // q* = 1: Δ = D̃_opt (N = 2: the spacing does not enter the quantizer).
    let spacing = d_opt.unwrap_or(1.0);
    let (sigma_w_opt, q_star) = optimal_sigma_w(n_states, spacing, amplitude)?;
    if !(sigma_b.is_finite() && sigma_b >= 0.0 && sigma_b * sigma_b < q_star) {
        return Err(Error::invalid(
            "sigma_b",
            sigma_b,
            &format!(
                "must be a finite number >= 0 and below sqrt(q*) = {}: the bias alone would fill the \
                 pre-activation variance q* = {q_star}",
                q_star.sqrt()
            ),
        ));
    }
    let sigma_w = sigma_w_opt * (1.0 - sigma_b * sigma_b / q_star).sqrt();
    let quant = Quantizer::uniform(n_states, spacing, amplitude)?;
    let (levels, thresholds) = (quant.levels().to_vec(), quant.thresholds().to_vec());
    let net = Network::new(Activation::Quantized(quant), sigma_w, sigma_b)?;
    let (c_star, chi, one_minus_chi, xi) = if sigma_b == 0.0 {
        let opt = uniform_optimum(n_states, kappa)?;
        (0.0, opt.chi_max, opt.one_minus_chi_max, opt.xi_max)
    } else {
        if n_states > MAX_STATES_WITH_BIAS {
            return Err(Error::invalid(
                "states N",
                n_states,
                &format!(
                    "with sigma_b > 0, N is limited to {MAX_STATES_WITH_BIAS} (c* > 0 needs the \
                     O(N^2) correlation map); use sigma_b = 0 for larger N"
                ),
            ));
        }
        let c_star = net.c_star(q_star)?;
        let chi = net.chi(q_star, c_star);
        (c_star, chi, 1.0 - chi, net.depth_scale(q_star, c_star))
    };
    let ste_slope = unit_slope(&net, q_star, ste_threshold)?;
    Ok(InitRecommendation {
        states: n_states,
        bits: n_states
            .is_power_of_two()
            .then_some(n_states.trailing_zeros()),
        amplitude,
        sigma_w,
        sigma_b,
        spacing: d_opt.map(|_| spacing),
        d_opt,
        levels,
        thresholds,
        q_star,
        input_scale: q_star.sqrt(),
        first_layer_sigma_w: (q_star - sigma_b * sigma_b).sqrt(),
        c_star,
        chi,
        one_minus_chi,
        xi,
        kappa,
        l_max: kappa * xi,
        ste_threshold,
        ste_slope,
    })
}
