//! The exact mean-field (infinite-width) theory of quantized networks.
//!
//! * [`maps`]: variance and correlation maps, χ, fixed points, depth curves;
//! * [`optimal`]: the optimal spacing D̃_opt(N), χ_max, ξ_max, σ_w^opt, L_max;
//! * [`scaling`]: log-log fits and local exponents of the trade-off;
//! * [`backward`]: straight-through gradients and the NTK;
//! * [`nonuniform`]: optimal symmetric quantizers with free thresholds;
//! * [`finite_width`]: the 1/n corrections a width-n experiment measures;
//! * [`init`]: the initialization a user types into a model (σ_w, levels, thresholds, STE slope).

pub mod backward;
pub mod finite_width;
pub mod init;
pub mod maps;
pub mod nonuniform;
pub mod optimal;
pub mod scaling;

pub use maps::{CurvePoint, Network};
pub use optimal::{optimal_sigma_w, optimal_spacing, uniform_optimum, UniformOptimum};
