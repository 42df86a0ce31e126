//! From what a user asks for (states, spacing, σ_w, … each optional) to a
//! fully specified network, with the defaults the theory prescribes, and the
//! list syntax shared by the CLI and configs.

use crate::activation::{Activation, Quantizer};
use crate::error::{fmt_value, Error, Result};
use crate::theory::maps::Network;
use crate::theory::optimal::{optimal_sigma_w, optimal_spacing};

/// The activation family a user picked.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivationChoice {
    /// The uniform symmetric quantizer with N states.
    Uniform(usize),
    /// A general quantizer from levels and thresholds.
    Custom {
        /// Levels y₀ < … < y_{N−1}.
        levels: Vec<f64>,
        /// Thresholds g₁ < … < g_{N−1}.
        thresholds: Vec<f64>,
    },
    /// tanh.
    Tanh,
    /// Hard-tanh.
    HardTanh,
    /// Identity.
    Linear,
}

/// A network as asked for: every parameter optional.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkChoice {
    /// The activation.
    pub activation: ActivationChoice,
    /// Threshold spacing Δ of the uniform quantizer.
    pub spacing: Option<f64>,
    /// Amplitude A of the uniform quantizer.
    pub amplitude: Option<f64>,
    /// Weight scale σ_w.
    pub sigma_w: Option<f64>,
    /// Bias scale σ_b.
    pub sigma_b: Option<f64>,
    /// Input pre-activation variance q⁰.
    pub q0: Option<f64>,
}

/// A fully specified network with its fixed point and the names of the
/// parameters that took their defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedNetwork {
    /// The mean-field network (not stored: resolve the choice again to get it;
    /// a record read back holds a placeholder until then).
    #[serde(skip, default = "placeholder_network")]
    pub network: Network,
    /// Human-readable activation.
    pub activation: String,
    /// N for quantizers.
    pub states: Option<usize>,
    /// Δ for the uniform quantizer.
    pub spacing: Option<f64>,
    /// A for the uniform quantizer.
    pub amplitude: Option<f64>,
    /// σ_w.
    pub sigma_w: f64,
    /// σ_b.
    pub sigma_b: f64,
    /// The variance fixed point q*.
    pub q_star: f64,
    /// The inputs' pre-activation variance q⁰.
    pub q0: f64,
    /// Parameters that were not given and took their defaults.
    pub defaulted: Vec<String>,
}

fn placeholder_network() -> Network {
    Network {
        activation: Activation::Linear,
        sigma_w: 1.0,
        sigma_b: 0.0,
    }
}

impl NetworkChoice {
    /// The uniform quantizer with N states, everything else defaulted.
    pub fn uniform(n: usize) -> Self {
        NetworkChoice {
            activation: ActivationChoice::Uniform(n),
            spacing: None,
            amplitude: None,
            sigma_w: None,
            sigma_b: None,
            q0: None,
        }
    }

    /// Fills in the defaults: amplitude 1; spacing D̃_opt(N) (the optimal
    /// spacing at unit pre-activation variance; 1 for N = 2, where it does not
    /// matter); σ_w = σ_w^opt for that spacing and amplitude; σ_b = 0;
    /// q⁰ = q*. Continuous activations and custom quantizers need σ_w.
    pub fn resolve(&self) -> Result<ResolvedNetwork> {
        self.check_inputs()?;
        let mut defaulted = Vec::new();
        let mut take =
            |name: &str, v: Option<f64>, default: &dyn Fn() -> Result<f64>| -> Result<f64> {
                match v {
                    Some(x) => Ok(x),
                    None => {
                        defaulted.push(name.to_string());
                        default()
                    }
                }
            };
        let sigma_b = take("sigma_b", self.sigma_b, &|| Ok(0.0))?;
        let (activation, states, spacing, amplitude, sigma_w) = match &self.activation {
            ActivationChoice::Uniform(n) => {
                let n = *n;
                if n < 2 {
                    return Err(Error::invalid(
                        "states N",
                        n,
                        "a quantizer needs N >= 2 states",
                    ));
                }
                let amplitude = take("amplitude", self.amplitude, &|| Ok(1.0))?;
                let spacing = take("spacing", self.spacing, &|| {
                    Ok(optimal_spacing(n)?.unwrap_or(1.0))
                })?;
                let quant = Quantizer::uniform(n, spacing, amplitude)?;
                let sigma_w = take("sigma_w", self.sigma_w, &|| {
                    let sw = optimal_sigma_w(n, spacing, amplitude)?.0;
                    let sw2 = sw * sw;
                    if !(sw2.is_finite() && sw2.is_normal()) {
                        return Err(Error::invalid(
                            "amplitude",
                            fmt_value(amplitude),
                            &format!(
                                "the optimal sigma_w for this amplitude and spacing Δ = {} would be {}, \
                                 whose square is not a normal double: give an amplitude nearer 1 \
                                 (or give sigma_w)",
                                fmt_value(spacing),
                                fmt_value(sw)
                            ),
                        ));
                    }
                    Ok(sw)
                })?;
                (
                    Activation::Quantized(quant),
                    Some(n),
                    Some(spacing),
                    Some(amplitude),
                    sigma_w,
                )
            }
            other => {
                let act = match other {
                    ActivationChoice::Custom { levels, thresholds } => {
                        Activation::Quantized(Quantizer::new(levels.clone(), thresholds.clone())?)
                    }
                    ActivationChoice::Tanh => Activation::Tanh,
                    ActivationChoice::HardTanh => Activation::HardTanh,
                    _ => Activation::Linear,
                };
                let Some(sigma_w) = self.sigma_w else {
                    return Err(Error::invalid(
                        "sigma_w",
                        "(not given)",
                        &format!(
                            "{} has no optimal sigma_w in this theory: give sigma_w",
                            act.name()
                        ),
                    ));
                };
                for (name, v) in [("spacing", self.spacing), ("amplitude", self.amplitude)] {
                    if let Some(v) = v {
                        return Err(Error::invalid(
                            name,
                            v,
                            "applies only to the uniform quantizer (give states N)",
                        ));
                    }
                }
                let states = match &act {
                    Activation::Quantized(q) => Some(q.states()),
                    _ => None,
                };
                (act, states, None, None, sigma_w)
            }
        };
        let network = Network::new(activation, sigma_w, sigma_b)?;
        let q_star = network.q_star()?;
        let q0 = take("q0", self.q0, &|| Ok(q_star))?;
        if !(q0.is_finite() && q0 > 0.0) {
            return Err(Error::invalid(
                "q0",
                q0,
                "the input variance must be a finite number > 0",
            ));
        }
        Ok(ResolvedNetwork {
            activation: network.activation.name(),
            network,
            states,
            spacing,
            amplitude,
            sigma_w,
            sigma_b,
            q_star,
            q0,
            defaulted,
        })
    }
}

/// Largest N accepted for the uniform quantizer (its theory costs O(N) per
/// evaluation; N = 2^20 takes seconds).
pub const MAX_STATES: usize = 1 << 20;

/// Most values one list or range may expand to.
pub const MAX_LIST_VALUES: usize = 1_000_000;

impl NetworkChoice {
    /// Checks every given value for finiteness and range before any use,
    /// naming the parameter as the user set it.
    pub fn check_inputs(&self) -> Result<()> {
        if let ActivationChoice::Uniform(n) = self.activation {
            if n < 2 {
                return Err(Error::invalid(
                    "states N",
                    n,
                    "a quantizer needs N >= 2 states",
                ));
            }
            if n > MAX_STATES {
                return Err(Error::invalid(
                    "states N",
                    n,
                    &format!("at most {MAX_STATES} states (2^20)"),
                ));
            }
        }
        if let ActivationChoice::Custom { levels, thresholds } = &self.activation {
            if levels.len() > MAX_STATES {
                return Err(Error::invalid(
                    "levels",
                    format!("({} values)", levels.len()),
                    &format!("at most {MAX_STATES} levels"),
                ));
            }
            for (name, v) in [("levels", levels), ("thresholds", thresholds)] {
                if let Some(x) = v.iter().find(|x| !x.is_finite() || x.abs() > 1e150) {
                    return Err(Error::invalid(
                        name,
                        fmt_value(*x),
                        "every value must be finite with magnitude at most 1e150 (its square must be representable)",
                    ));
                }
            }
        }
        for (name, v) in [
            ("spacing", self.spacing),
            ("amplitude", self.amplitude),
            ("q0", self.q0),
        ] {
            if let Some(x) = v {
                if !(x.is_finite() && x > 0.0) {
                    return Err(Error::invalid(
                        name,
                        fmt_value(x),
                        "must be a finite number > 0",
                    ));
                }
                if !(1e-150..=1e150).contains(&x) {
                    return Err(Error::invalid(
                        name,
                        fmt_value(x),
                        "must lie between 1e-150 and 1e150 (its square must be a normal double)",
                    ));
                }
            }
        }
        if let Some(x) = self.sigma_w {
            if !(x.is_finite() && x > 0.0) {
                return Err(Error::invalid(
                    "sigma_w",
                    fmt_value(x),
                    "must be a finite number > 0",
                ));
            }
        }
        if let Some(x) = self.sigma_b {
            if !(x.is_finite() && x >= 0.0) {
                return Err(Error::invalid(
                    "sigma_b",
                    fmt_value(x),
                    "must be a finite number >= 0",
                ));
            }
        }
        Ok(())
    }
}

/// Parses comma-separated whole numbers and inclusive ranges ("2..8",
/// "3..64,128", "2..=5"), in the order given; the error says what is wrong.
pub fn parse_int_spec(spec: &str) -> std::result::Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(
                "an empty entry: write integers and ranges separated by commas, e.g. 3..64,128"
                    .into(),
            );
        }
        let int = |s: &str| {
            s.trim().parse::<usize>().map_err(|_| {
                format!(
                    "'{}' is not a whole number; write e.g. 16 or 2..1025",
                    s.trim()
                )
            })
        };
        match part.split_once("..") {
            Some((a, b)) => {
                let (lo, hi) = (int(a)?, int(b.strip_prefix('=').unwrap_or(b))?);
                if lo > hi {
                    return Err(format!("the range {part} is empty ({lo} > {hi}); write the smaller number first, e.g. {hi}..{lo}"));
                }
                let count = (hi - lo).saturating_add(1);
                if out.len().saturating_add(count) > MAX_LIST_VALUES {
                    return Err(format!(
                        "the range {part} has {count} values; a list expands to at most {MAX_LIST_VALUES}"
                    ));
                }
                out.extend(lo..=hi);
            }
            None => {
                if out.len() >= MAX_LIST_VALUES {
                    return Err(format!(
                        "a list expands to at most {MAX_LIST_VALUES} values"
                    ));
                }
                out.push(int(part)?)
            }
        }
    }
    Ok(out)
}

/// Parses a list of state counts: comma-separated integers and inclusive
/// ranges, e.g. `2..1025` or `3..64,128,1024`. Returns them sorted, without
/// duplicates; every N must be at least 2.
pub fn parse_states(spec: &str) -> Result<Vec<usize>> {
    let mut out =
        parse_int_spec(spec).map_err(|why| Error::invalid("states", format!("'{spec}'"), &why))?;
    if let Some(n) = out.iter().find(|n| **n < 2) {
        return Err(Error::invalid(
            "states",
            format!("'{spec}'"),
            &format!("N = {n} is not a quantizer: N must be at least 2"),
        ));
    }
    if let Some(n) = out.iter().find(|n| **n > MAX_STATES) {
        return Err(Error::invalid(
            "states",
            format!("'{spec}'"),
            &format!("N = {n} is too large: N must be at most {MAX_STATES} (2^20)"),
        ));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Parses a comma-separated list of numbers, e.g. `0.3,0.9,0.99`.
pub fn parse_list(name: &str, spec: &str) -> Result<Vec<f64>> {
    spec.split(',')
        .map(|s| {
            let s = s.trim();
            s.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    Error::invalid(
                        name,
                        format!("'{s}'"),
                        "expected a comma-separated list of finite numbers",
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_spec_accepts_ranges_and_lists() {
        assert_eq!(parse_states("3..6,10,4").unwrap(), vec![3, 4, 5, 6, 10]);
        assert_eq!(parse_states("2..=3").unwrap(), vec![2, 3]);
    }

    #[test]
    fn states_spec_rejects_bad_input_with_a_reason() {
        for (s, want) in [
            ("10..2", "empty"),
            ("1", "at least 2"),
            ("abc", "not a whole number"),
            ("3,,4", "empty entry"),
        ] {
            let e = parse_states(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn defaults_put_q_star_at_one_for_the_optimal_spacing() {
        let r = NetworkChoice::uniform(16).resolve().unwrap();
        assert!((r.q_star - 1.0).abs() < 1e-12, "q* = {}", r.q_star);
        assert_eq!(
            r.defaulted,
            vec!["sigma_b", "amplitude", "spacing", "sigma_w", "q0"]
        );
    }
}
