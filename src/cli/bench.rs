//! `quantdepth bench`: simulator throughput on this machine's backends,
//! beside numpy yardsticks measured in the same run.

use super::simulate::run_quiet;
use crate::outln;
use anyhow::{Context, Result};
use clap::Args;
use quantdepth::setup::{NetworkChoice, ResolvedNetwork};
use quantdepth::sim::cpu::CpuBackend;
use quantdepth::sim::gpu::autotune::default_cache_dir;
use quantdepth::sim::gpu::{AdapterPolicy, GpuBackend, KernelChoice};
use quantdepth::sim::{Backend, Inputs, SimSpec, Weights};
use serde_json::json;
use std::process::Command;

/// Options of `quantdepth bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Backends to measure: all (CPU and every GPU adapter wgpu finds), cpu or gpu.
    #[arg(long, default_value = "all", value_parser = ["all", "cpu", "gpu"])]
    pub backend: String,
    /// Widths n, comma-separated.
    #[arg(long, default_value = "1024,4096")]
    pub widths: String,
    /// Batch sizes B (inputs per network, even), comma-separated.
    #[arg(long, default_value = "16,256")]
    pub batches: String,
    /// Layers per measurement (after one warm-up layer; best of three runs).
    #[arg(long, default_value_t = 4, value_parser = super::parse_count, allow_negative_numbers = true)]
    pub layers: usize,
    /// Weight ensembles, comma-separated: gaussian, rademacher, hadamard
    /// (hadamard rows only at power-of-two widths).
    #[arg(long, default_value = "gaussian,rademacher,hadamard")]
    pub weights: String,
    /// Skip the numpy yardsticks (SGEMM and a plain numpy layer loop).
    #[arg(long)]
    pub no_baseline: bool,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Skip the table of GPU layer kernel variants (each applicable variant
    /// timed at every width and batch).
    #[arg(long)]
    pub no_variants: bool,
    /// Network samples of the run the variant table is timed for: the
    /// stacked variants run S ≤ this many networks per dispatch (S as a run
    /// of this many samples would take it; at least 2 for them to apply).
    #[arg(long, default_value_t = 16, value_parser = parse_samples, allow_negative_numbers = true)]
    pub samples: usize,
}

/// `--samples`: a count of at least 1.
fn parse_samples(s: &str) -> std::result::Result<usize, String> {
    match super::parse_count(s)? {
        0 => Err("0 networks: give at least 1 (2 or more for the stacked variants)".into()),
        v => Ok(v),
    }
}

fn list(name: &str, s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .with_context(|| format!("--{name}: '{x}' is not a whole number"))
        })
        .collect()
}

/// The numpy yardsticks for (n, B), from scripts/numpy_baseline.py.
fn numpy_baseline(widths: &str, batches: &str) -> Result<Vec<serde_json::Value>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/numpy_baseline.py");
    let out = Command::new("python3")
        .args([script, "--widths", widths, "--batches", batches])
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .output()
        .context("running python3 for the numpy yardstick")?;
    if !out.status.success() {
        anyhow::bail!(
            "numpy yardstick failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let widths = list("widths", &args.widths)?;
    let batches = list("batches", &args.batches)?;
    if args.layers == 0 {
        anyhow::bail!("--layers 0: measure at least 1 layer");
    }
    if let Some(b) = batches.iter().find(|b| **b < 2 || **b % 2 == 1) {
        anyhow::bail!("--batches: {b} is not an even number >= 2 (inputs come in pairs)");
    }
    let ensembles: Vec<Weights> = args
        .weights
        .split(',')
        .map(|w| Weights::parse("--weights", w))
        .collect::<quantdepth::Result<_>>()?;
    let mut backends: Vec<Box<dyn Backend>> = Vec::new();
    if args.backend != "gpu" {
        backends.push(Box::new(CpuBackend));
    }
    if args.backend != "cpu" {
        match GpuBackend::new(AdapterPolicy::PreferHardware) {
            Ok(mut g) => {
                // As `simulate` and `run` do by default: tuned on first use (in the warm-up).
                g.set_kernel(KernelChoice::Auto, default_cache_dir());
                backends.push(Box::new(g))
            }
            Err(e) if args.backend == "gpu" => return Err(e.into()),
            Err(e) => eprintln!("bench: no GPU backend ({e})"),
        }
    }
    let base = if args.no_baseline {
        Vec::new()
    } else {
        eprintln!("bench: measuring the numpy yardsticks ...");
        numpy_baseline(&args.widths, &args.batches).unwrap_or_else(|e| {
            eprintln!("bench: {e:#}; continuing without the numpy yardstick");
            Vec::new()
        })
    };
    let r = NetworkChoice::uniform(4).resolve()?;
    if !args.json {
        outln!(
            "{:>18} {:>10} {:>8} {:>5} {:>12} {:>12} {:>11} {:>11} {:>10} {:>10}  adapter",
            "back",
            "weights",
            "n",
            "B",
            "s/layer",
            "GPU s/layer",
            "MAC/s",
            "weights/s",
            "vs SGEMM",
            "vs numpy"
        );
    }
    // Progress on stderr: a measurement can take minutes (a software GPU
    // adapter at n = 4096), and the table only grows when one finishes.
    let total = backends.len() * ensembles.len() * widths.len() * batches.len();
    let mut done = 0usize;
    let clock = std::time::Instant::now();
    for b in backends.iter_mut() {
        let info = b.info();
        for &weights in &ensembles {
            for &n in &widths {
                if weights.check_width("--widths", n).is_err() {
                    eprintln!("bench: skipping {weights} at n = {n} (not a power of two)");
                    continue;
                }
                for &batch in &batches {
                    done += 1;
                    eprintln!(
                        "bench: [{done}/{total}] {} {weights} n = {n}, B = {batch}: warm-up and 3 × {} layers ({:.0} s so far)",
                        info.backend,
                        args.layers,
                        clock.elapsed().as_secs_f64()
                    );
                    let spec = |depth| bench_spec(&r, n, batch, depth, weights);
                    run_quiet(b.as_mut(), &spec(1))?; // warm-up: pipelines, allocation
                                                      // Best of three, as the numpy yardstick is measured.
                    let mut t = f64::INFINITY;
                    let mut device: Option<f64> = None;
                    let _ = b.device_seconds();
                    for _ in 0..3 {
                        let out = run_quiet(b.as_mut(), &spec(args.layers))?;
                        t = t.min(out.wall_seconds / args.layers as f64);
                        if let Some(d) = b.device_seconds() {
                            let d = d / args.layers as f64;
                            device = Some(device.map_or(d, |x: f64| x.min(d)));
                        }
                    }
                    // The variant that ran (the GPU's tuned choice).
                    let info = b.info();
                    let macs = (n * n * batch) as f64 / t;
                    // Weights drawn per layer: n² normals or signs; 3n signs (hadamard).
                    let normals = match weights {
                        Weights::Hadamard => (3 * n) as f64 / t,
                        _ => (n * n) as f64 / t,
                    };
                    let yard = base.iter().find(|v| v["width"] == n && v["batch"] == batch);
                    let sgemm = yard.and_then(|v| v["sgemm_madds_per_s"].as_f64());
                    let loop_rate = yard.and_then(|v| v["numpy_layer_madds_per_s"].as_f64());
                    if args.json {
                        outln!(
                            "{}",
                            json!({"backend": info.backend, "adapter": info.adapter, "kernel": row_kernel(info.kernel.as_deref(), n, batch, weights), "weights": weights.name(), "width": n, "batch": batch,
                               "seconds_per_layer": t, "device_seconds_per_layer": device,
                               "device_madds_per_s": device.map(|d| (n * n * batch) as f64 / d),
                               "madds_per_s": macs, "weights_per_s": normals,
                               "numpy_sgemm_madds_per_s": sgemm, "numpy_loop_madds_per_s": loop_rate})
                        );
                    } else {
                        let ratio = |d: Option<f64>| {
                            d.map_or("-".to_string(), |d| format!("{:.2}x", macs / d))
                        };
                        outln!(
                        "{:>18} {:>10} {:>8} {:>5} {:>12.4e} {:>12} {:>11.3e} {:>11.3e} {:>10} {:>10}  {}",
                        match row_kernel(info.kernel.as_deref(), n, batch, weights) {
                            Some(k) => format!("{}:{}", info.backend, k),
                            None => info.backend.clone(),
                        },
                        weights.name(),
                        n,
                        batch,
                        t,
                        device.map_or("-".to_string(), |d| format!("{d:.4e}")),
                        macs,
                        normals,
                        ratio(sgemm),
                        ratio(loop_rate),
                        info.adapter
                    );
                    }
                }
            }
        }
    }
    if !args.json {
        outln!("# MAC/s counts n²·B multiply-adds per layer (for hadamard: the dense layer it stands for, n²·B per");
        outln!("# time of the O(n log n) transform); weights/s counts the n² normals or signs drawn per layer (3n for hadamard);");
        outln!(
            "# s/layer: wall time per layer including weight generation, statistics and read-back;"
        );
        outln!("# GPU s/layer: the layer passes alone, from timestamp queries, where the adapter has them.");
        outln!("# vs SGEMM: against numpy float32 (B × n)·(n × n) on this machine; vs numpy: against a plain numpy");
        outln!("# layer loop doing the same work (normal weights, matmul, quantizer, statistics), same run.");
        outln!("# gpu:VARIANT: the layer kernel variant the GPU chose (tuned on first use, see --kernel in `simulate --help`).");
    }
    if args.backend != "cpu" && !args.no_variants {
        variant_table(&args, &widths, &batches, &ensembles)?;
    }
    Ok(())
}

/// The variant that ran at (n, B, weights), from a backend's kernel
/// description (one name, or `name (n=… B=… weights)` items).
/// The network every timing runs: `r` at width `n`, `depth` layers, one
/// sample, B = `batch` inputs (batch/2 pairs at c⁰ = 0.5), σ_b = 0.1.
fn bench_spec(
    r: &ResolvedNetwork,
    n: usize,
    batch: usize,
    depth: usize,
    weights: Weights,
) -> SimSpec {
    SimSpec {
        activation: r.network.activation.clone(),
        sigma_w: r.sigma_w,
        sigma_b: 0.1,
        width: n,
        depth,
        samples: 1,
        seed: 1,
        q0: r.q0,
        inputs: Inputs::Pairs {
            c0: vec![0.5],
            pairs: batch / 2,
        },
        weights,
    }
}

fn row_kernel(kernel: Option<&str>, n: usize, batch: usize, weights: Weights) -> Option<String> {
    let k = kernel?;
    if !k.contains('(') {
        return Some(k.to_string());
    }
    let tag = format!(" (n={n} B={batch} {weights})");
    k.split(", ")
        .find(|item| item.ends_with(&tag))
        .map(|item| item.trim_end_matches(&tag).to_string())
}

/// FP32 peak (TFLOP/s, no tensor cores: WGSL has none) of known adapters,
/// by a substring of the adapter name, the more specific first; boost
/// clocks, from the vendors' datasheets:
/// H100 SXM 67, H100 PCIe 51, H100 NVL 60 (NVIDIA H100 Tensor Core GPU
/// datasheet); H200 SXM 67, H200 NVL 60 (NVIDIA H200 datasheet); A100 19.5
/// (NVIDIA A100 datasheet); L40S 91.6 (NVIDIA L40S datasheet); RTX 4090 82.6
/// (NVIDIA Ada Lovelace architecture whitepaper); RTX 3090 35.6 (NVIDIA
/// Ampere GA102 whitepaper).
const FP32_PEAK_TFLOPS: &[(&str, f64)] = &[
    ("H100 PCIe", 51.0),
    ("H100 NVL", 60.0),
    ("H100", 67.0),
    ("H200 NVL", 60.0),
    ("H200", 67.0),
    ("A100", 19.5),
    ("L40S", 91.6),
    ("RTX 4090", 82.6),
    ("RTX 3090", 35.6),
];

/// The FP32 peak in FLOP/s of an adapter named `name`, where it is known.
fn fp32_peak(name: &str) -> Option<f64> {
    FP32_PEAK_TFLOPS
        .iter()
        .find(|(k, _)| name.contains(k))
        .map(|(_, t)| t * 1e12)
}

/// Every applicable layer kernel variant timed at every (weights, n, B):
/// seconds per layer, MAC/s (n²·B per layer), weights/s (n² distinct
/// normals or signs per layer) and, on a known adapter, the fraction of its
/// FP32 peak (2·MAC/s over the peak).
fn variant_table(
    args: &BenchArgs,
    widths: &[usize],
    batches: &[usize],
    ensembles: &[Weights],
) -> Result<()> {
    let g = match GpuBackend::new(AdapterPolicy::PreferHardware) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("bench: no GPU for the kernel variant table ({e})");
            return Ok(());
        }
    };
    let info = &g.context().info;
    let peak = fp32_peak(&info.name);
    let r = NetworkChoice::uniform(4).resolve()?;
    if !args.json {
        outln!();
        outln!("# layer kernel variants on {}", g.context().describe());
        outln!(
            "{:>10} {:>8} {:>5} {:>20} {:>12} {:>7} {:>11} {:>11} {:>9}",
            "weights",
            "n",
            "B",
            "variant",
            "s/layer",
            "clock",
            "MAC/s",
            "weights/s",
            "% FP32"
        );
    }
    for &weights in ensembles.iter().filter(|w| **w != Weights::Hadamard) {
        for &n in widths {
            for &batch in batches {
                eprintln!("bench: kernel variants, {weights} n = {n}, B = {batch} ...");
                let spec = SimSpec {
                    samples: args.samples,
                    ..bench_spec(&r, n, batch, args.layers, weights)
                };
                for (v, t, device, stack) in g.time_variants(&spec, 3)? {
                    let macs = (n * n * batch) as f64 / t;
                    let per_s = (n * n) as f64 / t;
                    let frac = peak.map(|p| 2.0 * macs / p);
                    if args.json {
                        outln!(
                            "{}",
                            json!({"adapter": info.name, "driver": info.driver_info, "weights": weights.name(),
                               "width": n, "batch": batch, "kernel": v.name(), "stack": stack, "seconds_per_layer": t,
                               "clock": if device { "device" } else { "wall" }, "madds_per_s": macs,
                               "weights_per_s": per_s, "fp32_peak_fraction": frac})
                        );
                    } else {
                        outln!(
                            "{:>10} {:>8} {:>5} {:>20} {:>12.4e} {:>7} {:>11.3e} {:>11.3e} {:>9}",
                            weights.name(),
                            n,
                            batch,
                            v.label(stack),
                            t,
                            if device { "device" } else { "wall" },
                            macs,
                            per_s,
                            frac.map_or("-".to_string(), |f| format!("{:.1} %", 100.0 * f))
                        );
                    }
                }
            }
        }
    }
    if !args.json {
        outln!("# s/layer: best of 3 runs of --layers layers (layer and statistics passes), per network: a");
        outln!("# stacked variant's time for S networks (S of --samples) over S; clock: device");
        outln!("# timestamps, or the wall clock around submit and wait. MAC/s = n²·B per layer / s; weights/s =");
        outln!("# n² distinct weights per layer / s; % FP32 = 2·MAC/s over the adapter's datasheet FP32 peak");
        outln!("# (known adapters only).");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::fp32_peak;

    #[test]
    fn known_adapters_have_their_datasheet_peak() {
        assert_eq!(fp32_peak("NVIDIA H100 80GB HBM3"), Some(67e12));
        assert_eq!(fp32_peak("NVIDIA H100 PCIe"), Some(51e12));
        assert_eq!(fp32_peak("NVIDIA H200"), Some(67e12));
        assert_eq!(fp32_peak("NVIDIA GeForce RTX 4090"), Some(82.6e12));
        assert_eq!(fp32_peak("llvmpipe (LLVM 15.0.6, 256 bits)"), None);
    }
}
