//! `quantdepth simulate`: one network configuration, simulated and set
//! beside the theory.

use super::{print_network, progress_bar, NetArgs};
use crate::outln;
use anyhow::Result;
use clap::Args;
use quantdepth::setup::{parse_list, ResolvedNetwork};
use quantdepth::sim::gpu::KernelChoice;
use quantdepth::sim::{self, Backend, Control, Inputs, SimSpec, Weights};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Options of `quantdepth simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub net: NetArgs,
    /// Backend: cpu, gpu, or auto (a hardware GPU if there is one, else the CPU).
    #[arg(long, default_value = "auto", value_parser = ["auto", "cpu", "gpu"])]
    pub backend: String,
    /// Input correlations c^0, comma-separated, each in [−1, 1] (e.g. 0.3,0.9,0.99).
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub c0: String,
    /// Pairs of inputs per value of c^0 (K), pushed through every network.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = super::parse_count, allow_negative_numbers = true)]
    pub pairs: usize,
    /// Width n of every layer.
    #[arg(long, value_name = "n", value_parser = super::parse_count, allow_negative_numbers = true)]
    pub width: usize,
    /// Depth L: number of layers.
    #[arg(long, value_name = "L", value_parser = super::parse_count, allow_negative_numbers = true)]
    pub depth: usize,
    /// Independent network samples E (standard errors need E ≥ 2).
    #[arg(long, value_name = "E", value_parser = super::parse_count, allow_negative_numbers = true)]
    pub samples: usize,
    /// Seed of every weight, bias and input direction.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Weight ensemble: gaussian (i.i.d. normal), rademacher (i.i.d. ±1) or
    /// hadamard (structured orthogonal n^{-3/2} H D₃ H D₂ H D₁, O(n log n);
    /// power-of-two widths). The mean-field theory is the same for all three.
    #[arg(long, value_name = "ENSEMBLE", default_value = "gaussian", value_parser = ["gaussian", "rademacher", "hadamard"])]
    pub weights: String,
    /// GPU layer kernel: auto, or one of tiled, splitk, wide, wide256, stacked, and
    /// their -int64 forms.
    #[arg(long, value_name = "VARIANT", default_value = "auto", value_parser = parse_kernel, long_help = KERNEL_HELP)]
    pub kernel: KernelChoice,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also run the backward pass with a straight-through estimator (both backends)
    /// and compare gradient norms and correlations with the theory.
    #[arg(long)]
    pub backward: bool,
    /// STE clipping threshold t of the surrogate s·1{|x| ≤ t} (with --backward).
    #[arg(
        long = "ste-threshold",
        value_name = "T",
        default_value_t = 1.0,
        requires = "backward"
    )]
    pub ste_threshold: f64,
    /// STE slope s (with --backward) [default: the s that makes M = 1].
    #[arg(long = "ste-slope", value_name = "S", requires = "backward")]
    pub ste_slope: Option<f64>,
}

/// `--kernel`'s long help (simulate, run).
pub const KERNEL_HELP: &str = "GPU layer kernel. auto: on first use of an adapter, driver, \
width n, batch B (the inputs one network takes: 2 × pairs × the number of c0 values, or \
the circle's points) and weight ensemble, each variant that applies is timed for a few layers \
(device timestamps where the adapter has them; about a second on a GPU, longer on a \
software adapter) and the fastest is kept, cached in $QUANTDEPTH_CACHE_DIR, else \
$XDG_CACHE_HOME/quantdepth, else ~/.cache/quantdepth (kernels.json); later runs read the \
cache. Or force one: tiled (the reference kernel), splitk (small batches: the input \
dimension split over more workgroups), wide (B > 64: 128-column tiles), wide256 (B > 128: \
256-column tiles), stacked (B ≤ 64 and 2 or more --samples: S networks per dispatch, \
the network sample on the grid's third axis; the same bits as tiled), and their -int64 \
forms (adapters with SHADER_INT64: the generator's multiply in 64 bits, the same numbers). \
All variants generate the same weights; results agree to f32 rounding, and the variant \
that ran is recorded with the results. With --backward the backward step follows the \
forward variant (tiled, splitk, wide and wide256 each run their own backward step, stacked \
runs the tiled one, each ± int64). \
Ignored on the CPU backend.";

/// Parses `--kernel`.
pub fn parse_kernel(s: &str) -> std::result::Result<KernelChoice, String> {
    KernelChoice::parse("--kernel", s).map_err(|e| e.to_string())
}

/// Opens the backend named on the command line (a GPU with the layer
/// kernel `kernel`) and says on stderr which it took.
pub fn pick_backend(name: &str, kernel: KernelChoice) -> Result<Box<dyn Backend>> {
    let (b, note) = sim::open_backend_with_kernel(name, Some(kernel))?;
    eprintln!("{note}");
    Ok(b)
}

/// Runs a simulation with a progress bar on stderr and Ctrl-C handling.
pub fn run_with_progress(
    backend: &mut dyn Backend,
    spec: &SimSpec,
    label: &str,
) -> Result<sim::SimOutcome> {
    let total = (spec.samples * spec.depth) as u64;
    let bar = progress_bar(
        total,
        "{msg} [{elapsed_precise}] {bar:40} {pos}/{len} layers (ETA {eta})",
    );
    bar.set_message(label.to_string());
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    // SIGINT, SIGTERM and SIGHUP: stop after the layer in flight and print
    // the networks finished; a second signal quits at once (a layer of a
    // very wide network can take minutes). A second handler cannot be
    // installed; then Ctrl-C simply ends the process.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping after the layer in flight (again to quit at once)");
    });
    let progress = |done: u64| bar.set_position(done);
    let out = sim::simulate(
        backend,
        spec,
        &Control {
            progress: &progress,
            cancel: &cancel,
        },
    )?;
    bar.finish_and_clear();
    Ok(out)
}

/// Runs a simulation without progress display or Ctrl-C handling.
pub fn run_quiet(backend: &mut dyn Backend, spec: &SimSpec) -> Result<sim::SimOutcome> {
    let cancel = AtomicBool::new(false);
    Ok(sim::simulate(
        backend,
        spec,
        &Control {
            progress: &|_| {},
            cancel: &cancel,
        },
    )?)
}

/// The network, the input correlations and the simulation the options
/// describe, validated and refused beyond this machine's memory before any
/// device is opened or buffer allocated.
fn plan_simulation(
    args: &SimulateArgs,
    backward: bool,
) -> Result<(ResolvedNetwork, Vec<f64>, SimSpec)> {
    let r = args.net.resolve()?;
    let c0 = parse_list("c0", &args.c0)?;
    let inputs = Inputs::Pairs {
        c0: c0.clone(),
        pairs: args.pairs,
    };
    let spec = SimSpec::of_network(&r, args.width, args.depth, args.samples, args.seed, inputs)
        .with_weights(Weights::parse("--weights", &args.weights)?);
    spec.validate()?;
    let plan = spec.memory_plan(args.backend == "gpu", backward)?;
    quantdepth::experiment::plan::check_host_memory(plan.host_bytes, "this simulation")?;
    Ok((r, c0, spec))
}

fn fmt_se(se: Option<f64>) -> String {
    se.map_or("-".into(), |s| format!("{s:.2e}"))
}

pub fn simulate(args: SimulateArgs) -> Result<()> {
    if args.backward {
        return simulate_backward(&args);
    }
    let (r, c0, spec) = plan_simulation(&args, false)?;
    let mut backend = pick_backend(&args.backend, args.kernel)?;
    let out = run_with_progress(backend.as_mut(), &spec, "simulate")?;
    let theory: Vec<_> = c0
        .iter()
        .map(|&c| r.network.depth_curve(r.q0, r.q0, c, args.depth))
        .collect::<quantdepth::Result<_>>()?;
    if let Some(why) = &out.stopped {
        if why != "interrupted" {
            // A failure, not an interruption: the partial results are not printed.
            anyhow::bail!(
                "the simulation failed at sample {} of {}: {why}",
                out.stats.samples,
                spec.samples
            );
        }
        if out.stats.samples == 0 {
            // Nothing finished: a table would show zeros as if they were data.
            eprintln!("stopped early ({why}) before any network finished: no results");
            std::process::exit(130);
        }
        eprintln!(
            "stopped early ({why}): results cover {} of {} samples",
            out.stats.samples, spec.samples
        );
    }
    if args.json {
        let curves: Vec<_> = out
            .stats
            .pairs
            .iter()
            .zip(&theory)
            .map(|(pc, th)| {
                let layers: Vec<_> = pc
                    .layers
                    .iter()
                    .zip(th)
                    .map(|(e, t)| {
                        json!({"layer": e.layer, "q_mean": e.q.mean, "q_se": e.q.se, "c_mean": e.c.mean,
                               "c_se": e.c.se, "q_theory": t.q_a, "c_theory": t.c})
                    })
                    .collect();
                json!({"c0": pc.c0, "pairs": pc.pairs, "layers": layers})
            })
            .collect();
        let meta = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "backend": out.backend,
            "network": r,
            "width": spec.width, "depth": spec.depth, "samples_requested": spec.samples,
            "samples": out.stats.samples, "seed": spec.seed, "weights": spec.weights.name(),
            "complete": out.complete, "stopped": out.stopped,
            "wall_seconds": out.wall_seconds,
        });
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"curves": curves, "meta": meta}))?
        );
    } else {
        print_network(&r);
        outln!(
            "# backend {} ({}{}), width {}, depth {}, {} samples, seed {}, {} weights, {:.2} s",
            out.backend.backend,
            out.backend.adapter,
            out.backend
                .kernel
                .as_ref()
                .map_or(String::new(), |k| format!(", layer kernel {k}")),
            spec.width,
            spec.depth,
            out.stats.samples,
            spec.seed,
            spec.weights.name(),
            out.wall_seconds
        );
        for (pc, th) in out.stats.pairs.iter().zip(&theory) {
            outln!("\n# c0 = {} ({} pair(s) per network)", pc.c0, pc.pairs);
            outln!(
                "{:>6} {:>12} {:>10} {:>12} {:>12} {:>10} {:>12}",
                "layer",
                "q",
                "SE",
                "q_theory",
                "c",
                "SE",
                "c_theory"
            );
            for (e, t) in pc.layers.iter().zip(th) {
                outln!(
                    "{:>6} {:>12.6} {:>10} {:>12.6} {:>12.6} {:>10} {:>12.6}",
                    e.layer,
                    e.q.mean,
                    fmt_se(e.q.se),
                    t.q_a,
                    e.c.mean,
                    fmt_se(e.c.se),
                    t.c
                );
            }
        }
    }
    if !out.complete {
        std::process::exit(130);
    }
    Ok(())
}

fn simulate_backward(args: &SimulateArgs) -> Result<()> {
    use quantdepth::sim::backward::simulate_backward as run_backward;
    use quantdepth::sim::gpu::{AdapterPolicy, GpuBackend};
    use quantdepth::theory::backward::{backward_curve, backward_factor, unit_slope, Ste};
    let mut gpu = match args.backend.as_str() {
        "cpu" => None,
        "gpu" => Some(GpuBackend::new(AdapterPolicy::PreferHardware)?),
        _ => GpuBackend::new(AdapterPolicy::HardwareOnly).ok(),
    };
    // The backward step follows the forward layer's variant (--kernel).
    if let Some(g) = gpu.as_mut() {
        g.set_kernel(
            args.kernel,
            quantdepth::sim::gpu::autotune::default_cache_dir(),
        );
    }
    let where_ = gpu.as_ref().map_or("the CPU backend".to_string(), |g| {
        format!("the GPU {}", g.context().describe())
    });
    let (r, c0, spec) = plan_simulation(args, true)?;
    let s = match args.ste_slope {
        Some(s) => s,
        None => unit_slope(&r.network, r.q_star, args.ste_threshold)?,
    };
    let ste = Ste::new(s, args.ste_threshold)?;
    let m = backward_factor(&r.network, r.q_star, &ste);
    let cancel = AtomicBool::new(false);
    eprintln!(
        "backward pass on {where_} ({} networks × {} layers, forward then backward) ...",
        args.samples, args.depth
    );
    let device = gpu
        .as_ref()
        .map(|g| g as &dyn quantdepth::sim::GradientPass);
    let curves = run_backward(&spec, &ste, &cancel, device)?;
    let theory: Vec<_> = c0
        .iter()
        .map(|&c| backward_curve(&r.network, &ste, r.q0, c, args.depth, 1.0))
        .collect::<quantdepth::Result<_>>()?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"network": r, "weights": spec.weights.name(), "seed": spec.seed, "ste": ste, "backward_factor": m, "curves": curves, "theory": theory})
            )?
        );
        return Ok(());
    }
    print_network(&r);
    outln!(
        "# STE s = {s:.9}, t = {}; M = {m:.9}; output gradients shared by the two inputs of a pair; {} weights, seed {}",
        args.ste_threshold,
        spec.weights.name(),
        spec.seed
    );
    for (cv, th) in curves.iter().zip(&theory) {
        outln!("\n# c0 = {}", cv.c0);
        let top = &th[th.len() - 1];
        outln!(
            "# NTK of f = v·h^L/sqrt(n): Θ(a,a) = {:.6} ± {} (theory {:.6}), Θ(a,b) = {:.6} ± {} (theory {:.6})",
            cv.ntk_aa.mean,
            fmt_se(cv.ntk_aa.se),
            top.ntk_aa,
            cv.ntk_ab.mean,
            fmt_se(cv.ntk_ab.se),
            top.ntk_ab
        );
        outln!(
            "{:>6} {:>12} {:>10} {:>10} {:>12} {:>10} {:>12}",
            "layer",
            "|d|² ratio",
            "SE",
            "M theory",
            "grad corr",
            "SE",
            "theory"
        );
        for (e, t) in cv.layers.iter().zip(th) {
            let (rm, rs, mt) = match e.norm_ratio {
                Some(x) => (
                    format!("{:.6}", x.mean),
                    fmt_se(x.se),
                    format!(
                        "{:.6}",
                        t.grad_norm_ratio / th.get(e.layer + 1).map_or(1.0, |n| n.grad_norm_ratio)
                    ),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            outln!(
                "{:>6} {:>12} {:>10} {:>10} {:>12.6} {:>10} {:>12.6}",
                e.layer,
                rm,
                rs,
                mt,
                e.grad_corr.mean,
                fmt_se(e.grad_corr.se),
                t.grad_corr
            );
        }
    }
    Ok(())
}
