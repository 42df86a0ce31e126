//! `quantdepth init`: the initialization to type into a model with N-state
//! quantized activations.

use crate::outln;
use anyhow::Result;
use clap::{ArgGroup, Args};
use quantdepth::theory::init::{recommend, states_from_bits, InitRecommendation};
use quantdepth::theory::optimal::DEFAULT_KAPPA;

/// Options of `quantdepth init`.
#[derive(Args)]
#[command(group(ArgGroup::new("size").required(true).args(["states", "bits"])))]
pub struct InitArgs {
    /// Number of states N of the uniform symmetric quantizer (N = 2 is sign).
    #[arg(long, value_name = "N")]
    pub states: Option<usize>,
    /// Bit width B: N = 2^B states (4 bits: N = 16).
    #[arg(long, value_name = "B")]
    pub bits: Option<u32>,
    /// Amplitude A: the levels run from −A to A.
    #[arg(
        long,
        value_name = "A",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub amplitude: f64,
    /// Bias scale σ_b, b_i ~ N(0, σ_b²) (below 1 = √q*; σ_w is lowered to keep q* = 1).
    #[arg(
        long = "sigma-b",
        value_name = "B",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub sigma_b: f64,
    /// κ in L_max = κ·ξ (Schoenholz et al. found training works up to about 6ξ).
    #[arg(long, value_name = "K", default_value_t = DEFAULT_KAPPA, allow_negative_numbers = true)]
    pub kappa: f64,
    /// Clipping threshold t of the straight-through surrogate s·1{|x| ≤ t}, in units of the
    /// pre-activation std (inf: the identity surrogate).
    #[arg(
        long = "ste-threshold",
        value_name = "T",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub ste_threshold: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// At most this many levels and thresholds are listed in the text output
/// (`--json` always lists all).
const LIST_MAX: usize = 64;

fn list(v: &[f64]) -> String {
    let fmt = |x: &f64| format!("{x:.10}");
    if v.len() <= LIST_MAX {
        v.iter().map(fmt).collect::<Vec<_>>().join(", ")
    } else {
        let head: Vec<_> = v[..3].iter().map(fmt).collect();
        let tail: Vec<_> = v[v.len() - 3..].iter().map(fmt).collect();
        format!(
            "{}, …, {} ({} values; --json lists all)",
            head.join(", "),
            tail.join(", "),
            v.len()
        )
    }
}

/// 7 significant figures, in plain notation below 10⁶.
fn sig(x: f64) -> String {
    if x.abs() < 1e6 {
        let decimals = 6usize.saturating_sub(x.abs().log10().floor().max(0.0) as usize);
        format!("{x:.decimals$}")
    } else {
        format!("{x:.6e}")
    }
}

pub fn init(args: InitArgs) -> Result<()> {
    let n = match (args.states, args.bits) {
        (Some(n), _) => n,
        (None, Some(b)) => states_from_bits(b)?,
        (None, None) => anyhow::bail!("give --states N or --bits B"),
    };
    let r = recommend(
        n,
        args.amplitude,
        args.sigma_b,
        args.kappa,
        args.ste_threshold,
    )?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&InitJson::of(&r))?);
    } else {
        print_text(&r);
    }
    Ok(())
}

/// `init --json`: the recommendation's fields, led by the weight and bias stds under the
/// names the Python package and the README use (`W_std`, `b_std`, `first_layer_W_std`);
/// `sigma_w`, `sigma_b` and `first_layer_sigma_w` stay as aliases with the same values.
#[derive(serde::Serialize)]
struct InitJson<'a> {
    #[serde(rename = "W_std")]
    w_std: f64,
    b_std: f64,
    #[serde(rename = "first_layer_W_std")]
    first_layer_w_std: f64,
    #[serde(flatten)]
    r: &'a InitRecommendation,
}

impl<'a> InitJson<'a> {
    fn of(r: &'a InitRecommendation) -> Self {
        InitJson {
            w_std: r.sigma_w,
            b_std: r.sigma_b,
            first_layer_w_std: r.first_layer_sigma_w,
            r,
        }
    }
}

/// The README section with the trainable depths this project measured.
const TRAINING_SECTION: &str = "README, \"Training: trainable depth, measured\"";

fn print_text(r: &InitRecommendation) {
    let bits = match r.bits {
        Some(1) => " (1 bit)".to_string(),
        Some(b) => format!(" ({b} bits)"),
        None => String::new(),
    };
    outln!(
        "# N = {}{bits}, amplitude A = {}, sigma_b = {}: the initialization that maximizes the depth scale",
        r.states,
        r.amplitude,
        r.sigma_b
    );
    outln!(
        "weights     W_ij ~ N(0, sigma_w^2 / fan_in), sigma_w = {:.10}: std = {:.10} / sqrt(fan_in)",
        r.sigma_w,
        r.sigma_w
    );
    outln!("biases      b_i ~ N(0, sigma_b^2), sigma_b = {}", r.sigma_b);
    outln!("levels      {}", list(&r.levels));
    outln!("thresholds  {}", list(&r.thresholds));
    match (r.spacing, r.d_opt) {
        (Some(s), Some(d)) => outln!(
            "spacing     Δ = {s:.10} (= D_opt·sqrt(q*), D_opt = {d:.10}); phi(x) = levels[#thresholds <= x]"
        ),
        _ => outln!("spacing     - (N = 2 is sign: one threshold, at 0, whatever the spacing)"),
    }
    outln!(
        "inputs      if phi acts on the inputs themselves (inputs as pre-activations): scale \
         standardized inputs by {:.10} so that q^0 = q* = {:.10}",
        r.input_scale,
        r.q_star
    );
    outln!(
        "            if a first Linear layer comes before the first quantizer (standardized \
         inputs): give that layer std {:.10} / sqrt(fan_in), so that q^1 = q* (sigma_w there \
         would give q^1 = {})",
        r.first_layer_sigma_w,
        sig(r.sigma_w * r.sigma_w + r.sigma_b * r.sigma_b)
    );
    outln!(
        "STE         phi'(x) = s·1{{|x| <= t}}, t = {}, s = {:.10}: gradient norms neither grow nor shrink (M = 1)",
        r.ste_threshold,
        r.ste_slope
    );
    outln!(
        "theory      c* = {:.10}, chi(c*) = {:.10} (1 - chi = {:.6e}), xi = {}",
        r.c_star,
        r.chi,
        r.one_minus_chi,
        sig(r.xi)
    );
    outln!(
        "depth       L_max = kappa·xi = {} with kappa = {} (Schoenholz et al. 2017): the \
         mean-field bound, not a measured trainable depth; for the depths short training \
         reaches, see the {TRAINING_SECTION}",
        sig(r.l_max),
        r.kappa
    );
}
