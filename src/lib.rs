//! # quantdepth
//!
//! How deep can a network with N-level quantized activations be and still
//! train, and how should it be initialized? quantdepth answers with the exact
//! mean-field (infinite-width) theory of quantized networks ([`theory`]) and
//! with simulations of deep, wide random networks at finite width ([`sim`]).
//!
//! ```
//! use quantdepth::theory::optimal::uniform_optimum;
//! let opt = uniform_optimum(16, 6.0).unwrap();
//! // The paper's published value for N = 16: 1 − χ_max = 0.011543.
//! assert!((opt.one_minus_chi_max - 0.011543).abs() < 5e-7);
//! ```

pub mod activation;
pub mod error;
pub mod gauss;
pub mod quadrature;
pub mod theory;

pub use activation::{Activation, Quantizer};
pub use error::{Error, Result};
pub mod analysis;
pub mod experiment;
pub mod rng;
pub mod safe_fs;
pub mod setup;
pub mod sim;
pub mod train;
