//! Finite-width simulation of deep random networks: the input ensembles,
//! the backends (CPU reference, GPU), and the driver that runs network
//! samples, aggregates their statistics, reports progress and stops cleanly.
//!
//! Each GPU stage is one shader with a GPU driver and a CPU twin of the
//! same name, held equal by a test named for it (tests/gpu.rs,
//! tests/ensembles.rs):
//!
//! | stage | shader | GPU driver | CPU twin |
//! |---|---|---|---|
//! | layer | `shaders/layer.wgsl` | `gpu/layer.rs` | [`layer::LayerWeights::layer`] |
//! | layer, `wide` variant | `shaders/layer_wide.wgsl` | `gpu/layer.rs` | [`layer::LayerWeights::layer`] |
//! | layer, `wide256` variant | `shaders/layer_wide.wgsl` (TB = 256) | `gpu/layer.rs` | [`layer::LayerWeights::layer`] |
//! | layer, `splitk` variant | `shaders/layer.wgsl` (SPLIT) + `shaders/layer_combine.wgsl` | `gpu/layer.rs` | [`layer::LayerWeights::layer`] |
//! | layer, `stacked` variant (S networks per dispatch) | `shaders/layer.wgsl` (STACK) | `gpu/layer.rs` | [`layer::LayerWeights::layer`] |
//! | statistics | `shaders/stats.wgsl` | `gpu/stats.rs` | [`stats::block_stats`] |
//! | backward | `shaders/backward.wgsl` | `gpu/backward.rs` | [`layer::LayerWeights::transposed`], [`backward::cpu_sample`] |
//! | Hadamard layer | `shaders/hadamard.wgsl` | `gpu/hadamard.rs` | [`hadamard`], [`layer::LayerWeights::hadamard`] |
//!
//! Shared pieces: `phi.wgsl` ↔ [`phi::SimActivation`], `params.wgsl` ↔
//! `gpu/params.rs`, `weight_tile.wgsl` and `rng.wgsl` (with `mul64.wgsl`
//! in the `-int64` variants) ↔ [`crate::rng`].
//! The device plumbing (adapter, buffers, error scopes, timestamps) is
//! `gpu/device.rs`, shared with the trainer. [`spec`] (what to simulate)
//! and [`stats`] sit below both backends; [`backward`] aggregates either
//! backend's gradients ([`GradientPass`]).

pub mod backward;
pub mod cpu;
pub mod gemm;
pub mod gpu;
pub mod hadamard;
pub mod layer;
pub mod phi;
pub mod spec;
pub mod stats;

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub use spec::{Inputs, SimActivation, SimSpec, Weights};
pub use stats::{Estimate, SimStats};

/// Which backend ran a simulation, and on what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackendInfo {
    /// "cpu" or "gpu".
    pub backend: String,
    /// The adapter (GPU name and driver) or the CPU thread count.
    pub adapter: String,
    /// The GPU layer kernel variant that ran (see [`gpu::KernelVariant`]),
    /// each with its sizes where they differ
    /// ([`gpu::GpuBackend::kernel_description`]), or the choice (`auto`, a
    /// variant) before any layer ran; `None` on the CPU (and then absent
    /// from JSON). The backward step follows it
    /// ([`gpu::KernelVariant::backward`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

/// Receives the statistics of each layer of one network sample, in order:
/// (layer, sums of squares per input, dot products per measured pair).
pub type LayerSink<'a> = dyn FnMut(usize, &[f64], &[f64]) -> Result<()> + 'a;

/// Receives the statistics of several network samples run together
/// ([`Backend::run_samples`]): (sample offset k in the group, layer, sums of
/// squares per input, dot products per measured pair). Each sample's
/// layers arrive in order; the samples' layers may interleave.
pub type SamplesSink<'a> = dyn FnMut(usize, usize, &[f64], &[f64]) -> Result<()> + 'a;

/// [`Backend::run_samples`] as a loop over [`Backend::run_sample`]: network
/// `first + k` for k = 0..count, one after another.
pub fn run_one_by_one<B: Backend + ?Sized>(
    backend: &mut B,
    spec: &SimSpec,
    first: u32,
    count: usize,
    sink: &mut SamplesSink<'_>,
) -> Result<()> {
    for k in 0..count {
        let sample = first + k as u32;
        let inputs = spec.input_vectors(sample);
        backend.run_sample(spec, &inputs, sample, &mut |l, s, d| sink(k, l, s, d))?;
    }
    Ok(())
}

/// The start every backend's [`Backend::run_sample`] shares: the inputs
/// feature-major (H⁰[j·B + b], f32, as both backends propagate them) and
/// layer 0's statistics passed to `sink`. Returns H⁰ and what is measured.
pub(crate) fn input_layer(
    spec: &SimSpec,
    inputs: &[Vec<f64>],
    sink: &mut LayerSink<'_>,
) -> Result<(Vec<f32>, spec::Measurements)> {
    let meas = spec.measurements();
    let h0 = spec::feature_major(inputs, spec.width);
    let (s0, d0) = stats::block_stats(&h0, meas.batch, &meas);
    sink(0, &s0, &d0)?;
    Ok((h0, meas))
}

/// A simulator: pushes the batch through one network sample.
pub trait Backend {
    /// What this backend runs on.
    fn info(&self) -> BackendInfo;
    /// Runs network sample `sample` of `spec` on `inputs` (B vectors of
    /// length n), calling `sink` for layers 0..=L in order. A sink error
    /// (e.g. cancellation) ends the sample.
    fn run_sample(
        &mut self,
        spec: &SimSpec,
        inputs: &[Vec<f64>],
        sample: u32,
        sink: &mut LayerSink<'_>,
    ) -> Result<()>;
    /// How many network samples the next [`Backend::run_samples`] call
    /// should take when `left` remain in the run (1 ≤ it ≤ `left`): 1 by
    /// default; the GPU backend stacks several where a stacked layer kernel
    /// may run ([`gpu::KernelVariant::Stacked`]).
    fn samples_per_pass(&self, spec: &SimSpec, left: usize) -> usize {
        let _ = (spec, left);
        1
    }
    /// Runs network samples `first .. first + count` of `spec` on their
    /// inputs (`spec.input_vectors(sample)`), calling `sink` with each
    /// sample's offset k and its layers 0..=L in order. By default one
    /// sample after another through [`Backend::run_sample`]. A sink error
    /// (e.g. cancellation) ends the call.
    fn run_samples(
        &mut self,
        spec: &SimSpec,
        first: u32,
        count: usize,
        sink: &mut SamplesSink<'_>,
    ) -> Result<()> {
        run_one_by_one(self, spec, first, count, sink)
    }
    /// The device that runs this backend's backward passes, if not the CPU.
    fn gradient_pass(&self) -> Option<&dyn GradientPass> {
        None
    }
    /// Forward and straight-through backward passes of every network of
    /// `spec` (pair inputs), aggregated as in [`backward::simulate_backward`],
    /// on [`Backend::gradient_pass`] (the CPU where that is `None`).
    fn backward(
        &mut self,
        spec: &SimSpec,
        ste: &crate::theory::backward::Ste,
        cancel: &AtomicBool,
    ) -> Result<Vec<backward::BackwardCurve>> {
        backward::simulate_backward(spec, ste, cancel, self.gradient_pass())
    }
    /// Device time of the layer passes since the last call, where the
    /// backend measures it (GPU timestamp queries); `None` otherwise.
    fn device_seconds(&mut self) -> Option<f64> {
        None
    }
}

/// One network's gradients: sums of squares and pair dot products of δ^l
/// for l = 0..=L, and the forward pre-activations h^0..h^{L−1}.
pub struct SampleGradients {
    /// (Σ δ², pair dots) per layer, l = 0..=L.
    pub delta: Vec<(Vec<f64>, Vec<f64>)>,
    /// h^0..h^{L−1}, feature-major.
    pub forward: Vec<Vec<f32>>,
}

/// A device that runs one network's forward pass and straight-through
/// backward pass (the GPU's, `sim::gpu::backward`);
/// [`backward::simulate_backward`] aggregates its results as it does the
/// CPU's ([`backward::cpu_sample`]).
pub trait GradientPass {
    /// The gradients of network `sample` of `spec` for `inputs`, from the
    /// output gradient `output_gradient` (feature-major, n × B).
    fn sample_gradients(
        &self,
        spec: &SimSpec,
        ste: &crate::theory::backward::Ste,
        inputs: &[Vec<f64>],
        output_gradient: &[f32],
        sample: u32,
    ) -> Result<SampleGradients>;
}

/// How a simulation reports progress and learns it should stop.
pub struct Control<'a> {
    /// Called after each layer with the number of layers finished so far
    /// (over all samples; the total is samples × depth).
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// Set to stop at the next layer; finished samples are kept.
    pub cancel: &'a AtomicBool,
}

/// The outcome of a simulation: statistics of the finished samples.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimOutcome {
    /// Backend and adapter.
    pub backend: BackendInfo,
    /// Aggregated statistics of the samples that finished.
    pub stats: SimStats,
    /// True when every requested sample finished.
    pub complete: bool,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Wall time in seconds.
    pub wall_seconds: f64,
}

/// Runs every network sample of `spec` on `backend` and aggregates.
///
/// Samples run in groups of [`Backend::samples_per_pass`] (one on the CPU;
/// a stack of several where the GPU runs a stacked layer kernel); the
/// aggregate commits them in sample order, so it does not depend on the
/// grouping. Cancellation is checked after every layer of every sample;
/// cancellation or a backend failure keeps the samples that finished
/// (every layer recorded) — the finished leading samples of the group in
/// progress, too, so the samples of a group that had not finished (a
/// stacked group finishes all its samples together, at its last layer)
/// are dropped — and returns them with `complete = false` and the reason
/// in `stopped`; a failure before any sample finished is an error.
pub fn simulate(
    backend: &mut dyn Backend,
    spec: &SimSpec,
    ctl: &Control<'_>,
) -> Result<SimOutcome> {
    spec.validate()?;
    let start = Instant::now();
    let mut agg = stats::Aggregator::new(spec);
    let mut done_layers = 0u64;
    let mut stopped = None;
    let mut next = 0usize;
    while next < spec.samples {
        if ctl.cancel.load(Ordering::Relaxed) {
            stopped = Some("interrupted".to_string());
            break;
        }
        let left = spec.samples - next;
        let count = backend.samples_per_pass(spec, left).clamp(1, left);
        let mut records = vec![agg.new_record(); count];
        let mut finished = vec![false; count];
        let mut sink = |k: usize, layer: usize, sumsq: &[f64], dots: &[f64]| -> Result<()> {
            let rec = records.get_mut(k).ok_or_else(|| {
                Error::Gpu(format!(
                    "a backend reported sample {k} of a group of {count}"
                ))
            })?;
            agg.record_layer_into(rec, layer, sumsq, dots)?;
            if layer > 0 {
                done_layers += 1;
                (ctl.progress)(done_layers);
            }
            if ctl.cancel.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            if layer == spec.depth {
                finished[k] = true;
            }
            Ok(())
        };
        let result = backend.run_samples(spec, next as u32, count, &mut sink);
        // A group that ran through has every sample finished; one that
        // stopped keeps its finished leading samples.
        let keep = match result {
            Ok(()) => count,
            Err(_) => finished.iter().take_while(|f| **f).count(),
        };
        for rec in &records[..keep] {
            agg.commit_record(rec);
        }
        match result {
            Ok(()) => next += count,
            Err(Error::Interrupted) => {
                stopped = Some("interrupted".to_string());
                break;
            }
            Err(e) if agg.samples() > 0 => {
                stopped = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(SimOutcome {
        backend: backend.info(),
        complete: stopped.is_none() && agg.samples() == spec.samples,
        stats: agg.finish(),
        stopped,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

/// The CPU backend's note, saying that a forced GPU layer kernel has
/// nothing to run on it.
fn cpu_note(note: &str, kernel: Option<gpu::KernelChoice>) -> String {
    match kernel {
        Some(gpu::KernelChoice::Forced(v)) => {
            format!("{note} (--kernel {v} is for the GPU backend: ignored)")
        }
        _ => note.to_string(),
    }
}

/// Opens the backend a user named: "cpu"; "gpu" (a hardware GPU, else the
/// software adapter, said so in the note); or "auto" (a hardware GPU, else
/// the CPU). Returns the backend and a note saying which one was taken and why.
/// A GPU backend runs the reference layer kernel (`tiled`).
pub fn open_backend(name: &str) -> Result<(Box<dyn Backend>, String)> {
    open_backend_with_kernel(name, None)
}

/// [`open_backend`], with a GPU backend's layer kernel set to `kernel`
/// where given (`auto`: tuned on first use of each (n, B), cached in
/// [`gpu::autotune::default_cache_dir`]); the note says which.
pub fn open_backend_with_kernel(
    name: &str,
    kernel: Option<gpu::KernelChoice>,
) -> Result<(Box<dyn Backend>, String)> {
    use gpu::{AdapterPolicy, GpuBackend};
    let with_kernel = |mut b: GpuBackend, note: String| -> (Box<dyn Backend>, String) {
        let Some(k) = kernel else {
            return (Box::new(b), note);
        };
        let dir = gpu::autotune::default_cache_dir();
        let how = match (k, &dir) {
            (gpu::KernelChoice::Auto, Some(d)) => format!(
                "auto (each applicable variant timed on first use of a width and batch, the \
                 fastest cached in {})",
                d.join(gpu::autotune::CACHE_FILE).display()
            ),
            (gpu::KernelChoice::Auto, None) => {
                "auto (timed on first use of a width and batch; no cache folder)".into()
            }
            (gpu::KernelChoice::Forced(v), _) => format!("{v} (forced)"),
            (gpu::KernelChoice::Recorded(v), _) => {
                format!("{v} (as recorded in the results folder; tuned where it does not apply)")
            }
        };
        b.set_kernel(k, dir);
        (Box::new(b), format!("{note}; layer kernel {how}"))
    };
    match name {
        "cpu" => Ok((Box::new(cpu::CpuBackend), cpu_note("backend cpu", kernel))),
        "gpu" => {
            let b = GpuBackend::new(AdapterPolicy::PreferHardware)?;
            let note = if b.context().is_gl() {
                format!(
                    "backend gpu: warning: only wgpu's OpenGL backend answered ({}); compute \
                     through OpenGL is very slow (minutes for a small run): install a Vulkan \
                     driver (on Debian/Ubuntu `apt-get install mesa-vulkan-drivers`, lavapipe) \
                     or use --backend cpu",
                    b.context().describe()
                )
            } else if b.context().is_software() {
                format!("backend gpu: no hardware GPU; using the software adapter {} (correct but slow)", b.context().describe())
            } else {
                format!("backend gpu: {}", b.context().describe())
            };
            Ok(with_kernel(b, note))
        }
        "auto" => match GpuBackend::new(AdapterPolicy::HardwareOnly) {
            Ok(b) => {
                let note = format!("backend auto: took the GPU {}", b.context().describe());
                Ok(with_kernel(b, note))
            }
            Err(e) => {
                // The usual case in one short line: which adapters answered, not
                // which wgpu backends were tried.
                let why = e.to_string();
                let why = match why.split_once("found only: ") {
                    Some((_, seen)) => {
                        format!("found only {}", seen.strip_suffix(')').unwrap_or(seen))
                    }
                    None => why,
                };
                Ok((
                    Box::new(cpu::CpuBackend),
                    cpu_note(
                        &format!("backend auto: no hardware GPU ({why}); took the CPU backend"),
                        kernel,
                    ),
                ))
            }
        },
        other => Err(Error::invalid("backend", other, "one of auto, cpu, gpu")),
    }
}
