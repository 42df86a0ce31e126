//! The experiment config (TOML): schema, validation and sweep expansion.
//!
//! ```toml
//! name = "quickstart"
//! seed = 1
//! backend = "auto"            # auto | cpu | gpu
//!
//! [network]
//! activation = "uniform"      # uniform | tanh | hard-tanh | linear
//! states = 4                  # N of the uniform quantizer
//! spacing = "opt"             # Δ: a number, or "opt" = D̃_opt(N)
//! amplitude = 1.0
//! sigma_w = "opt"             # a number, "opt", or an offset such as "opt+0.1"
//! sigma_b = 0.0
//! width = 1024
//! depth = 40                  # layers (with depth_per_xi: the cap)
//! depth_per_xi = 6.0          # optional: depth = ⌈6·ξ_c⌉ of each point, capped by depth
//! samples = 16                # independent networks
//! weights = "gaussian"        # gaussian | rademacher | hadamard (power-of-two widths)
//!
//! [inputs]
//! kind = "pairs"              # pairs | circle
//! c0 = [0.3, 0.9]             # pairs: input correlations
//! pairs = 4                   # pairs per c0 per network
//! points = 32                 # circle: points on the great circle
//!
//! [sweep]                     # lists, or inclusive integer ranges "a..b"
//! states = "2..8"
//! sigma_w = ["opt-0.1", "opt", "opt+0.1"]
//! sigma_b = [0.0, 0.1]
//! width = [512, 1024]
//! depth = [40, 80]
//!
//! [outputs]
//! dir = "results"
//! plots = true
//! png = true
//! ```
//!
//! `kind = "optimal"` runs the theory alone: the optimal initialization for
//! every N of `sweep.states`, with the scaling fits.

//!
//! The files: this one is the schema; [`values`] the values a key may take
//! (numbers or strings, σ_w with its offset from σ_w^opt, integer axes);
//! [`sweep`] the checks serde cannot make and the expansion of the sweep
//! into run points.

pub mod sweep;
pub mod values;

pub use sweep::{InputChoice, RunPoint};
pub use values::{IntAxis, NumOrStr, SigmaW};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// What an experiment computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Simulation beside the theory for every sweep point.
    #[default]
    Simulation,
    /// The optimal initialization scan over N (theory only).
    Optimal,
    /// Training on images: trainable depth against ξ (`[training]`).
    Training,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// uniform | tanh | hard-tanh | linear.
    pub activation: Option<String>,
    /// N (uniform quantizer).
    pub states: Option<usize>,
    /// Δ or "opt".
    pub spacing: Option<NumOrStr>,
    /// A.
    pub amplitude: Option<f64>,
    /// σ_w: number, "opt" or "opt±x".
    pub sigma_w: Option<NumOrStr>,
    /// σ_b.
    pub sigma_b: Option<f64>,
    /// Input variance q⁰ (default q*).
    pub q0: Option<f64>,
    /// Width n.
    pub width: Option<usize>,
    /// Depth L (the cap when depth_per_xi is set).
    pub depth: Option<usize>,
    /// Depth in units of the point's ξ_c.
    pub depth_per_xi: Option<f64>,
    /// Network samples E.
    pub samples: Option<usize>,
    /// Weight ensemble: "gaussian" (default), "rademacher" or "hadamard"
    /// (power-of-two widths).
    pub weights: Option<String>,
}

/// `[inputs]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InputsConfig {
    /// pairs | circle.
    pub kind: Option<String>,
    /// Input correlations (pairs).
    pub c0: Option<Vec<f64>>,
    /// Pairs per c⁰ per network.
    pub pairs: Option<usize>,
    /// Points on the circle.
    pub points: Option<usize>,
}

/// `[sweep]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// N values.
    pub states: Option<IntAxis>,
    /// σ_w values.
    pub sigma_w: Option<Vec<NumOrStr>>,
    /// σ_b values.
    pub sigma_b: Option<Vec<f64>>,
    /// Widths.
    pub width: Option<IntAxis>,
    /// Depths.
    pub depth: Option<IntAxis>,
}

/// `[backward]`: straight-through gradients through every network of a
/// point (pair inputs), one run per target backward factor M.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackwardConfig {
    /// STE clipping threshold t of s·1{|x| ≤ t} (default 1; "inf" not accepted here).
    pub ste_threshold: Option<f64>,
    /// Target backward factors M = σ_w² s² erf(t/√(2q*)); the slope s is
    /// chosen to give each (default [1.0]).
    pub m: Option<Vec<f64>>,
}

/// `[outputs]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OutputsConfig {
    /// Parent folder of results folders (default "results").
    pub dir: Option<String>,
    /// Write plots (default true).
    pub plots: Option<bool>,
    /// Also write PNG beside every SVG (default true).
    pub png: Option<bool>,
}

/// A whole config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Experiment name (names the results folder).
    pub name: String,
    /// simulation | optimal.
    #[serde(default)]
    pub kind: Kind,
    /// auto | cpu | gpu.
    pub backend: Option<String>,
    /// Seed of every random number.
    pub seed: Option<u64>,
    /// κ for L_max (optimal scans).
    pub kappa: Option<f64>,
    /// Most sweep points allowed (default 10,000; `--max-points` overrides).
    pub max_points: Option<usize>,
    /// The network.
    #[serde(default)]
    pub network: NetworkConfig,
    /// The inputs.
    #[serde(default)]
    pub inputs: InputsConfig,
    /// Sweep axes.
    #[serde(default)]
    pub sweep: SweepConfig,
    /// Outputs.
    #[serde(default)]
    pub outputs: OutputsConfig,
    /// Optional backward pass.
    pub backward: Option<BackwardConfig>,
    /// Training runs (`kind = "training"`).
    pub training: Option<crate::experiment::training::TrainingConfig>,
}

impl Config {
    /// Parses TOML; unknown keys and wrong types are errors naming the key and line.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| Error::Config(e.to_string().trim_end().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a config file's text: a regular file (a FIFO or a device is
    /// refused, never waited on or read on and on) of at most 1 MiB of UTF-8
    /// (a config is a few KiB). The command line and Python read configs
    /// here.
    pub fn read_file(path: &std::path::Path) -> Result<String> {
        crate::safe_fs::read_capped_text(path, crate::experiment::folder::CONFIG_CAP).map_err(|e| {
            let msg = e.to_string();
            let msg = msg.split(" (os error").next().unwrap_or(&msg);
            Error::Config(format!("cannot read the config {}: {msg}", path.display()))
        })
    }

    /// The seed (default 0).
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or(0)
    }

    /// The backend name (default "auto").
    pub fn backend(&self) -> &str {
        self.backend.as_deref().unwrap_or("auto")
    }
}

impl Config {
    /// Settings that are valid but probably not what was meant, one line
    /// each, for the command line to print before running.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if let (Some(n), Some(_)) = (self.network.states, &self.sweep.states) {
            w.push(format!(
                "network.states = {n} is overridden by sweep.states: every point takes its N from the sweep \
                 (remove one of the two)"
            ));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_w_offsets_parse() {
        let p = |s: &str| SigmaW::parse("k", &NumOrStr::Str(s.into()));
        assert_eq!(p("opt").unwrap(), SigmaW::Opt(0.0));
        assert_eq!(p("opt+0.1").unwrap(), SigmaW::Opt(0.1));
        assert_eq!(p("opt - 0.2").unwrap(), SigmaW::Opt(-0.2));
        for bad in ["optt", "opt0.1", "op", "opt+x"] {
            assert!(
                p(bad)
                    .unwrap_err()
                    .to_string()
                    .contains(&format!("\"{bad}\"")),
                "{bad}"
            );
        }
    }

    #[test]
    fn sweep_is_a_cartesian_product() {
        let cfg = Config::from_toml(
            r#"
name = "t"
[network]
width = 64
depth = 3
[sweep]
states = "2..4"
sigma_w = ["opt", "opt+0.1"]
"#,
        )
        .unwrap();
        let pts = cfg.points().unwrap();
        assert_eq!(pts.len(), 6);
        assert_eq!(pts[5].states, Some(4));
        assert_eq!(pts[5].sigma_w, SigmaW::Opt(0.1));
    }
}
