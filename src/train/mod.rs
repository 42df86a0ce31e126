//! Training deep quantized networks on images: the paper's trainability
//! experiment (Figure 3).
//!
//! Training is its own workload: weights are stored and updated (unlike the
//! simulator, which generates them). It shares with the simulator only the
//! quantizer ([`crate::activation::Quantizer`]), the theory-derived
//! initialization ([`crate::setup`], [`crate::theory::optimal`],
//! [`crate::theory::backward::unit_slope`]) and the RNG ([`crate::rng`]).
//!
//! * [`data`]: IDX files (MNIST, Fashion-MNIST), normalization, shuffling.

pub mod cpu;
pub mod data;
pub mod model;
