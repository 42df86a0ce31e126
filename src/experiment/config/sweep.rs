//! The checks of a config that serde cannot make (ranges, names, options
//! that go together), and the expansion of its sweep into run points.

use crate::error::{fmt_value, Error, Result};
use crate::experiment::config::values::{IntAxis, NumOrStr, SigmaW};
use crate::experiment::config::{Config, Kind};
use serde::Serialize;

/// Default limit on the points of one sweep (`max_points` in the config or
/// `--max-points` raise it).
pub const DEFAULT_MAX_POINTS: usize = 10_000;

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
        let ns = axis(
            &self.sweep.states,
            self.network.states,
            "states",
            "give network.states or sweep.states for a uniform quantizer",
        )?;
        let key = swept_key(self.sweep.states.is_some(), "states");
        if let Some(n) = ns.iter().find(|n| **n < 2) {
            return Err(Error::invalid(
                &key,
                n,
                "N must be at least 2 (a quantizer has at least 2 levels)",
            ));
        }
        if let Some(n) = ns.iter().find(|n| **n > crate::setup::MAX_STATES) {
            return Err(Error::invalid(
                &key,
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
        let key = swept_key(self.sweep.width.is_some(), "width");
        for p in self.points()? {
            w.check_width(&key, p.width)?;
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
        let widths = axis(
            &self.sweep.width,
            net.width,
            "width",
            "give the width n of the simulated networks",
        )?;
        let depths = axis(
            &self.sweep.depth,
            net.depth,
            "depth",
            "give the depth L of the simulated networks",
        )?;
        let width_key = swept_key(self.sweep.width.is_some(), "width");
        let depth_key = swept_key(self.sweep.depth.is_some(), "depth");
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
        let sb_key = swept_key(self.sweep.sigma_b.is_some(), "sigma_b");
        let sw_key = swept_key(self.sweep.sigma_w.is_some(), "sigma_w");
        if let Some(b) = sigma_bs.iter().find(|b| !(b.is_finite() && **b >= 0.0)) {
            return Err(Error::invalid(
                &sb_key,
                fmt_value(*b),
                "a finite number >= 0",
            ));
        }
        use crate::theory::maps::{SIGMA_MAX, SIGMA_MIN};
        if let Some(SigmaW::Value(v)) = sigma_ws
            .iter()
            .find(|s| matches!(s, SigmaW::Value(v) if !(v.is_finite() && *v > 0.0)))
        {
            return Err(Error::invalid(
                &sw_key,
                fmt_value(*v),
                "a finite number > 0",
            ));
        }
        if let Some(SigmaW::Value(v)) = sigma_ws
            .iter()
            .find(|s| matches!(s, SigmaW::Value(v) if !(SIGMA_MIN..=SIGMA_MAX).contains(v)))
        {
            return Err(Error::invalid(
                &sw_key,
                fmt_value(*v),
                &format!("sigma_w between {SIGMA_MIN:.1e} and {SIGMA_MAX:.1e} (sigma_w² must be a normal double)"),
            ));
        }
        if let Some(SigmaW::Opt(o)) = sigma_ws
            .iter()
            .find(|s| matches!(s, SigmaW::Opt(o) if o.abs() > 1e6))
        {
            return Err(Error::invalid(
                &sw_key,
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
                &sb_key,
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

/// The key a value came from: `sweep.<name>` when the sweep lists it, else
/// `network.<name>`.
fn swept_key(swept: bool, name: &str) -> String {
    format!("{}.{name}", if swept { "sweep" } else { "network" })
}

/// The values of an axis `name`: the sweep's list, else the network's one
/// value, else an error on `network.<name>` saying `missing`.
fn axis(
    swept: &Option<IntAxis>,
    one: Option<usize>,
    name: &str,
    missing: &str,
) -> Result<Vec<usize>> {
    match (swept, one) {
        (Some(ax), _) => ax.values(&format!("sweep.{name}")),
        (None, Some(v)) => Ok(vec![v]),
        (None, None) => Err(Error::invalid(
            &format!("network.{name}"),
            "(missing)",
            missing,
        )),
    }
}
