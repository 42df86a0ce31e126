//! Experiments from config files: sweep expansion, the runner, analysis,
//! results folders and plots.
//!
//! Data flow: config (TOML) → [`config::Config::points`] → for each point,
//! theory and simulation side by side → analysis (ξ_emp, agreement) →
//! results folder (`config.toml`, `meta.json`, `curves.csv`, `curves.json`,
//! `summary.json`, `plots/`).

pub mod config;
pub mod plots;
pub mod runner;
pub mod training;
pub mod training_plots;

pub use config::Config;
pub use runner::{run_experiment, Hooks, RunReport};
