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

use crate::error::{fmt_value, Error, Result};
use crate::experiment::plan::DEFAULT_MAX_POINTS;
use crate::setup::parse_int_spec;
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

/// A number or a string in a config (σ_w, spacing, ranges).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumOrStr {
    /// A plain number.
    Num(f64),
    /// A string such as "opt+0.1" or "2..8".
    Str(String),
}

/// σ_w as a config gives it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum SigmaW {
    /// A fixed value.
    Value(f64),
    /// σ_w^opt plus an offset.
    Opt(f64),
}

impl SigmaW {
    /// Parses a number, "opt", "opt+x" or "opt-x"; `key` names the config key in errors.
    pub fn parse(key: &str, v: &NumOrStr) -> Result<Self> {
        let bad = |s: &str| {
            Error::invalid(
                key,
                format!("\"{s}\""),
                "expected a number, \"opt\", or \"opt+x\" / \"opt-x\" (e.g. \"opt+0.1\")",
            )
        };
        match v {
            NumOrStr::Num(x) => Ok(SigmaW::Value(*x)),
            NumOrStr::Str(s) => {
                let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                let Some(rest) = t.strip_prefix("opt") else {
                    return Err(bad(s));
                };
                if rest.is_empty() {
                    return Ok(SigmaW::Opt(0.0));
                }
                if !(rest.starts_with('+') || rest.starts_with('-')) {
                    return Err(bad(s));
                }
                rest.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(SigmaW::Opt)
                    .ok_or_else(|| bad(s))
            }
        }
    }

    /// A label: "0.95", "opt", "opt+0.1".
    pub fn label(&self) -> String {
        match self {
            SigmaW::Value(x) => format!("{x}"),
            SigmaW::Opt(o) if *o == 0.0 => "opt".into(),
            SigmaW::Opt(o) => format!("opt{o:+}"),
        }
    }
}

/// An integer axis: one value, a list, or an inclusive range "a..b".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntAxis {
    /// One value.
    One(usize),
    /// A list.
    List(Vec<usize>),
    /// A range or comma list as a string, e.g. "2..8" or "3..6,10".
    Spec(String),
}

impl IntAxis {
    fn values(&self, key: &str) -> Result<Vec<usize>> {
        match self {
            IntAxis::One(v) => Ok(vec![*v]),
            IntAxis::List(v) if v.is_empty() => Err(Error::invalid(
                key,
                "[]",
                "an empty list: give at least one value",
            )),
            IntAxis::List(v) => Ok(v.clone()),
            IntAxis::Spec(s) => {
                let out = parse_int_spec(s)
                    .map_err(|why| Error::invalid(key, format!("\"{s}\""), &why))?;
                Ok(out)
            }
        }
    }
}

/// `[network]`.
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

/// The input ensemble of every point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum InputChoice {
    /// Pairs with correlations c0, `pairs` per value.
    Pairs {
        /// c⁰ values.
        c0: Vec<f64>,
        /// Pairs per value.
        pairs: usize,
    },
    /// A circle of points.
    Circle {
        /// Number of points.
        points: usize,
    },
}

/// One point of a sweep, fully specified except for theory-derived values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPoint {
    /// Index in the sweep.
    pub index: usize,
    /// uniform | tanh | hard-tanh | linear.
    pub activation: String,
    /// N (uniform).
    pub states: Option<usize>,
    /// Δ, or None for D̃_opt(N).
    pub spacing: Option<f64>,
    /// A.
    pub amplitude: Option<f64>,
    /// σ_w.
    pub sigma_w: SigmaW,
    /// σ_b.
    pub sigma_b: f64,
    /// q⁰ (None: q*).
    pub q0: Option<f64>,
    /// Width n.
    pub width: usize,
    /// Depth L (the cap when depth_per_xi is set).
    pub depth: usize,
    /// Depth in units of ξ_c.
    pub depth_per_xi: Option<f64>,
    /// Network samples.
    pub samples: usize,
    /// Inputs.
    pub inputs: InputChoice,
}

impl RunPoint {
    /// A short label, e.g. "N=4 σw=opt+0.1 σb=0 n=1024 L=40".
    pub fn label(&self) -> String {
        let act = match self.states {
            Some(n) => format!("N={n}"),
            None => self.activation.clone(),
        };
        format!(
            "{act} σw={} σb={} n={} L={}",
            self.sigma_w.label(),
            self.sigma_b,
            self.width,
            self.depth
        )
    }
}

impl Config {
    /// Parses TOML; unknown keys and wrong types are errors naming the key and line.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| Error::Config(e.to_string().trim_end().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The seed (default 0).
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or(0)
    }

    /// The backend name (default "auto").
    pub fn backend(&self) -> &str {
        self.backend.as_deref().unwrap_or("auto")
    }

    /// Checks values serde cannot (ranges, names, options that go together).
    pub fn validate(&self) -> Result<()> {
        crate::experiment::folder::check_name(&self.name)?;
        if !matches!(self.backend(), "auto" | "cpu" | "gpu") {
            return Err(Error::invalid(
                "backend",
                format!("\"{}\"", self.backend()),
                "one of \"auto\", \"cpu\", \"gpu\"",
            ));
        }
        if let Some(k) = self.kappa {
            if !(k.is_finite() && k > 0.0 && k <= 1e6) {
                return Err(Error::invalid(
                    "kappa",
                    fmt_value(k),
                    "a number > 0 and at most 1e6 (L_max = kappa·xi_max; about 6 is usual)",
                ));
            }
        }
        if let Some(b) = &self.backward {
            if let Some(t) = b.ste_threshold {
                if !(t.is_finite() && t > 0.0 && t <= 1e6) {
                    return Err(Error::invalid(
                        "backward.ste_threshold",
                        fmt_value(t),
                        "a number > 0 and at most 1e6",
                    ));
                }
            }
            if let Some(ms) = &b.m {
                if ms.is_empty() {
                    return Err(Error::invalid(
                        "backward.m",
                        "[]",
                        "give at least one target backward factor",
                    ));
                }
                if let Some(m) = ms
                    .iter()
                    .find(|m| !(m.is_finite() && **m >= 1e-6 && **m <= 1e6))
                {
                    return Err(Error::invalid(
                        "backward.m",
                        fmt_value(*m),
                        "a backward factor between 1e-6 and 1e6 (1 keeps gradient norms constant)",
                    ));
                }
            }
            if self.inputs.kind.as_deref() == Some("circle") {
                return Err(Error::invalid(
                    "backward",
                    "(with circle inputs)",
                    "the backward pass needs pair inputs",
                ));
            }
        }
        self.validate_weights()?;
        if self.kind == Kind::Training || self.training.is_some() {
            return crate::experiment::training::validate(self);
        }
        if self.kind == Kind::Optimal {
            let ns = self.states_axis()?;
            if ns.len() < 3 {
                return Err(Error::invalid(
                    "sweep.states",
                    ns.len(),
                    "an optimal scan needs at least 3 values of N for its fits",
                ));
            }
            return Ok(());
        }
        self.expand(false).map(|_| ())
    }

    fn states_axis(&self) -> Result<Vec<usize>> {
        let ns = match (&self.sweep.states, self.network.states) {
            (Some(ax), _) => ax.values("sweep.states")?,
            (None, Some(n)) => vec![n],
            (None, None) => {
                return Err(Error::invalid(
                    "network.states",
                    "(missing)",
                    "give network.states or sweep.states for a uniform quantizer",
                ))
            }
        };
        if let Some(n) = ns.iter().find(|n| **n < 2) {
            let key = if self.sweep.states.is_some() {
                "sweep.states"
            } else {
                "network.states"
            };
            return Err(Error::invalid(
                key,
                n,
                "N must be at least 2 (a quantizer has at least 2 levels)",
            ));
        }
        if let Some(n) = ns.iter().find(|n| **n > crate::setup::MAX_STATES) {
            let key = if self.sweep.states.is_some() {
                "sweep.states"
            } else {
                "network.states"
            };
            return Err(Error::invalid(
                key,
                n,
                &format!("N must be at most {} (2^20)", crate::setup::MAX_STATES),
            ));
        }
        Ok(ns)
    }

    /// The weight ensemble of every simulated network (default Gaussian).
    pub fn weights(&self) -> Result<crate::sim::Weights> {
        match &self.network.weights {
            None => Ok(crate::sim::Weights::Gaussian),
            Some(s) => crate::sim::Weights::parse("network.weights", s),
        }
    }

    /// `network.weights` names an ensemble, and every width has it
    /// (hadamard: powers of two).
    fn validate_weights(&self) -> Result<()> {
        let w = self.weights()?;
        if w == crate::sim::Weights::Gaussian || self.kind == Kind::Optimal {
            return Ok(());
        }
        let key = if self.sweep.width.is_some() {
            "sweep.width"
        } else {
            "network.width"
        };
        for p in self.points()? {
            w.check_width(key, p.width)?;
        }
        Ok(())
    }

    /// The N values of an optimal scan.
    pub fn optimal_states(&self) -> Result<Vec<usize>> {
        let mut ns = self.states_axis()?;
        ns.sort_unstable();
        ns.dedup();
        Ok(ns)
    }

    /// Expands the sweep into run points (Cartesian product, in the order
    /// states, σ_w, σ_b, width, depth).
    ///
    /// Refused beyond `max_points` (default [`DEFAULT_MAX_POINTS`]), counted
    /// before anything is expanded.
    pub fn points(&self) -> Result<Vec<RunPoint>> {
        self.expand(true)
    }

    /// Checks every axis and value; expands the sweep only when `expand`
    /// (then also against the point limit).
    fn expand(&self, expand: bool) -> Result<Vec<RunPoint>> {
        let net = &self.network;
        let activation = net.activation.clone().unwrap_or_else(|| "uniform".into());
        if !matches!(
            activation.as_str(),
            "uniform" | "tanh" | "hard-tanh" | "linear"
        ) {
            return Err(Error::invalid(
                "network.activation",
                format!("\"{activation}\""),
                "one of \"uniform\", \"tanh\", \"hard-tanh\", \"linear\"",
            ));
        }
        let states: Vec<Option<usize>> = if activation == "uniform" {
            self.states_axis()?.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        let spacing = match &net.spacing {
            None => None,
            Some(NumOrStr::Str(s)) if s.trim() == "opt" => None,
            Some(NumOrStr::Num(x)) if x.is_finite() && (1e-150..=1e150).contains(x) => Some(*x),
            Some(v) => {
                let shown = match v {
                    NumOrStr::Num(x) => fmt_value(*x),
                    NumOrStr::Str(t) => format!("\"{t}\""),
                };
                return Err(Error::invalid(
                    "network.spacing",
                    shown,
                    "a number between 1e-150 and 1e150, or \"opt\"",
                ));
            }
        };
        let sigma_ws: Vec<SigmaW> = match (&self.sweep.sigma_w, &net.sigma_w) {
            (Some(list), _) => {
                if list.is_empty() {
                    return Err(Error::invalid(
                        "sweep.sigma_w",
                        "[]",
                        "an empty list: give at least one value",
                    ));
                }
                list.iter()
                    .map(|v| SigmaW::parse("sweep.sigma_w", v))
                    .collect::<Result<_>>()?
            }
            (None, Some(v)) => vec![SigmaW::parse("network.sigma_w", v)?],
            (None, None) => vec![SigmaW::Opt(0.0)],
        };
        if activation != "uniform" && sigma_ws.iter().any(|s| matches!(s, SigmaW::Opt(_))) {
            return Err(Error::invalid(
                "network.sigma_w",
                "\"opt\"",
                "σ_w^opt exists only for the uniform quantizer: give a number",
            ));
        }
        let sigma_bs = self
            .sweep
            .sigma_b
            .clone()
            .unwrap_or_else(|| vec![net.sigma_b.unwrap_or(0.0)]);
        if sigma_bs.is_empty() {
            return Err(Error::invalid(
                "sweep.sigma_b",
                "[]",
                "an empty list: give at least one value",
            ));
        }
        let widths = match (&self.sweep.width, net.width) {
            (Some(a), _) => a.values("sweep.width")?,
            (None, Some(w)) => vec![w],
            (None, None) => {
                return Err(Error::invalid(
                    "network.width",
                    "(missing)",
                    "give the width n of the simulated networks",
                ))
            }
        };
        let depths = match (&self.sweep.depth, net.depth) {
            (Some(a), _) => a.values("sweep.depth")?,
            (None, Some(d)) => vec![d],
            (None, None) => {
                return Err(Error::invalid(
                    "network.depth",
                    "(missing)",
                    "give the depth L of the simulated networks",
                ))
            }
        };
        // Name the key the value came from: the sweep's list, else the network's.
        let section = |swept: bool| if swept { "sweep" } else { "network" };
        let width_key = format!("{}.width", section(self.sweep.width.is_some()));
        let depth_key = format!("{}.depth", section(self.sweep.depth.is_some()));
        if let Some(x) = depths.iter().find(|x| **x == 0) {
            return Err(Error::invalid(&depth_key, x, "must be at least 1"));
        }
        if let Some(w) = widths.iter().find(|w| **w < 2) {
            return Err(Error::invalid(&width_key, w, "must be at least 2"));
        }
        if let Some(x) = net.depth_per_xi {
            if !(x.is_finite() && x > 0.0) {
                return Err(Error::invalid(
                    "network.depth_per_xi",
                    fmt_value(x),
                    "a finite number > 0",
                ));
            }
        }
        for (key, v) in [("network.amplitude", net.amplitude), ("network.q0", net.q0)] {
            if let Some(x) = v {
                if !(x.is_finite() && (1e-150..=1e150).contains(&x)) {
                    return Err(Error::invalid(
                        key,
                        fmt_value(x),
                        "a number between 1e-150 and 1e150 (its square must be a normal double)",
                    ));
                }
            }
        }
        let sb_key = if self.sweep.sigma_b.is_some() {
            "sweep.sigma_b"
        } else {
            "network.sigma_b"
        };
        let sw_key = if self.sweep.sigma_w.is_some() {
            "sweep.sigma_w"
        } else {
            "network.sigma_w"
        };
        if let Some(b) = sigma_bs.iter().find(|b| !(b.is_finite() && **b >= 0.0)) {
            return Err(Error::invalid(
                sb_key,
                fmt_value(*b),
                "a finite number >= 0",
            ));
        }
        use crate::theory::maps::{SIGMA_MAX, SIGMA_MIN};
        if let Some(SigmaW::Value(v)) = sigma_ws
            .iter()
            .find(|s| matches!(s, SigmaW::Value(v) if !(v.is_finite() && *v > 0.0)))
        {
            return Err(Error::invalid(sw_key, fmt_value(*v), "a finite number > 0"));
        }
        if let Some(SigmaW::Value(v)) = sigma_ws
            .iter()
            .find(|s| matches!(s, SigmaW::Value(v) if !(SIGMA_MIN..=SIGMA_MAX).contains(v)))
        {
            return Err(Error::invalid(
                sw_key,
                fmt_value(*v),
                &format!("sigma_w between {SIGMA_MIN:.1e} and {SIGMA_MAX:.1e} (sigma_w² must be a normal double)"),
            ));
        }
        if let Some(SigmaW::Opt(o)) = sigma_ws
            .iter()
            .find(|s| matches!(s, SigmaW::Opt(o) if o.abs() > 1e6))
        {
            return Err(Error::invalid(
                sw_key,
                format!(
                    "\"opt{}{}\"",
                    if *o >= 0.0 { "+" } else { "" },
                    fmt_value(*o)
                ),
                "an offset from sigma_w^opt of at most 1e6 in size (e.g. \"opt+0.1\")",
            ));
        }
        if let Some(b) = sigma_bs.iter().find(|b| **b > SIGMA_MAX) {
            return Err(Error::invalid(
                sb_key,
                fmt_value(*b),
                &format!("sigma_b at most {SIGMA_MAX:.1e} (sigma_b² must be finite)"),
            ));
        }
        let samples = net.samples.unwrap_or(8);
        if samples == 0 {
            return Err(Error::invalid(
                "network.samples",
                0,
                "at least 1 network (2 or more for standard errors)",
            ));
        }
        let inputs = match self.inputs.kind.as_deref().unwrap_or("pairs") {
            "pairs" => {
                let c0 = self.inputs.c0.clone().unwrap_or_else(|| vec![0.5]);
                if c0.is_empty() {
                    return Err(Error::invalid(
                        "inputs.c0",
                        "[]",
                        "give at least one input correlation",
                    ));
                }
                if let Some(c) = c0.iter().find(|c| !(-1.0..=1.0).contains(*c)) {
                    return Err(Error::invalid(
                        "inputs.c0",
                        fmt_value(*c),
                        "a correlation must lie in [-1, 1]",
                    ));
                }
                let pairs = self.inputs.pairs.unwrap_or(1);
                if pairs == 0 {
                    return Err(Error::invalid("inputs.pairs", 0, "at least 1 pair per c0"));
                }
                InputChoice::Pairs { c0, pairs }
            }
            "circle" => {
                let points = self.inputs.points.unwrap_or(32);
                if points < 3 {
                    return Err(Error::invalid(
                        "inputs.points",
                        points,
                        "a circle needs at least 3 points",
                    ));
                }
                InputChoice::Circle { points }
            }
            other => {
                return Err(Error::invalid(
                    "inputs.kind",
                    format!("\"{other}\""),
                    "\"pairs\" or \"circle\"",
                ))
            }
        };
        if !expand {
            return Ok(Vec::new());
        }
        let limit = self.max_points.unwrap_or(DEFAULT_MAX_POINTS);
        let count = [
            states.len(),
            sigma_ws.len(),
            sigma_bs.len(),
            widths.len(),
            depths.len(),
        ]
        .iter()
        .try_fold(1usize, |acc, &k| acc.checked_mul(k));
        match count {
            Some(c) if c <= limit => {}
            _ => {
                return Err(Error::TooLarge(format!(
                    "the sweep has {} points ({} states × {} sigma_w × {} sigma_b × {} widths × {} depths), \
                     more than the limit of {limit}: shorten the sweep, or raise the limit with \
                     max_points in the config or --max-points",
                    count.map_or("more than 2^64".to_string(), |c| c.to_string()),
                    states.len(),
                    sigma_ws.len(),
                    sigma_bs.len(),
                    widths.len(),
                    depths.len()
                )))
            }
        }
        let mut out = Vec::new();
        for &n in &states {
            for &sw in &sigma_ws {
                for &sb in &sigma_bs {
                    for &w in &widths {
                        for &d in &depths {
                            out.push(RunPoint {
                                index: out.len(),
                                activation: activation.clone(),
                                states: n,
                                spacing,
                                amplitude: net.amplitude,
                                sigma_w: sw,
                                sigma_b: sb,
                                q0: net.q0,
                                width: w,
                                depth: d,
                                depth_per_xi: net.depth_per_xi,
                                samples,
                                inputs: inputs.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
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
