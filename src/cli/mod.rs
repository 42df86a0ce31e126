//! The `quantdepth` command line: the clap definitions of every subcommand
//! and the helpers they share (network options, counts, progress bars,
//! stdout that tolerates a closed pipe). One file per subcommand beside this
//! one; `main.rs` only parses and dispatches.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use quantdepth::setup::{parse_list, ActivationChoice, NetworkChoice, ResolvedNetwork};

pub mod bench;
pub mod finite_width;
pub mod init;
pub mod merge;
pub mod run;
pub mod simulate;
pub mod slurm;
pub mod submission;
pub mod theory;

/// Prints a line to stdout; a closed pipe (`quantdepth … | head`) ends the
/// program quietly instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }};
}

/// How deep can a network with N-level quantized activations be and still
/// train, and how should it be initialized?
///
/// quantdepth computes the exact mean-field theory of random networks with
/// quantized activations (Blumenfeld, Gilboa & Soudry, NeurIPS 2019) and
/// simulates such networks at finite width to test it.
#[derive(Parser)]
#[command(name = "quantdepth", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run an experiment from a config file: theory and simulation side by side.
    ///
    /// Expands the config's sweep, runs the mean-field theory and the
    /// simulation for each point, fits the empirical depth scale, and writes a
    /// results folder (config as run, meta.json, curves.csv/json,
    /// summary.json, plots/). Ctrl-C (or SIGTERM, SIGHUP) keeps the finished
    /// points and marks the folder interrupted; `--resume DIR` runs only the
    /// missing points of an interrupted, failed or killed folder.
    #[command(allow_negative_numbers = true)]
    Run(run::RunArgs),
    /// Mean-field theory: optimal initialization, scaling with N, depth curves.
    #[command(subcommand)]
    Theory(theory::TheoryCommand),
    /// Simulate random networks at finite width and compare with the theory.
    ///
    /// E independent networks (width n, depth L, weights and biases generated
    /// from the seed) each propagate pairs of inputs with correlations c^0;
    /// per layer, q̂ (mean squared pre-activation) and ĉ (correlation of each
    /// pair) are averaged over networks, with standard errors, beside the
    /// mean-field prediction.
    #[command(allow_negative_numbers = true)]
    Simulate(simulate::SimulateArgs),
    /// Throughput of the simulator on this machine's CPU and GPU adapters.
    ///
    /// For each width n and batch B: seconds per layer, multiply-adds per
    /// second (n²·B per layer), normals per second (n² weights per layer),
    /// and the ratios against numpy's SGEMM and a plain numpy layer loop
    /// measured in the same run (needs python3 with numpy).
    #[command(allow_negative_numbers = true)]
    Bench(bench::BenchArgs),
    /// Run a sweep on a Slurm cluster: a job array (one task per shard) and a merge job.
    ///
    /// Writes an sbatch script for the array (task K runs `quantdepth run
    /// --shard K/M`, logs per task) and one for a merge job that depends on
    /// it (--dependency=afterok) and writes one ordinary results folder.
    /// --submit calls sbatch and prints the job ids.
    #[command(allow_negative_numbers = true)]
    Slurm(slurm::SlurmArgs),
    /// Merge shard folders (`run --shard K/M`) into one results folder.
    ///
    /// Checks that the shards come from one config and one quantdepth
    /// version and hold every point exactly once (naming missing points and
    /// the shard that should have them), then writes curves, summary, the
    /// cross-point analysis and plots as an unsharded run would.
    #[command(allow_negative_numbers = true)]
    Merge(merge::MergeArgs),
    /// The initialization to type into a model with N-state quantized activations.
    ///
    /// Weight std σ_w/√fan_in, bias std, the quantizer's levels and thresholds
    /// at the given amplitude (thresholds in units of the pre-activation std,
    /// q* = 1), the input scale that gives q^0 = q*, the straight-through slope
    /// that keeps gradient norms constant (M = 1), χ(c*), ξ and L_max.
    #[command(allow_negative_numbers = true)]
    Init(init::InitArgs),
}
/// Network options shared by every command that takes a network.
#[derive(Args, Clone, Debug)]
pub struct NetArgs {
    /// Number of quantization states N of the uniform symmetric quantizer (N = 2 is sign).
    #[arg(long, value_name = "N", required_unless_present_any = ["activation", "thresholds"], value_parser = parse_count, allow_negative_numbers = true)]
    pub states: Option<usize>,
    /// Threshold spacing Δ [default: D̃_opt(N), the optimal spacing at unit pre-activation variance].
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    pub spacing: Option<f64>,
    /// Amplitude A: levels run from −A to A [default: 1].
    #[arg(long, value_name = "A", allow_negative_numbers = true)]
    pub amplitude: Option<f64>,
    /// Weight scale σ_w, W_ij ~ N(0, σ_w²/n) [default: σ_w^opt for the spacing and amplitude].
    #[arg(long = "sigma-w", value_name = "S", allow_negative_numbers = true)]
    pub sigma_w: Option<f64>,
    /// Bias scale σ_b, b_i ~ N(0, σ_b²) [default: 0].
    #[arg(long = "sigma-b", value_name = "B", allow_negative_numbers = true)]
    pub sigma_b: Option<f64>,
    /// Input pre-activation variance q^0 [default: q*].
    #[arg(long, value_name = "Q", allow_negative_numbers = true)]
    pub q0: Option<f64>,
    /// A continuous reference activation instead of a quantizer (needs --sigma-w).
    #[arg(long, value_name = "NAME", value_parser = ["tanh", "hard-tanh", "linear"], conflicts_with_all = ["states", "thresholds"])]
    pub activation: Option<String>,
    /// Thresholds g_1 < … < g_{N−1} of a general quantizer (comma-separated; needs --levels and --sigma-w).
    #[arg(
        long,
        value_name = "LIST",
        requires = "levels",
        conflicts_with = "states",
        allow_hyphen_values = true
    )]
    pub thresholds: Option<String>,
    /// Levels y_0 < … < y_{N−1} of a general quantizer (comma-separated).
    #[arg(
        long,
        value_name = "LIST",
        requires = "thresholds",
        allow_hyphen_values = true
    )]
    pub levels: Option<String>,
}

impl NetArgs {
    /// The network these options describe, defaults filled in.
    pub fn resolve(&self) -> Result<ResolvedNetwork> {
        let activation = match (
            &self.activation,
            &self.thresholds,
            &self.levels,
            self.states,
        ) {
            (Some(a), ..) => match a.as_str() {
                "tanh" => ActivationChoice::Tanh,
                "hard-tanh" => ActivationChoice::HardTanh,
                _ => ActivationChoice::Linear,
            },
            (None, Some(t), Some(l), _) => ActivationChoice::Custom {
                levels: parse_list("levels", l)?,
                thresholds: parse_list("thresholds", t)?,
            },
            (None, _, _, Some(n)) => ActivationChoice::Uniform(n),
            _ => anyhow::bail!("give --states N, or --levels and --thresholds, or --activation"),
        };
        let choice = NetworkChoice {
            activation,
            spacing: self.spacing,
            amplitude: self.amplitude,
            sigma_w: self.sigma_w,
            sigma_b: self.sigma_b,
            q0: self.q0,
        };
        Ok(choice.resolve()?)
    }
}

/// Prints the resolved network as `# key = value` lines.
pub fn print_network(r: &ResolvedNetwork) {
    outln!("# activation: {}", r.activation);
    let mark = |name: &str| {
        if r.defaulted.iter().any(|d| d == name) {
            "  (default)"
        } else {
            ""
        }
    };
    if let Some(d) = r.spacing {
        outln!("# spacing Δ = {d:.9}{}", mark("spacing"));
    }
    if let Some(a) = r.amplitude {
        outln!("# amplitude A = {a}{}", mark("amplitude"));
    }
    outln!("# sigma_w = {:.9}{}", r.sigma_w, mark("sigma_w"));
    outln!("# sigma_b = {}{}", r.sigma_b, mark("sigma_b"));
    outln!("# q* = {:.9}", r.q_star);
    outln!("# q0 = {:.9}{}", r.q0, mark("q0"));
}

/// A count on the command line (width, depth, samples, pairs, layers): a
/// whole number ≥ 0, also written in scientific notation (`1e3`, `4.096e3`).
/// Negative, fractional and non-numeric values are explained, not rejected
/// with parser jargon.
pub fn parse_count(s: &str) -> std::result::Result<usize, String> {
    if let Ok(v) = s.parse::<usize>() {
        return Ok(v);
    }
    match s.parse::<f64>() {
        Ok(v) if v < 0.0 => Err(format!("{s} is negative: give a whole number ≥ 0")),
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v <= u32::MAX as f64 => Ok(v as usize),
        Ok(v) if v.is_finite() && v.fract() != 0.0 => Err(format!(
            "{s} is not a whole number: give e.g. {}",
            v.round()
        )),
        Ok(_) => Err(format!("{s} is too large")),
        Err(_) => Err(format!(
            "{s} is not a number: give a whole number ≥ 0 (e.g. 1024 or 1e3)"
        )),
    }
}

/// The Vulkan and GL drivers' probe loads libwayland-client, which prints
/// "error: XDG_RUNTIME_DIR is invalid or not set in the environment." when
/// that variable is unset or not an absolute path (headless servers, CI),
/// with the same "error:" prefix as this tool's own errors. An absolute
/// path without a Wayland socket in it makes the probe fail quietly instead
/// (the GPU is found through the headless path either way).
pub fn quiet_wayland_probe() {
    let set =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|v| std::path::Path::new(&v).is_absolute());
    if !set {
        // Before any thread starts (edition 2021: set_var is safe here).
        std::env::set_var(
            "XDG_RUNTIME_DIR",
            std::env::temp_dir().join("quantdepth-no-wayland"),
        );
    }
}

/// κ in L_max = κ·ξ_max: positive, finite, and small enough that L_max is finite.
pub fn check_kappa(kappa: f64) -> Result<()> {
    if !(kappa.is_finite() && kappa > 0.0 && kappa <= 1e6) {
        anyhow::bail!(
            "--kappa {}: κ in L_max = κ·ξ_max must be a finite number > 0 and at most 1e6 \
             (6 after Schoenholz et al.)",
            quantdepth::error::fmt_value(kappa)
        );
    }
    Ok(())
}

/// A progress bar on stderr drawn with `template` (indicatif's syntax), or
/// indicatif's plain bar should the template not parse.
pub fn progress_bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
