//! The GPU backend: wgpu compute shaders (`shaders/*.wgsl`) on any Vulkan,
//! Metal or DX12 adapter.
//!
//! Per network sample: the inputs go up once; then each submission records
//! a run of layers — for each, the fused layer kernel (weights generated in
//! workgroup memory, never stored) and the statistics kernel — and one copy
//! of the statistics to a staging buffer, which is read back after the
//! submission (no host round trip per layer). Submissions are sized to
//! about half a second of work, which also paces the progress bar.
//! Per-layer parameters sit in a uniform buffer, one 256-byte entry per
//! layer, bound with a dynamic offset (queue writes land at submit time, so
//! they cannot change between dispatches).
//!
//! Errors (no adapter, validation, out of memory, device lost) become
//! [`Error::Gpu`] with the adapter's message; the driver keeps the samples
//! that finished.
//!
//! One file per stage, named for its shader: `layer.rs`, `stats.rs`,
//! `backward.rs`, `hadamard.rs`; `params.rs` holds the per-layer parameters
//! (`params.wgsl`) and the buffers a network's passes share, [`shaders`]
//! the WGSL composition, and [`device`] the device plumbing (also the
//! trainer's). This file is the backend and its chunk driver. The layer
//! kernel's variants (split-K, wide tiles, stacked networks, the u64
//! multiply) are named in
//! [`variant`], chosen per chunk in `kernel.rs` (forced, or timed and
//! cached through [`autotune`]) and compiled in `layer.rs`.

pub mod autotune;
mod backward;
pub mod device;
mod hadamard;
mod kernel;
mod layer;
mod params;
pub mod shaders;
mod stats;
pub mod variant;

pub use device::{backend_names, AdapterPolicy, GpuContext};
pub use hadamard::{HadamardStep, HADAMARD_TILE};
pub use layer::tile_columns;
pub use params::GpuParams;
pub use variant::{DeviceCaps, KernelChoice, KernelVariant};

use kernel::KernelState;

use backward::BackwardKernels;
use device::PassTimer;
use layer::LayerKernels;
use params::SharedBuffers;
use stats::StatsKernel;

use crate::error::{Error, Result};
use crate::sim::spec::{feature_major, Inputs, Measurements, SimSpec, Weights};
use crate::sim::{
    input_layer, run_one_by_one, Backend, BackendInfo, GradientPass, LayerSink, SamplesSink,
};
use std::time::Instant;

/// Most layers whose statistics one readback holds.
const MAX_LAYERS_PER_SUBMIT: usize = 256;
/// Wall time one submission aims at.
const SUBMIT_SECONDS: f64 = 0.5;

/// Pipelines and their layouts, created once per device, one per stage.
struct Kernels {
    layer: LayerKernels,
    stats: StatsKernel,
    backward: BackwardKernels,
    hadamard: hadamard::HadamardKernels,
}

impl Kernels {
    fn new(ctx: &GpuContext) -> Result<Self> {
        let hadamard = hadamard::HadamardKernels::new(ctx)?;
        let layer = LayerKernels::new(ctx)?;
        let backward = BackwardKernels::new(ctx, &layer.layout)?;
        let stats = StatsKernel::new(ctx)?;
        Ok(Kernels {
            layer,
            stats,
            backward,
            hadamard,
        })
    }
}

/// The GPU backend.
pub struct GpuBackend {
    ctx: GpuContext,
    kernels: Kernels,
    batch_limit: Option<usize>,
    /// Most network samples per stacked dispatch (tests), below the
    /// device's limit.
    stack_limit: Option<usize>,
    /// GPU time of the layer passes since the last `device_seconds` call,
    /// from timestamp queries (when the adapter has them).
    gpu_seconds: std::cell::Cell<f64>,
    /// The layer kernel variant: the choice, the tuner, the variants used.
    kernel: KernelState,
}

impl GpuBackend {
    /// Opens an adapter under `policy` and builds the kernels.
    pub fn new(policy: AdapterPolicy) -> Result<Self> {
        let ctx = GpuContext::new(policy)?;
        let kernels = Kernels::new(&ctx)?;
        let caps = DeviceCaps::new(ctx.features, &ctx.limits);
        Ok(GpuBackend {
            ctx,
            kernels,
            batch_limit: None,
            stack_limit: None,
            gpu_seconds: std::cell::Cell::new(0.0),
            kernel: KernelState::new(caps),
        })
    }

    /// The device context (for tests and benchmarks).
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Largest batch per pass for width n under the adapter's binding limits.
    pub fn max_batch(&self, n: usize) -> usize {
        let bind = self
            .ctx
            .limits
            .max_storage_buffer_binding_size
            .min(self.ctx.limits.max_buffer_size);
        let by_memory = (bind / 4 / n as u64) as usize;
        // Quantities per layer (B + P ≤ 1.5 B for pairs) index workgroups in x.
        let by_dispatch = (self.ctx.limits.max_compute_workgroups_per_dimension as usize) * 2 / 3;
        let limit = by_memory.min(by_dispatch);
        self.batch_limit.map_or(limit, |l| l.min(limit))
    }

    /// Runs layers 1..=depth of `stack` networks (samples `sample` ..
    /// `sample + stack`; more than one only with a stacked variant) on a
    /// batch chunk whose inputs are `h0` (feature-major, sample after
    /// sample: stack × n × B) with the layer kernel `variant` (`None`:
    /// Hadamard), calling `deliver(layer, sample offset, sumsq, dots)`,
    /// layer by layer, the samples of a layer in order. With `keep_last`,
    /// returns the last layer's activations (stack × n × B).
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn run_chunk(
        &self,
        spec: &SimSpec,
        h0: &[f32],
        meas: &Measurements,
        sample: u32,
        stack: usize,
        variant: Option<KernelVariant>,
        deliver: &mut dyn FnMut(usize, usize, Vec<f64>, Vec<f64>) -> Result<()>,
        keep_last: bool,
    ) -> Result<Option<Vec<f32>>> {
        let ctx = &self.ctx;
        let kernels = &self.kernels;
        let n = spec.width;
        let batch = meas.batch;
        let stacked = variant.is_some_and(|v| v.tiling() == variant::Tiling::Stacked);
        let too_big = || {
            Error::Gpu(format!(
                "{stack} networks of {n} × {batch} activations overflow"
            ))
        };
        let values = stack
            .checked_mul(n)
            .and_then(|v| v.checked_mul(batch))
            .ok_or_else(too_big)?;
        if stack == 0 || (stack > 1 && !stacked) || h0.len() != values {
            return Err(Error::Gpu(format!(
                "a layer pass over {stack} network(s) at n = {n}, B = {batch} takes a stacked \
                 variant for more than one and {values} inputs, not {:?} and {}",
                variant.map(KernelVariant::name),
                h0.len()
            )));
        }
        let q = batch + meas.pairs.len();
        let groups = stats::groups(n);
        // Per layer, S slots of q quantities × groups partials (stats.wgsl);
        // the layers of one submission must fit one storage binding.
        let unit_floats = stack * q * groups as usize;
        let by_binding = self.kernel.caps.max_storage_binding / (4 * unit_floats as u64).max(1);
        let per_submit = MAX_LAYERS_PER_SUBMIT
            .min(spec.depth)
            .min(usize::try_from(by_binding).unwrap_or(usize::MAX))
            .max(1);
        let shared = SharedBuffers::new(ctx, spec, meas, sample, None, &|l| {
            ((l - 1) % per_submit) as u32
        })?;
        use wgpu::BufferUsages as U;
        let act_bytes = (values as u64).checked_mul(4).ok_or_else(too_big)?;
        let stats_bytes = (per_submit * unit_floats * 4) as u64;
        let h = [
            ctx.buffer(
                "activations A",
                act_bytes,
                U::STORAGE | U::COPY_DST | U::COPY_SRC,
            )?,
            ctx.buffer("activations B", act_bytes, U::STORAGE | U::COPY_SRC)?,
        ];
        let stats_buf = ctx.buffer("statistics", stats_bytes, U::STORAGE | U::COPY_SRC)?;
        // The read-back holds the statistics, then the pass's two timestamps.
        let staging = ctx.buffer(
            "statistics read-back",
            stats_bytes + PassTimer::BYTES,
            U::MAP_READ | U::COPY_DST,
        )?;
        let timer = ctx.pass_timer("layer pass timestamps")?;
        ctx.queue.write_buffer(&h[0], 0, bytemuck::cast_slice(h0));
        let layer_bg: Vec<wgpu::BindGroup> = (0..2)
            .map(|k| kernels.layer.bind_group(ctx, &shared, &h[k], &h[1 - k]))
            .collect();
        let stats_bg: Vec<wgpu::BindGroup> = (0..2)
            .map(|k| kernels.stats.bind_group(ctx, &shared, &h[k], &stats_buf))
            .collect();
        let hadamard_layers = if spec.weights == Weights::Hadamard {
            Some(kernels.hadamard.prepare(ctx, &shared, &h, n)?)
        } else {
            None
        };
        let pipes = match variant {
            Some(v) => Some(kernels.layer.variant(ctx, v, batch)?),
            None => None,
        };
        let wg = variant.map_or((1, 1, 1), |v| {
            v.stacked_workgroups(n, batch, self.kernel.caps.max_storage_binding, stack)
        });
        // Split-K: S × n × B partial sums, written by the main pass and
        // read by the combine pass (a pair of bind groups per parity).
        let split_bg: Vec<(wgpu::BindGroup, wgpu::BindGroup)> =
            if pipes.as_ref().is_some_and(|p| p.combine.is_some()) {
                let partial = ctx.buffer(
                    "split-K partial sums",
                    u64::from(wg.2) * act_bytes,
                    U::STORAGE,
                )?;
                (0..2)
                    .map(|k| {
                        (
                            kernels.layer.bind_group(ctx, &shared, &h[k], &partial),
                            kernels.layer.bind_group(ctx, &shared, &partial, &h[1 - k]),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            };
        let combine_wg = device::spread(n * batch, ctx.limits.max_compute_workgroups_per_dimension);
        ctx.check()?;
        let mut next = 1usize;
        let mut chunk = 1usize;
        while next <= spec.depth {
            let count = chunk
                .min(spec.depth - next + 1)
                .min(per_submit - (next - 1) % per_submit);
            let start = Instant::now();
            let mut enc = ctx.encoder("layers");
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("layers"),
                    timestamp_writes: timer.as_ref().map(PassTimer::writes),
                });
                for l in next..next + count {
                    let offset = SharedBuffers::offset(l);
                    if let Some(hl) = &hadamard_layers {
                        kernels
                            .hadamard
                            .record(&mut pass, hl, l, offset[0], n, batch);
                    } else if let Some(p) = &pipes {
                        pass.set_pipeline(&p.main);
                        match (&p.combine, split_bg.get((l - 1) % 2)) {
                            (Some(combine), Some((main_bg, combine_bg))) => {
                                pass.set_bind_group(0, main_bg, &offset);
                                pass.dispatch_workgroups(wg.0, wg.1, wg.2);
                                pass.set_pipeline(combine);
                                pass.set_bind_group(0, combine_bg, &offset);
                                pass.dispatch_workgroups(combine_wg.0, combine_wg.1, 1);
                            }
                            _ => {
                                pass.set_bind_group(0, &layer_bg[(l - 1) % 2], &offset);
                                pass.dispatch_workgroups(wg.0, wg.1, wg.2);
                            }
                        }
                    }
                    kernels
                        .stats
                        .record_stacked(&mut pass, &stats_bg[l % 2], &offset, q, n, stack);
                }
            }
            let first_slot = (next - 1) % per_submit;
            let unit = (unit_floats * 4) as u64;
            let stats_len = count as u64 * unit;
            enc.copy_buffer_to_buffer(&stats_buf, first_slot as u64 * unit, &staging, 0, stats_len);
            if let Some(t) = &timer {
                t.resolve(&mut enc, &staging, stats_len);
            }
            let read_len = stats_len + if timer.is_some() { PassTimer::BYTES } else { 0 };
            let mut raw = ctx.submit_and_read(enc, &staging, read_len)?;
            if timer.is_some() {
                let secs = PassTimer::take_seconds(&mut raw, &ctx.queue);
                self.gpu_seconds.set(self.gpu_seconds.get() + secs);
            }
            for (k, layer_raw) in raw.chunks_exact(unit_floats).enumerate() {
                for (z, sample_raw) in layer_raw.chunks_exact(q * groups as usize).enumerate() {
                    let (sumsq, dots) = stats::reduce(sample_raw, groups, batch);
                    deliver(next + k, z, sumsq, dots)?;
                }
            }
            let secs = start.elapsed().as_secs_f64().max(1e-6);
            let per_layer = secs / count as f64;
            chunk = ((SUBMIT_SECONDS / per_layer) as usize).clamp(1, per_submit);
            next += count;
        }
        if !keep_last {
            return Ok(None);
        }
        Ok(Some(ctx.read(
            "activations read-back",
            &h[spec.depth % 2],
            act_bytes,
        )?))
    }

    /// Lowers the batch per pass below the adapter's limit (to exercise
    /// batch splitting); `None` restores the limit.
    pub fn set_batch_limit(&mut self, limit: Option<usize>) {
        self.batch_limit = limit;
    }

    /// The pre-activations of layer `spec.depth` of network `sample` for
    /// `inputs` (feature-major, n × B), computed on the GPU.
    pub fn propagate(&self, spec: &SimSpec, inputs: &[Vec<f64>], sample: u32) -> Result<Vec<f32>> {
        spec.validate()?;
        let meas = spec.measurements();
        if meas.batch > self.max_batch(spec.width) {
            return Err(Error::Gpu(format!(
                "batch {} is over this adapter's limit for one pass",
                meas.batch
            )));
        }
        let h0 = feature_major(inputs, spec.width);
        let v = self.chunk_variant(spec, &h0, &meas, sample, 1)?;
        let out = self.run_chunk(
            spec,
            &h0,
            &meas,
            sample,
            1,
            v,
            &mut |_, _, _, _| Ok(()),
            true,
        )?;
        out.ok_or_else(|| Error::Gpu("no activations were read back".into()))
    }

    /// [`Self::propagate`] for networks `first`, `first + 1`, … with
    /// inputs `inputs[k]` for network `first + k`, run as the simulator runs
    /// them: one stacked dispatch per layer where the variant (forced, or
    /// tuned for this stack) is stacked, else one network after another.
    pub fn propagate_stack(
        &self,
        spec: &SimSpec,
        inputs: &[Vec<Vec<f64>>],
        first: u32,
    ) -> Result<Vec<Vec<f32>>> {
        spec.validate()?;
        let meas = spec.measurements();
        let nb = spec.width * meas.batch;
        let h0: Vec<f32> = inputs
            .iter()
            .flat_map(|x| feature_major(x, spec.width))
            .collect();
        let mut out = Vec::with_capacity(inputs.len());
        let v = self.chunk_variant(spec, &h0, &meas, first, inputs.len())?;
        let mut ignore = |_, _, _, _| Ok(());
        if v.is_some_and(|v| v.tiling() == variant::Tiling::Stacked) {
            let all =
                self.run_chunk(spec, &h0, &meas, first, inputs.len(), v, &mut ignore, true)?;
            out.extend(
                all.unwrap_or_default()
                    .chunks_exact(nb)
                    .map(<[f32]>::to_vec),
            );
        } else {
            for (k, h) in h0.chunks_exact(nb).enumerate() {
                let s = first + k as u32;
                let one = self.run_chunk(spec, h, &meas, s, 1, v, &mut ignore, true)?;
                out.push(one.unwrap_or_default());
            }
        }
        if out.len() != inputs.len() || out.iter().any(|h| h.len() != nb) {
            return Err(Error::Gpu("no activations were read back".into()));
        }
        Ok(out)
    }

    /// Caps the network samples of one stacked dispatch (to exercise
    /// partial stacks); `None` restores the limit of [`variant::stack_count`].
    pub fn set_stack_limit(&mut self, limit: Option<usize>) {
        self.stack_limit = limit;
    }
}

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "gpu".into(),
            adapter: self.ctx.describe(),
            kernel: Some(self.kernel_description()),
        }
    }

    fn gradient_pass(&self) -> Option<&dyn GradientPass> {
        Some(self)
    }

    fn device_seconds(&mut self) -> Option<f64> {
        self.ctx.timestamps.then(|| self.gpu_seconds.replace(0.0))
    }

    fn samples_per_pass(&self, spec: &SimSpec, left: usize) -> usize {
        self.stack_size(spec, left)
    }

    /// `count` networks: with a stacked variant (forced, or tuned for this
    /// stack of `count`) one dispatch per layer for all of them, else one
    /// network after another with the variant chosen for the stack. Layer
    /// 0 of every network reaches `sink` first.
    fn run_samples(
        &mut self,
        spec: &SimSpec,
        first: u32,
        count: usize,
        sink: &mut SamplesSink<'_>,
    ) -> Result<()> {
        if count <= 1 {
            return run_one_by_one(self, spec, first, count, sink);
        }
        let mut h0 = Vec::new();
        let mut meas = None;
        for k in 0..count {
            let inputs = spec.input_vectors(first + k as u32);
            let (h, m) = input_layer(spec, &inputs, &mut |l, s, d| sink(k, l, s, d))?;
            h0.extend(h);
            meas = Some(m);
        }
        let meas = meas.unwrap_or_else(|| spec.measurements());
        let v = self.chunk_variant(spec, &h0, &meas, first, count)?;
        if v.is_some_and(|v| v.tiling() == variant::Tiling::Stacked) {
            let mut deliver = |l, k, s: Vec<f64>, d: Vec<f64>| sink(k, l, &s, &d);
            self.run_chunk(spec, &h0, &meas, first, count, v, &mut deliver, false)?;
            return Ok(());
        }
        let nb = spec.width * meas.batch;
        for (k, h) in h0.chunks_exact(nb).enumerate() {
            let mut deliver = |l, _, s: Vec<f64>, d: Vec<f64>| sink(k, l, &s, &d);
            self.run_chunk(spec, h, &meas, first + k as u32, 1, v, &mut deliver, false)?;
        }
        Ok(())
    }

    fn run_sample(
        &mut self,
        spec: &SimSpec,
        inputs: &[Vec<f64>],
        sample: u32,
        sink: &mut LayerSink<'_>,
    ) -> Result<()> {
        let n = spec.width;
        let (h0_all, meas) = input_layer(spec, inputs, sink)?;
        let max_batch = self.max_batch(n);
        if meas.batch <= max_batch {
            let v = self.chunk_variant(spec, &h0_all, &meas, sample, 1)?;
            let mut deliver = |l, _, s: Vec<f64>, d: Vec<f64>| sink(l, &s, &d);
            return self
                .run_chunk(spec, &h0_all, &meas, sample, 1, v, &mut deliver, false)
                .map(|_| ());
        }
        // Split the batch: pairs stay whole, so each chunk holds whole pairs.
        let Inputs::Pairs { .. } = spec.inputs else {
            return Err(Error::Gpu(format!(
                "a circle of {} points at width {n} exceeds this adapter's storage binding limit ({} inputs at most)",
                meas.batch, max_batch
            )));
        };
        let per_chunk = (max_batch / 2).max(1) * 2;
        let mut sumsq = vec![vec![0f64; meas.batch]; spec.depth + 1];
        let mut dots = vec![vec![0f64; meas.pairs.len()]; spec.depth + 1];
        for c0 in (0..meas.batch).step_by(per_chunk) {
            let c1 = (c0 + per_chunk).min(meas.batch);
            let chunk_meas = Measurements {
                batch: c1 - c0,
                pairs: (0..((c1 - c0) / 2) as u32)
                    .map(|i| (2 * i, 2 * i + 1))
                    .collect(),
            };
            let h0 = feature_major(&inputs[c0..c1], n);
            let v = self.chunk_variant(spec, &h0, &chunk_meas, sample, 1)?;
            self.run_chunk(
                spec,
                &h0,
                &chunk_meas,
                sample,
                1,
                v,
                &mut |l, _, s, d| {
                    sumsq[l][c0..c1].copy_from_slice(&s);
                    dots[l][c0 / 2..c1 / 2].copy_from_slice(&d);
                    Ok(())
                },
                false,
            )?;
        }
        for l in 1..=spec.depth {
            sink(l, &sumsq[l], &dots[l])?;
        }
        Ok(())
    }
}
