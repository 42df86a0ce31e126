//! The fully connected quantized network that is trained, and its
//! initialization from the theory.
//!
//! Architecture (the paper's `src/mnist.py`): L weight layers,
//! input → n, L − 2 × (n → n), n → classes; the quantizer φ after every
//! hidden layer (and after the logits in the `paper` preset), then
//! softmax cross-entropy. Weights W ~ N(0, σ_w²/fan_in), biases σ_b·N(0, 1)
//! (σ_b = 0 by default), both drawn from the project's counter-based RNG.
//!
//! The backward pass replaces φ' by the straight-through surrogate
//! s·1{|h| ≤ t} (THEORY.md §7), with the slope s that makes the per-layer
//! gradient factor M = σ_w² s² erf(t/√(2q*)) equal to 1 by default
//! ([`crate::theory::backward::unit_slope`]).

use crate::activation::{Activation, Quantizer};
use crate::error::{Error, Result};
use crate::rng::{Stream, BIAS_ROW};
use crate::theory::backward::unit_slope;
use crate::theory::maps::Network;
use crate::theory::optimal::{optimal_sigma_w, optimal_spacing};

/// The authors' fit of the optimal spacing, ln D̃ = 1.4025 − 0.879 ln(N + 1)
/// (their repository's `mnist.py`), used by the `paper` preset.
pub const PAPER_D_FIT_INTERCEPT: f64 = 1.4025;
/// Slope of the authors' fit (see [`PAPER_D_FIT_INTERCEPT`]).
pub const PAPER_D_FIT_SLOPE: f64 = -0.879;

/// The forward activation of the hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Phi {
    /// The uniform quantizer with N levels −A..A and thresholds Δ(k − N/2):
    /// φ(x) = −A + k·2A/(N − 1), k = clamp(⌊x/Δ + N/2⌋, 0, N − 1).
    Uniform {
        /// N.
        states: u32,
        /// Threshold spacing Δ.
        spacing: f64,
        /// Amplitude A.
        amplitude: f64,
    },
    /// The surrogate network s·clamp(x, −t, t), whose derivative is exactly
    /// the STE s·1{|x| ≤ t}: its finite differences test the backward pass.
    Surrogate,
}

/// Everything that fixes the network's shape, activation and initialization.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelSpec {
    /// Pixels per input.
    pub input_dim: usize,
    /// Hidden width n.
    pub width: usize,
    /// Weight layers L (at least 2).
    pub depth: usize,
    /// Output classes.
    pub classes: usize,
    /// The forward activation.
    pub phi: Phi,
    /// STE slope s.
    pub ste_slope: f64,
    /// STE threshold t.
    pub ste_threshold: f64,
    /// σ_w.
    pub sigma_w: f64,
    /// σ_b.
    pub sigma_b: f64,
    /// Apply φ to the logits too (the paper's network).
    pub quantize_logits: bool,
}

/// How the initialization is derived from the theory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Preset {
    /// Exact D̃_opt (thresholds Δ = D̃_opt, levels ±1, q* = 1), unquantized logits.
    Theory,
    /// The authors' protocol: levels ±1 with thresholds at their midpoints
    /// (Δ = 2/(N − 1)), σ_w so that √q* = Δ/D̃_fit with the fitted D̃, and
    /// quantized logits.
    Paper,
}

/// The theory-derived initialization of one network.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Init {
    /// N.
    pub states: usize,
    /// Threshold spacing Δ.
    pub spacing: f64,
    /// σ_w^opt for this quantizer (before any offset or ratio).
    pub sigma_w_opt: f64,
    /// σ_w used.
    pub sigma_w: f64,
    /// q* of the network as initialized.
    pub q_star: f64,
    /// c* of the network as initialized.
    pub c_star: f64,
    /// ξ_c = −1/ln χ(c*): the theory's depth scale.
    pub xi: f64,
    /// STE slope s giving M = `m` at q*.
    pub ste_slope: f64,
}

/// The initialization for N states: spacing and σ_w^opt from the preset,
/// σ_w = σ_w^opt·ratio + offset, the slope giving backward factor `m` with
/// threshold `t`, and ξ of the network so built.
pub fn theory_init(
    states: usize,
    preset: Preset,
    sigma_ratio: f64,
    sigma_offset: f64,
    sigma_b: f64,
    ste_threshold: f64,
    m: f64,
) -> Result<Init> {
    if states < 2 {
        return Err(Error::invalid(
            "training states N",
            states,
            "N must be at least 2",
        ));
    }
    let (spacing, sigma_w_opt) = match preset {
        Preset::Theory => {
            let d = optimal_spacing(states)?.unwrap_or(1.0);
            (d, optimal_sigma_w(states, d, 1.0)?.0)
        }
        Preset::Paper => {
            let delta = 2.0 / (states as f64 - 1.0);
            let d_fit =
                (PAPER_D_FIT_INTERCEPT + PAPER_D_FIT_SLOPE * ((states + 1) as f64).ln()).exp();
            let q = (delta / d_fit).powi(2);
            let quant = Quantizer::uniform(states, delta, 1.0)?;
            (delta, (q / quant.second_moment(q)).sqrt())
        }
    };
    let sigma_w = sigma_w_opt * sigma_ratio + sigma_offset;
    if !(sigma_w.is_finite() && sigma_w > 0.0) {
        return Err(Error::invalid(
            "training sigma_w",
            sigma_w,
            &format!(
                "σ_w^opt = {sigma_w_opt:.4} times the ratio {sigma_ratio} plus the offset {sigma_offset} must be > 0"
            ),
        ));
    }
    let net = Network::new(
        Activation::Quantized(Quantizer::uniform(states, spacing, 1.0)?),
        sigma_w,
        sigma_b,
    )?;
    let q_star = net.q_star()?;
    let c_star = net.c_star(q_star)?;
    let xi = net.depth_scale(q_star, c_star);
    let ste_slope = m.sqrt() * unit_slope(&net, q_star, ste_threshold)?;
    Ok(Init {
        states,
        spacing,
        sigma_w_opt,
        sigma_w,
        q_star,
        c_star,
        xi,
        ste_slope,
    })
}

impl ModelSpec {
    /// Checks sizes and values; the names are the config's.
    pub fn validate(&self) -> Result<()> {
        if self.depth < 2 {
            return Err(Error::invalid(
                "training depth",
                self.depth,
                "at least 2 weight layers (input → n → classes)",
            ));
        }
        for (k, v) in [
            ("input_dim", self.input_dim),
            ("width", self.width),
            ("classes", self.classes),
        ] {
            if v == 0 || v > (1 << 24) {
                return Err(Error::invalid(
                    &format!("training {k}"),
                    v,
                    "between 1 and 2^24",
                ));
            }
        }
        if let Phi::Uniform {
            states,
            spacing,
            amplitude,
        } = self.phi
        {
            if states < 2
                || !(spacing.is_finite() && spacing > 0.0)
                || !(amplitude.is_finite() && amplitude > 0.0)
            {
                return Err(Error::invalid(
                    "training quantizer",
                    format!("N = {states}, Δ = {spacing}, A = {amplitude}"),
                    "N ≥ 2, Δ > 0, A > 0",
                ));
            }
        }
        for (k, v) in [
            ("ste slope", self.ste_slope),
            ("ste_threshold", self.ste_threshold),
            ("sigma_w", self.sigma_w),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(
                    &format!("training {k}"),
                    v,
                    "a finite number > 0",
                ));
            }
        }
        if !(self.sigma_b.is_finite() && self.sigma_b >= 0.0) {
            return Err(Error::invalid(
                "training sigma_b",
                self.sigma_b,
                "a number ≥ 0",
            ));
        }
        self.parameter_count().map(|_| ())
    }

    /// (fan_in, fan_out) of weight layer l (0-based).
    pub fn layer_shape(&self, l: usize) -> (usize, usize) {
        let fan_in = if l == 0 { self.input_dim } else { self.width };
        let fan_out = if l + 1 == self.depth {
            self.classes
        } else {
            self.width
        };
        (fan_in, fan_out)
    }

    /// Number of weights and biases, overflow-checked.
    pub fn parameter_count(&self) -> Result<usize> {
        (0..self.depth)
            .try_fold(0usize, |acc, l| {
                let (i, o) = self.layer_shape(l);
                i.checked_mul(o)?.checked_add(o)?.checked_add(acc)
            })
            .ok_or_else(|| {
                Error::invalid(
                    "training network",
                    format!("width {} × depth {}", self.width, self.depth),
                    "too many parameters for this machine's address space",
                )
            })
    }

    /// Multiply-adds of one forward pass of one input (Σ fan_in·fan_out).
    pub fn forward_macs(&self) -> f64 {
        (0..self.depth)
            .map(|l| {
                let (i, o) = self.layer_shape(l);
                (i * o) as f64
            })
            .sum()
    }

    /// Multiply-adds of one SGD step on one input: forward (W·A), input
    /// gradient (Wᵀ·G) and weight gradient (G·Aᵀ) for every layer, less the
    /// first layer's input gradient, which is never computed:
    /// 3·Σ fan_in·fan_out − input_dim·fan_out(0).
    pub fn step_macs(&self) -> f64 {
        let (i, o) = self.layer_shape(0);
        3.0 * self.forward_macs() - (i * o) as f64
    }

    /// φ (in f64; the kernels evaluate the same formula in f32, which can
    /// differ only for an input within rounding of a threshold).
    #[inline(always)]
    pub fn phi_f64(&self, x: f64) -> f64 {
        match self.phi {
            Phi::Uniform {
                states,
                spacing,
                amplitude,
            } => {
                let k = (x / spacing + states as f64 / 2.0)
                    .floor()
                    .clamp(0.0, states as f64 - 1.0);
                -amplitude + k * (2.0 * amplitude / (states as f64 - 1.0))
            }
            Phi::Surrogate => self.ste_slope * x.clamp(-self.ste_threshold, self.ste_threshold),
        }
    }
}

/// Weights and biases of every layer: `weights[l]` is fan_out × fan_in,
/// row-major (row o holds the weights into unit o).
#[derive(Debug, Clone, PartialEq)]
pub struct Params<T> {
    /// Per layer, fan_out × fan_in.
    pub weights: Vec<Vec<T>>,
    /// Per layer, fan_out.
    pub biases: Vec<Vec<T>>,
}

impl<T: Copy + Default> Params<T> {
    /// All zeros in the shapes of `spec`.
    pub fn zeros(spec: &ModelSpec) -> Self {
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for l in 0..spec.depth {
            let (i, o) = spec.layer_shape(l);
            weights.push(vec![T::default(); i * o]);
            biases.push(vec![T::default(); o]);
        }
        Params { weights, biases }
    }
}

impl Params<f32> {
    /// The initialization: W_l[o][i] = σ_w/√fan_in · z(seed, l, o, i) and
    /// b_l[o] = σ_b · z(seed, l, BIAS_ROW, o), z the standard normals of the
    /// project's Philox stream (network sample 0).
    pub fn init(spec: &ModelSpec, seed: u64) -> Self {
        let stream = Stream::new(seed, 0);
        let mut p = Params::zeros(spec);
        for l in 0..spec.depth {
            let (fan_in, _) = spec.layer_shape(l);
            let scale = (spec.sigma_w / (fan_in as f64).sqrt()) as f32;
            for (o, row) in p.weights[l].chunks_mut(fan_in).enumerate() {
                stream.fill_row(l as u32, o as u32, row);
                row.iter_mut().for_each(|w| *w *= scale);
            }
            if spec.sigma_b > 0.0 {
                let b = &mut p.biases[l];
                stream.fill_row(l as u32, BIAS_ROW, b);
                b.iter_mut().for_each(|x| *x *= spec.sigma_b as f32);
            }
        }
        p
    }

    /// The same parameters in f64.
    pub fn to_f64(&self) -> Params<f64> {
        let c = |v: &Vec<Vec<f32>>| -> Vec<Vec<f64>> {
            v.iter()
                .map(|r| r.iter().map(|&x| x as f64).collect())
                .collect()
        };
        Params {
            weights: c(&self.weights),
            biases: c(&self.biases),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_preset_reproduces_the_authors_sigma_w() {
        // The paper's σ_w = 1.124, 1.069, 1.012, 1.005 for N = 3, 4, 10, 16.
        for (n, want) in [(3, 1.124), (4, 1.069), (10, 1.012), (16, 1.005)] {
            let i = theory_init(n, Preset::Paper, 1.0, 0.0, 0.0, 1.0, 1.0).unwrap();
            assert!((i.sigma_w - want).abs() < 5e-4, "N = {n}: {}", i.sigma_w);
        }
    }

    #[test]
    fn theory_preset_has_unit_q_star_and_the_exact_xi() {
        // README: ξ_max = 4.740776 (N = 3), 7.903706 (N = 4).
        for (n, xi) in [(3, 4.740776), (4, 7.903706)] {
            let i = theory_init(n, Preset::Theory, 1.0, 0.0, 0.0, 1.0, 1.0).unwrap();
            assert!((i.q_star - 1.0).abs() < 1e-9, "q* = {}", i.q_star);
            assert!((i.xi - xi).abs() < 1e-5, "N = {n}: ξ = {}", i.xi);
        }
    }
}
