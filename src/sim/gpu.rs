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

use crate::error::{Error, Result};
use crate::rng::key_for;
use crate::sim::autotune::{TuneKey, Tuner};
use crate::sim::cpu::{block_stats, feature_major, weight_scale};
use crate::sim::kernel::{self, DeviceCaps, KernelChoice, KernelVariant, VariantPipelines};
use crate::sim::spec::{Inputs, Measurements, SimActivation, SimSpec, Weights};
use crate::sim::{Backend, BackendInfo, LayerSink};
use std::borrow::Cow;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

/// The WGSL sources, composed as the kernels use them.
pub mod shaders {
    /// The generator (functions only).
    pub const RNG: &str = include_str!("../../shaders/rng.wgsl");
    /// The per-layer parameter struct.
    pub const PARAMS: &str = include_str!("../../shaders/params.wgsl");
    /// The fused layer kernel.
    pub const LAYER: &str = include_str!("../../shaders/layer.wgsl");
    /// The statistics kernel.
    pub const STATS: &str = include_str!("../../shaders/stats.wgsl");
    /// The generator check kernel (tests).
    pub const RNG_CHECK: &str = include_str!("../../shaders/rng_check.wgsl");
    /// The backward (transposed, STE-masked) kernel.
    pub const BACKWARD: &str = include_str!("../../shaders/backward.wgsl");
    /// The Hadamard-ensemble layer (tile stages, global stages, finish).
    pub const HADAMARD: &str = include_str!("../../shaders/hadamard.wgsl");
    /// φ, shared by the layer and Hadamard kernels (a fragment).
    pub const PHI: &str = include_str!("../../shaders/phi.wgsl");

    /// hadamard.wgsl with the generator, the parameters and φ.
    pub fn hadamard() -> String {
        format!("{RNG}\n{PARAMS}\n{PHI}\n{HADAMARD}")
    }

    /// backward.wgsl with `tb` batch columns per workgroup (16, 32 or 64).
    pub fn backward(tb: u32) -> String {
        assert!(
            BACKWARD.contains(TB_LINE),
            "backward.wgsl must declare `{TB_LINE}`"
        );
        format!(
            "{RNG}\n{PARAMS}\n{}",
            BACKWARD.replace(TB_LINE, &format!("const TB: u32 = {tb}u;"))
        )
    }

    /// The line of layer.wgsl that sets the batch columns per workgroup.
    const TB_LINE: &str = "const TB: u32 = 64u;";

    /// layer.wgsl with `tb` batch columns per workgroup (16, 32 or 64).
    pub fn layer(tb: u32) -> String {
        assert!(
            LAYER.contains(TB_LINE),
            "layer.wgsl must declare `{TB_LINE}`"
        );
        format!(
            "{RNG}\n{PARAMS}\n{PHI}\n{}",
            LAYER.replace(TB_LINE, &format!("const TB: u32 = {tb}u;"))
        )
    }

    /// stats.wgsl with its parameters.
    pub fn stats() -> String {
        format!("{PARAMS}\n{STATS}")
    }

    /// rng_check.wgsl with the generator.
    pub fn rng_check() -> String {
        format!("{RNG}\n{RNG_CHECK}")
    }
}

/// Bytes between per-layer parameter entries (WebGPU's largest
/// `minUniformBufferOffsetAlignment`).
const PARAM_STRIDE: u64 = 256;
/// Rows per statistics partial (one workgroup each).
const STATS_ROWS: u32 = 4096;
/// Most layers whose statistics one readback holds.
const MAX_LAYERS_PER_SUBMIT: usize = 256;
/// Wall time one submission aims at.
const SUBMIT_SECONDS: f64 = 0.5;

/// The per-layer parameters, field for field as in `shaders/params.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuParams {
    /// Layer index l (RNG counter).
    pub layer: u32,
    /// Network sample (RNG counter).
    pub sample: u32,
    /// Key, low word of the seed.
    pub key0: u32,
    /// Key, high word of the seed.
    pub key1: u32,
    /// Width n.
    pub n: u32,
    /// Batch of this chunk.
    pub batch: u32,
    /// Activation kind (0 uniform, 1 steps, 2 tanh, 3 hard-tanh, 4 linear).
    pub kind: u32,
    /// Number of levels N (quantizers).
    pub states: u32,
    /// 1/Δ (uniform quantizer).
    pub inv_spacing: f32,
    /// N/2 (uniform quantizer).
    pub half_states: f32,
    /// σ_w/√n.
    pub w_scale: f32,
    /// σ_b.
    pub b_scale: f32,
    /// Slot of this layer in the statistics buffer.
    pub slot: u32,
    /// Measured quantities per layer (B + P).
    pub quantities: u32,
    /// Row groups per quantity.
    pub groups: u32,
    /// Rows per group.
    pub rows_per_group: u32,
    /// STE slope s (backward pass).
    pub ste_slope: f32,
    /// STE threshold t (backward pass).
    pub ste_threshold: f32,
    /// Weight ensemble: 0 gaussian, 1 rademacher, 2 hadamard.
    pub weights: u32,
    /// Padding.
    pub pad1: u32,
}

/// One dispatch of the Hadamard layer, field for field `Step` in
/// `shaders/hadamard.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HadamardStep {
    /// Sign round r (D_{r+1}).
    pub round: u32,
    /// Tile pass: 0 reads the previous layer and applies φ; 1 works in place.
    pub mode: u32,
    /// Butterfly pass: the stage's half-span h.
    pub h: u32,
    /// Rows per tile T.
    pub tile: u32,
}

/// Rows per workgroup tile of the Hadamard transform (shaders/hadamard.wgsl `MAX_T`).
pub const HADAMARD_TILE: usize = 512;

/// The dispatches of one Hadamard layer at width n: per round, the tile
/// pass, then one pass per stage h ≥ T; then the finish pass.
#[derive(Debug, Clone, Copy, PartialEq)]
enum HadamardPass {
    Tile(usize),
    Stage(usize),
    Finish,
}

fn hadamard_plan(n: usize) -> (Vec<HadamardStep>, Vec<HadamardPass>) {
    let t = n.min(HADAMARD_TILE);
    let mut steps = Vec::new();
    let mut passes = Vec::new();
    for round in 0..crate::sim::hadamard::ROUNDS {
        passes.push(HadamardPass::Tile(steps.len()));
        steps.push(HadamardStep {
            round,
            mode: u32::from(round > 0),
            h: 0,
            tile: t as u32,
        });
        let mut h = t;
        while h < n {
            passes.push(HadamardPass::Stage(steps.len()));
            steps.push(HadamardStep {
                round,
                mode: 1,
                h: h as u32,
                tile: t as u32,
            });
            h *= 2;
        }
    }
    passes.push(HadamardPass::Finish);
    (steps, passes)
}

/// Workgroups (x, y) covering `threads` threads of 256 under the per-dimension limit.
fn spread(threads: usize, max_dim: u32) -> (u32, u32) {
    let groups = threads.div_ceil(256) as u64;
    let x = groups.min(u64::from(max_dim)).max(1);
    (x as u32, groups.div_ceil(x) as u32)
}

/// The names of the wgpu backends in `b`, for messages ("Vulkan, OpenGL").
pub fn backend_names(b: wgpu::Backends) -> String {
    let names: Vec<&str> = [
        (wgpu::Backends::VULKAN, "Vulkan"),
        (wgpu::Backends::METAL, "Metal"),
        (wgpu::Backends::DX12, "DX12"),
        (wgpu::Backends::GL, "OpenGL"),
        (wgpu::Backends::BROWSER_WEBGPU, "WebGPU"),
    ]
    .into_iter()
    .filter(|(f, _)| b.contains(*f))
    .map(|(_, n)| n)
    .collect();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// Which adapters a backend may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Only a hardware GPU (discrete, integrated or virtual).
    HardwareOnly,
    /// A hardware GPU if there is one, else a software adapter (lavapipe).
    PreferHardware,
}

/// An open device with its error reporting.
pub struct GpuContext {
    /// Adapter name, type, driver and backend.
    pub info: wgpu::AdapterInfo,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The limits granted (the adapter's own).
    pub limits: wgpu::Limits,
    /// Whether the device records timestamp queries (GPU-side timings).
    pub timestamps: bool,
    /// The optional features the device was opened with (timestamp
    /// queries, SHADER_INT64 where the adapter offers them).
    pub features: wgpu::Features,
    errors: Arc<Mutex<Vec<String>>>,
}

impl GpuContext {
    /// Opens the best adapter the policy allows, with all of its limits.
    pub fn new(policy: AdapterPolicy) -> Result<Self> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let tried = backend_names(desc.backends);
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        // wgpu's OpenGL backend runs compute shaders through GL emulation: far
        // slower than any Vulkan/Metal/DX12 adapter, lavapipe included, so it
        // ranks last, never counts as a hardware GPU, and is warned about.
        let rank = |a: &wgpu::Adapter| {
            let info = a.get_info();
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Other => 3,
                wgpu::DeviceType::Cpu => 4,
            };
            (u8::from(info.backend == wgpu::Backend::Gl), kind)
        };
        let seen: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend)
            })
            .collect();
        let adapter = adapters
            .into_iter()
            .filter(|a| policy == AdapterPolicy::PreferHardware || rank(a) <= (0, 2))
            .min_by_key(rank)
            .ok_or_else(|| {
                Error::Gpu(if seen.is_empty() {
                    format!(
                        "no GPU adapter found (tried wgpu's {tried} backend(s); none answered); \
                         on Debian/Ubuntu, `apt-get install mesa-vulkan-drivers` provides the \
                         software Vulkan adapter lavapipe"
                    )
                } else {
                    format!(
                        "no hardware GPU adapter among wgpu's {tried} backend(s) (found only: {})",
                        seen.join(", ")
                    )
                })
            })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        // SHADER_INT64: the `-int64` layer kernel variants (src/sim/kernel.rs).
        let features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_INT64);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("quantdepth"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Gpu(format!("could not open a device on {}: {e}", info.name)))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let lost = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut v) = lost.lock() {
                v.push(format!("device lost ({reason:?}): {msg}"));
            }
        });
        Ok(GpuContext {
            info,
            device,
            queue,
            limits,
            timestamps,
            features,
            errors,
        })
    }

    /// A one-line description of the adapter.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {})",
            self.info.name,
            self.info.device_type,
            self.info.backend,
            self.info.driver,
            self.info.driver_info
        )
    }

    /// Whether the adapter is a software rasterizer (lavapipe/llvmpipe).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether the adapter runs on wgpu's OpenGL backend (compute through GL:
    /// slow; taken only when no Vulkan, Metal or DX12 adapter answered).
    pub fn is_gl(&self) -> bool {
        self.info.backend == wgpu::Backend::Gl
    }

    /// The first error reported since the last check, as [`Error::Gpu`].
    pub fn check(&self) -> Result<()> {
        let mut v = self
            .errors
            .lock()
            .map_err(|_| Error::Gpu("error log poisoned".into()))?;
        if v.is_empty() {
            Ok(())
        } else {
            let msg = v.join("; ");
            v.clear();
            Err(Error::Gpu(msg))
        }
    }

    /// A shader module from WGSL, with its compile errors as [`Error::Gpu`].
    pub fn shader(&self, label: &str, source: String) -> Result<wgpu::ShaderModule> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(Cow::Owned(source)),
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("shader {label}: {e}")));
        }
        Ok(module)
    }

    /// A buffer, with allocation failure as [`Error::Gpu`].
    pub fn buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        if size > self.limits.max_buffer_size {
            return Err(Error::Gpu(format!(
                "buffer {label} needs {size} bytes, over this adapter's max_buffer_size of {}",
                self.limits.max_buffer_size
            )));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4),
            usage,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "out of GPU memory allocating {label} ({size} bytes): {e}"
            )));
        }
        Ok(buf)
    }

    /// Submits `encoder`, waits for it, and reads `size` bytes of `staging`
    /// (copied to in the encoder) as f32.
    pub fn submit_and_read(
        &self,
        encoder: wgpu::CommandEncoder,
        staging: &wgpu::Buffer,
        size: u64,
    ) -> Result<Vec<f32>> {
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
        self.check()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Gpu(format!("reading results back failed: {e}"))),
            Err(_) => return Err(Error::Gpu("the GPU never answered the read-back".into())),
        }
        let out = {
            let view = staging
                .get_mapped_range(0..size)
                .map_err(|e| Error::Gpu(format!("mapping the read-back buffer failed: {e}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        Ok(out)
    }
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn params_entry() -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<GpuParams>() as u64),
        },
        count: None,
    }
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

/// The batch columns per workgroup of the layer kernel for a batch.
pub fn tile_columns(batch: usize) -> u32 {
    match batch {
        0..=16 => 16,
        17..=32 => 32,
        _ => 64,
    }
}

/// The activation as the kernels see it: (kind, table of levels then
/// thresholds, 1/Δ, N/2, N).
fn activation_table(act: &SimActivation) -> (u32, Vec<f32>, f32, f32, usize) {
    match act {
        SimActivation::Uniform {
            inv_spacing,
            half_states,
            levels,
        } => (0, levels.clone(), *inv_spacing, *half_states, levels.len()),
        SimActivation::Steps { thresholds, levels } => {
            let mut t = levels.clone();
            t.extend(thresholds);
            (1, t, 0.0, 0.0, levels.len())
        }
        SimActivation::Tanh => (2, vec![0.0], 0.0, 0.0, 0),
        SimActivation::HardTanh => (3, vec![0.0], 0.0, 0.0, 0),
        SimActivation::Linear => (4, vec![0.0], 0.0, 0.0, 0),
    }
}

/// The buffers every pass of one network shares: per-layer parameters
/// (entry l at l·256 bytes), the quantizer table and the measured pairs.
struct SharedBuffers {
    params: wgpu::Buffer,
    table: wgpu::Buffer,
    pairs: wgpu::Buffer,
}

impl SharedBuffers {
    /// Builds and uploads them; `slot(l)` is the statistics slot of entry l.
    fn new(
        ctx: &GpuContext,
        spec: &SimSpec,
        meas: &Measurements,
        sample: u32,
        ste: Option<&crate::theory::backward::Ste>,
        slot: &dyn Fn(usize) -> u32,
    ) -> Result<Self> {
        let n = spec.width;
        let act = SimActivation::from_activation(&spec.activation);
        let (kind, table, inv_spacing, half_states, states) = activation_table(&act);
        let key = key_for(spec.seed);
        let base = GpuParams {
            layer: 0,
            sample,
            key0: key[0],
            key1: key[1],
            n: n as u32,
            batch: meas.batch as u32,
            kind,
            states: states as u32,
            inv_spacing,
            half_states,
            w_scale: match spec.weights {
                Weights::Hadamard => crate::sim::hadamard::hadamard_scale(spec.sigma_w, n),
                _ => weight_scale(spec.sigma_w, n),
            },
            b_scale: spec.sigma_b as f32,
            slot: 0,
            quantities: (meas.batch + meas.pairs.len()) as u32,
            groups: (n as u32).div_ceil(STATS_ROWS),
            rows_per_group: STATS_ROWS,
            ste_slope: ste.map_or(0.0, |s| s.slope as f32),
            ste_threshold: ste.map_or(0.0, |s| {
                if s.threshold.is_finite() {
                    s.threshold as f32
                } else {
                    f32::MAX
                }
            }),
            weights: match spec.weights {
                Weights::Gaussian => 0,
                Weights::Rademacher => 1,
                Weights::Hadamard => 2,
            },
            pad1: 0,
        };
        let mut params = vec![0u8; (spec.depth + 1) * PARAM_STRIDE as usize];
        for l in 1..=spec.depth {
            let p = GpuParams {
                layer: l as u32,
                slot: slot(l),
                ..base
            };
            let off = l * PARAM_STRIDE as usize;
            params[off..off + std::mem::size_of::<GpuParams>()]
                .copy_from_slice(bytemuck::bytes_of(&p));
        }
        let pairs: Vec<u32> = if meas.pairs.is_empty() {
            vec![0, 0]
        } else {
            meas.pairs.iter().flat_map(|&(a, b)| [a, b]).collect()
        };
        use wgpu::BufferUsages as U;
        let out = SharedBuffers {
            params: ctx.buffer(
                "layer parameters",
                params.len() as u64,
                U::UNIFORM | U::COPY_DST,
            )?,
            table: ctx.buffer(
                "quantizer table",
                (table.len() * 4) as u64,
                U::STORAGE | U::COPY_DST,
            )?,
            pairs: ctx.buffer(
                "measured pairs",
                (pairs.len() * 4) as u64,
                U::STORAGE | U::COPY_DST,
            )?,
        };
        ctx.queue.write_buffer(&out.params, 0, &params);
        ctx.queue
            .write_buffer(&out.table, 0, bytemuck::cast_slice(&table));
        ctx.queue
            .write_buffer(&out.pairs, 0, bytemuck::cast_slice(&pairs));
        Ok(out)
    }

    /// The parameter binding (one entry, selected by a dynamic offset).
    fn params_entry(&self) -> wgpu::BindGroupEntry<'_> {
        wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params,
                offset: 0,
                size: wgpu::BufferSize::new(std::mem::size_of::<GpuParams>() as u64),
            }),
        }
    }

    /// The dynamic offset of layer entry l.
    fn offset(l: usize) -> [u32; 1] {
        [(l as u64 * PARAM_STRIDE) as u32]
    }
}

/// Pipelines and their layouts, created once per device.
struct Kernels {
    layer_layout: wgpu::BindGroupLayout,
    stats_layout: wgpu::BindGroupLayout,
    hadamard_layout: wgpu::BindGroupLayout,
    /// hadamard.wgsl's tile_stages, butterfly_stage and finish.
    hadamard: [wgpu::ComputePipeline; 3],
    layer: Vec<(u32, wgpu::ComputePipeline)>,
    backward: Vec<(u32, wgpu::ComputePipeline)>,
    stats: wgpu::ComputePipeline,
}

impl Kernels {
    fn new(ctx: &GpuContext) -> Result<Self> {
        let d = &ctx.device;
        let layer_layout = d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("layer bind group layout"),
            entries: &[
                params_entry(),
                storage_entry(1, true),
                storage_entry(2, false),
                storage_entry(3, true),
            ],
        });
        let stats_layout = d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("stats bind group layout"),
            entries: &[
                params_entry(),
                storage_entry(1, true),
                storage_entry(2, true),
                storage_entry(3, false),
            ],
        });
        let mut step_entry = params_entry();
        step_entry.binding = 4;
        step_entry.ty = wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<HadamardStep>() as u64),
        };
        let hadamard_layout = d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("hadamard bind group layout"),
            entries: &[
                params_entry(),
                storage_entry(1, true),
                storage_entry(2, false),
                storage_entry(3, true),
                step_entry,
            ],
        });
        let pipeline_at = |label: &str,
                           layout: &wgpu::BindGroupLayout,
                           module: &wgpu::ShaderModule,
                           entry_point: &str|
         -> Result<wgpu::ComputePipeline> {
            let scope = d.push_error_scope(wgpu::ErrorFilter::Validation);
            let pl = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            });
            let p = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: Some(&pl),
                module,
                entry_point: Some(entry_point),
                compilation_options: Default::default(),
                cache: None,
            });
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(Error::Gpu(format!("pipeline {label}: {e}")));
            }
            Ok(p)
        };
        let pipeline =
            |label: &str, layout: &wgpu::BindGroupLayout, module: &wgpu::ShaderModule| {
                pipeline_at(label, layout, module, "main")
            };
        let hm = ctx.shader("hadamard.wgsl", shaders::hadamard())?;
        let hadamard = [
            pipeline_at("hadamard tile stages", &hadamard_layout, &hm, "tile_stages")?,
            pipeline_at(
                "hadamard butterfly stage",
                &hadamard_layout,
                &hm,
                "butterfly_stage",
            )?,
            pipeline_at("hadamard finish", &hadamard_layout, &hm, "finish")?,
        ];
        let mut layer = Vec::new();
        for tb in [16, 32, 64] {
            let m = ctx.shader(&format!("layer.wgsl TB={tb}"), shaders::layer(tb))?;
            layer.push((tb, pipeline(&format!("layer TB={tb}"), &layer_layout, &m)?));
        }
        // The backward kernel has the layer kernel's bindings (params, read, write, read).
        let mut backward = Vec::new();
        for tb in [16, 32, 64] {
            let m = ctx.shader(&format!("backward.wgsl TB={tb}"), shaders::backward(tb))?;
            backward.push((
                tb,
                pipeline(&format!("backward TB={tb}"), &layer_layout, &m)?,
            ));
        }
        let sm = ctx.shader("stats.wgsl", shaders::stats())?;
        let stats = pipeline("stats", &stats_layout, &sm)?;
        Ok(Kernels {
            layer_layout,
            stats_layout,
            hadamard_layout,
            hadamard,
            layer,
            backward,
            stats,
        })
    }

    fn backward_for(&self, batch: usize) -> &wgpu::ComputePipeline {
        let tb = tile_columns(batch);
        &self
            .backward
            .iter()
            .find(|(t, _)| *t == tb)
            .expect("all tile variants are built")
            .1
    }

    fn layer_for(&self, batch: usize) -> &wgpu::ComputePipeline {
        let tb = tile_columns(batch);
        &self
            .layer
            .iter()
            .find(|(t, _)| *t == tb)
            .expect("all tile variants are built")
            .1
    }
}

/// The GPU backend.
pub struct GpuBackend {
    ctx: GpuContext,
    kernels: Kernels,
    batch_limit: Option<usize>,
    /// GPU time of the layer passes since the last `device_seconds` call,
    /// from timestamp queries (when the adapter has them).
    gpu_seconds: std::cell::Cell<f64>,
    /// Layer kernel variants: the choice, the tuner, the compiled
    /// pipelines and the variants used so far.
    kernels_v: KernelState,
}

/// The GPU backend's layer-kernel variant state (src/sim/kernel.rs,
/// src/sim/autotune.rs).
struct KernelState {
    choice: KernelChoice,
    caps: DeviceCaps,
    tuner: std::cell::RefCell<Tuner>,
    pipelines: std::cell::RefCell<Vec<((KernelVariant, u32), VariantPipelines)>>,
    used: std::cell::RefCell<std::collections::BTreeSet<KernelVariant>>,
}

/// Layers timed per variant when tuning (after one warm-up layer).
const TUNE_LAYERS: usize = 3;

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
            gpu_seconds: std::cell::Cell::new(0.0),
            kernels_v: KernelState {
                choice: KernelChoice::Forced(KernelVariant::Tiled),
                caps,
                tuner: std::cell::RefCell::new(Tuner::new(None)),
                pipelines: std::cell::RefCell::new(Vec::new()),
                used: std::cell::RefCell::new(Default::default()),
            },
        })
    }

    /// Sets the layer kernel: a forced variant, or `Auto` (time the
    /// applicable variants on first use of each (n, B, weights) and keep
    /// the fastest, cached in `cache_dir`: see [`crate::sim::autotune`]).
    /// A backend starts with the reference kernel, `tiled`.
    pub fn set_kernel(&mut self, choice: KernelChoice, cache_dir: Option<std::path::PathBuf>) {
        self.kernels_v.choice = choice;
        self.kernels_v.used.borrow_mut().clear();
        self.kernels_v.tuner = std::cell::RefCell::new(Tuner::new(cache_dir));
    }

    /// Replaces the tuner (tests: injected warnings, a chosen cache folder).
    pub fn set_tuner(&mut self, tuner: Tuner) {
        self.kernels_v.tuner = std::cell::RefCell::new(tuner);
    }

    /// What the layer kernel variants depend on in this device.
    pub fn kernel_caps(&self) -> DeviceCaps {
        self.kernels_v.caps
    }

    /// The layer kernel variants used so far, in [`KernelVariant::ALL`] order.
    pub fn kernels_used(&self) -> Vec<KernelVariant> {
        self.kernels_v.used.borrow().iter().copied().collect()
    }

    /// The variant that runs layers of `spec` on `batch` inputs: the forced
    /// one (an error naming the applicable ones where it does not apply),
    /// or the tuned one; `None` for the Hadamard ensemble (its own kernels).
    fn layer_variant(
        &self,
        spec: &SimSpec,
        h0: &[f32],
        meas: &Measurements,
        sample: u32,
    ) -> Result<Option<KernelVariant>> {
        if spec.weights == Weights::Hadamard {
            return Ok(None);
        }
        let (n, batch) = (spec.width, meas.batch);
        let caps = &self.kernels_v.caps;
        let candidates = kernel::applicable(n, batch, caps);
        match self.kernels_v.choice {
            KernelChoice::Forced(v) if v.applicable(n, batch, caps) => Ok(Some(v)),
            KernelChoice::Forced(v) => Err(Error::invalid(
                "kernel",
                v,
                &format!(
                    "a variant that applies at n = {n}, B = {batch} on {}: {}",
                    self.ctx.info.name,
                    candidates
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            KernelChoice::Auto => {
                let key = TuneKey {
                    adapter: self.ctx.info.name.clone(),
                    backend: format!("{:?}", self.ctx.info.backend),
                    driver: self.ctx.info.driver.clone(),
                    driver_info: self.ctx.info.driver_info.clone(),
                    n,
                    batch,
                    weights: spec.weights.to_string(),
                };
                let mut time = |v: KernelVariant| self.time_variant(spec, h0, meas, sample, v);
                let chosen =
                    self.kernels_v
                        .tuner
                        .borrow_mut()
                        .choose(&key, &candidates, &mut time)?;
                Ok(Some(chosen.variant()))
            }
        }
    }

    /// Seconds per layer of `variant` on this chunk: one warm-up layer, then
    /// [`TUNE_LAYERS`] layers timed by the device's timestamps where it has
    /// them, else by the wall clock around submit and wait.
    fn time_variant(
        &self,
        spec: &SimSpec,
        h0: &[f32],
        meas: &Measurements,
        sample: u32,
        variant: KernelVariant,
    ) -> Result<f64> {
        let saved = self.gpu_seconds.get();
        let run = |depth: usize| {
            let s = SimSpec {
                depth,
                ..spec.clone()
            };
            self.run_chunk(
                &s,
                h0,
                meas,
                sample,
                &mut |_, _, _| Ok(()),
                false,
                Some(variant),
            )
        };
        run(1)?;
        self.gpu_seconds.set(0.0);
        let start = Instant::now();
        run(TUNE_LAYERS)?;
        let wall = start.elapsed().as_secs_f64();
        let device = self.gpu_seconds.get();
        self.gpu_seconds.set(saved);
        let secs = if self.ctx.timestamps && device > 0.0 {
            device
        } else {
            wall
        };
        Ok(secs / TUNE_LAYERS as f64)
    }

    /// The compiled pipelines of `variant` at `tb` (built on first use).
    fn variant_pipelines(&self, variant: KernelVariant, tb: u32) -> Result<VariantPipelines> {
        let tb = if variant.tiling() == kernel::Tiling::Wide {
            0
        } else {
            tb
        };
        if let Some((_, p)) = self
            .kernels_v
            .pipelines
            .borrow()
            .iter()
            .find(|(k, _)| *k == (variant, tb))
        {
            return Ok(p.clone());
        }
        let p = if variant == KernelVariant::Tiled {
            // The reference kernel is compiled with the backend.
            VariantPipelines {
                variant,
                main: self.kernels.layer_for(tb as usize).clone(),
                combine: None,
            }
        } else {
            VariantPipelines::new(&self.ctx, &self.kernels.layer_layout, variant, tb.max(16))?
        };
        self.kernels_v
            .pipelines
            .borrow_mut()
            .push(((variant, tb), p.clone()));
        Ok(p)
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

    /// Runs layers 1..=depth of one network on a batch chunk whose inputs
    /// are `h0` (feature-major), calling `deliver(layer, sumsq, dots)`.
    #[allow(clippy::type_complexity)]
    fn run_chunk(
        &self,
        spec: &SimSpec,
        h0: &[f32],
        meas: &Measurements,
        sample: u32,
        deliver: &mut dyn FnMut(usize, Vec<f64>, Vec<f64>) -> Result<()>,
        keep_last: bool,
        force: Option<KernelVariant>,
    ) -> Result<Option<Vec<f32>>> {
        let ctx = &self.ctx;
        let n = spec.width;
        let batch = meas.batch;
        // The layer kernel variant (tuned on first use under `auto`).
        let variant = match force {
            Some(v) => Some(v),
            None => self.layer_variant(spec, h0, meas, sample)?,
        };
        if let (Some(v), None) = (variant, force) {
            self.kernels_v.used.borrow_mut().insert(v);
        }
        let q = batch + meas.pairs.len();
        let groups = (n as u32).div_ceil(STATS_ROWS);
        let per_submit = MAX_LAYERS_PER_SUBMIT.min(spec.depth);
        let shared = SharedBuffers::new(ctx, spec, meas, sample, None, &|l| {
            ((l - 1) % per_submit) as u32
        })?;
        use wgpu::BufferUsages as U;
        let act_bytes = (n * batch * 4) as u64;
        let stats_bytes = (per_submit * q * groups as usize * 4) as u64;
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
            stats_bytes + 16,
            U::MAP_READ | U::COPY_DST,
        )?;
        let timing = if ctx.timestamps {
            let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("layer pass timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = ctx.buffer("timestamp resolve", 16, U::QUERY_RESOLVE | U::COPY_SRC)?;
            Some((set, resolve))
        } else {
            None
        };
        ctx.queue.write_buffer(&h[0], 0, bytemuck::cast_slice(h0));
        let params_binding = shared.params_entry();
        let layer_bg: Vec<wgpu::BindGroup> = (0..2)
            .map(|k| {
                ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("layer bind group"),
                    layout: &self.kernels.layer_layout,
                    entries: &[
                        params_binding.clone(),
                        entry(1, &h[k]),
                        entry(2, &h[1 - k]),
                        entry(3, &shared.table),
                    ],
                })
            })
            .collect();
        let stats_bg: Vec<wgpu::BindGroup> = (0..2)
            .map(|k| {
                ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("stats bind group"),
                    layout: &self.kernels.stats_layout,
                    entries: &[
                        params_binding.clone(),
                        entry(1, &h[k]),
                        entry(2, &shared.pairs),
                        entry(3, &stats_buf),
                    ],
                })
            })
            .collect();
        // The Hadamard layer's dispatch parameters, one 256-byte entry each.
        let (steps, passes) = hadamard_plan(n);
        let hadamard_bg: Vec<wgpu::BindGroup> = if spec.weights == Weights::Hadamard {
            let mut bytes = vec![0u8; steps.len() * PARAM_STRIDE as usize];
            for (k, st) in steps.iter().enumerate() {
                let off = k * PARAM_STRIDE as usize;
                bytes[off..off + std::mem::size_of::<HadamardStep>()]
                    .copy_from_slice(bytemuck::bytes_of(st));
            }
            let step_buf = ctx.buffer(
                "hadamard steps",
                bytes.len() as u64,
                U::UNIFORM | U::COPY_DST,
            )?;
            ctx.queue.write_buffer(&step_buf, 0, &bytes);
            (0..2)
                .map(|k| {
                    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("hadamard bind group"),
                        layout: &self.kernels.hadamard_layout,
                        entries: &[
                            params_binding.clone(),
                            entry(1, &h[k]),
                            entry(2, &h[1 - k]),
                            entry(3, &shared.table),
                            wgpu::BindGroupEntry {
                                binding: 4,
                                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: &step_buf,
                                    offset: 0,
                                    size: wgpu::BufferSize::new(
                                        std::mem::size_of::<HadamardStep>() as u64,
                                    ),
                                }),
                            },
                        ],
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
        let tile = n.min(HADAMARD_TILE);
        ctx.check()?;
        let pipes = match variant {
            Some(v) => Some(self.variant_pipelines(v, tile_columns(batch))?),
            None => None,
        };
        let wg = variant.map_or((1, 1, 1), |v| {
            v.workgroups(n, batch, self.kernels_v.caps.max_storage_binding)
        });
        // Split-K: S × n × B partial sums; the main pass writes them where
        // the layer writes its output, the combine pass reads them where the
        // layer reads its input (one bind group pair per parity).
        let split_bg: Vec<(wgpu::BindGroup, wgpu::BindGroup)> =
            if pipes.as_ref().is_some_and(|p| p.combine.is_some()) {
                let partial = ctx.buffer(
                    "split-K partial sums",
                    u64::from(wg.2) * act_bytes,
                    U::STORAGE,
                )?;
                (0..2)
                    .map(|k| {
                        let bg = |label, a: &wgpu::Buffer, b: &wgpu::Buffer| {
                            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                                label: Some(label),
                                layout: &self.kernels.layer_layout,
                                entries: &[
                                    params_binding.clone(),
                                    entry(1, a),
                                    entry(2, b),
                                    entry(3, &shared.table),
                                ],
                            })
                        };
                        (
                            bg("split-K bind group", &h[k], &partial),
                            bg("combine bind group", &partial, &h[1 - k]),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            };
        let combine_wg = spread(n * batch, max_dim);
        let mut next = 1usize;
        let mut chunk = 1usize;
        while next <= spec.depth {
            let count = chunk
                .min(spec.depth - next + 1)
                .min(per_submit - (next - 1) % per_submit);
            let start = Instant::now();
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("layers"),
                });
            {
                let timestamp_writes =
                    timing
                        .as_ref()
                        .map(|(set, _)| wgpu::ComputePassTimestampWrites {
                            query_set: set,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        });
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("layers"),
                    timestamp_writes,
                });
                for l in next..next + count {
                    let offset = SharedBuffers::offset(l);
                    if spec.weights == Weights::Hadamard {
                        let bg = &hadamard_bg[(l - 1) % 2];
                        for pass_kind in &passes {
                            let (pipe, k, groups) = match *pass_kind {
                                HadamardPass::Tile(k) => (
                                    &self.kernels.hadamard[0],
                                    k,
                                    (batch.div_ceil(4) as u32, (n / tile) as u32),
                                ),
                                HadamardPass::Stage(k) => {
                                    (&self.kernels.hadamard[1], k, spread(n / 2 * batch, max_dim))
                                }
                                HadamardPass::Finish => {
                                    (&self.kernels.hadamard[2], 0, spread(n * batch, max_dim))
                                }
                            };
                            pass.set_pipeline(pipe);
                            pass.set_bind_group(
                                0,
                                bg,
                                &[offset[0], (k as u64 * PARAM_STRIDE) as u32],
                            );
                            pass.dispatch_workgroups(groups.0, groups.1, 1);
                        }
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
                    pass.set_pipeline(&self.kernels.stats);
                    pass.set_bind_group(0, &stats_bg[l % 2], &offset);
                    pass.dispatch_workgroups(q as u32, groups, 1);
                }
            }
            let first_slot = (next - 1) % per_submit;
            let unit = (q * groups as usize * 4) as u64;
            let stats_len = count as u64 * unit;
            enc.copy_buffer_to_buffer(&stats_buf, first_slot as u64 * unit, &staging, 0, stats_len);
            if let Some((set, resolve)) = &timing {
                enc.resolve_query_set(set, 0..2, resolve, 0);
                enc.copy_buffer_to_buffer(resolve, 0, &staging, stats_len, 16);
            }
            let read_len = stats_len + if timing.is_some() { 16 } else { 0 };
            let mut raw = ctx.submit_and_read(enc, &staging, read_len)?;
            if timing.is_some() {
                let t: Vec<u32> = raw
                    .split_off(raw.len() - 4)
                    .iter()
                    .map(|x| x.to_bits())
                    .collect();
                let t0 = u64::from(t[0]) | (u64::from(t[1]) << 32);
                let t1 = u64::from(t[2]) | (u64::from(t[3]) << 32);
                let ns = t1.saturating_sub(t0) as f64 * f64::from(ctx.queue.get_timestamp_period());
                self.gpu_seconds.set(self.gpu_seconds.get() + ns * 1e-9);
            }
            for (k, layer_raw) in raw.chunks_exact(q * groups as usize).enumerate() {
                let mut vals = vec![0f64; q];
                for (v, parts) in vals.iter_mut().zip(layer_raw.chunks_exact(groups as usize)) {
                    *v = parts.iter().map(|&x| f64::from(x)).sum();
                }
                let dots = vals.split_off(batch);
                deliver(next + k, vals, dots)?;
            }
            let secs = start.elapsed().as_secs_f64().max(1e-6);
            let per_layer = secs / count as f64;
            chunk = ((SUBMIT_SECONDS / per_layer) as usize).clamp(1, per_submit);
            next += count;
        }
        if !keep_last {
            return Ok(None);
        }
        let last = ctx.buffer(
            "activations read-back",
            act_bytes,
            U::MAP_READ | U::COPY_DST,
        )?;
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read activations"),
            });
        enc.copy_buffer_to_buffer(&h[spec.depth % 2], 0, &last, 0, act_bytes);
        Ok(Some(ctx.submit_and_read(enc, &last, act_bytes)?))
    }

    /// One network's forward pass (every layer kept) and STE backward pass
    /// on the GPU. Returns the sums of squares and pair dot products of the
    /// gradients δ^l for l = 0..=L (δ^L = `output_gradient`, feature-major)
    /// and the forward pre-activations h^0..h^{L−1}.
    #[allow(clippy::type_complexity)]
    pub fn backward_sample(
        &self,
        spec: &SimSpec,
        ste: &crate::theory::backward::Ste,
        inputs: &[Vec<f64>],
        output_gradient: &[f32],
        sample: u32,
    ) -> Result<(Vec<(Vec<f64>, Vec<f64>)>, Vec<Vec<f32>>)> {
        let ctx = &self.ctx;
        let (n, depth) = (spec.width, spec.depth);
        if spec.weights != Weights::Gaussian {
            return Err(Error::Gpu(format!(
                "the GPU backward kernel generates gaussian weights; {} weights run backward on the CPU backend",
                spec.weights
            )));
        }
        let meas = spec.measurements();
        let batch = meas.batch;
        if batch > self.max_batch(n) {
            return Err(Error::Gpu(format!(
                "batch {batch} is over this adapter's limit for one backward pass"
            )));
        }
        let q = batch + meas.pairs.len();
        let groups = (n as u32).div_ceil(STATS_ROWS);
        // Entry l (weights of layer l) serves the forward layer l and the
        // backward step to δ^{l−1}, whose statistics go to slot l − 1.
        let shared = SharedBuffers::new(ctx, spec, &meas, sample, Some(ste), &|l| (l - 1) as u32)?;
        use wgpu::BufferUsages as U;
        let act_bytes = (n * batch * 4) as u64;
        let hs: Vec<wgpu::Buffer> = (0..=depth)
            .map(|l| {
                ctx.buffer(
                    &format!("forward layer {l}"),
                    act_bytes,
                    U::STORAGE | U::COPY_DST | U::COPY_SRC,
                )
            })
            .collect::<Result<_>>()?;
        let deltas = [
            ctx.buffer("gradient A", act_bytes, U::STORAGE | U::COPY_DST)?,
            ctx.buffer("gradient B", act_bytes, U::STORAGE)?,
        ];
        let stats_bytes = (depth.max(1) * q * groups as usize * 4) as u64;
        let stats_buf = ctx.buffer("gradient statistics", stats_bytes, U::STORAGE | U::COPY_SRC)?;
        let staging = ctx.buffer(
            "gradient statistics read-back",
            stats_bytes,
            U::MAP_READ | U::COPY_DST,
        )?;
        ctx.queue
            .write_buffer(&hs[0], 0, bytemuck::cast_slice(&feature_major(inputs, n)));
        ctx.queue
            .write_buffer(&deltas[0], 0, bytemuck::cast_slice(output_gradient));
        let params_binding = shared.params_entry();
        let bind = |label: &str, layout: &wgpu::BindGroupLayout, b: [&wgpu::Buffer; 3]| {
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout,
                entries: &[
                    params_binding.clone(),
                    entry(1, b[0]),
                    entry(2, b[1]),
                    entry(3, b[2]),
                ],
            })
        };
        let tb = tile_columns(batch) as usize;
        let wg = (batch.div_ceil(tb) as u32, (n as u32).div_ceil(64));
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("forward and backward"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward and backward"),
                timestamp_writes: None,
            });
            pass.set_pipeline(self.kernels.layer_for(batch));
            for l in 1..=depth {
                let bg = bind(
                    "forward layer",
                    &self.kernels.layer_layout,
                    [&hs[l - 1], &hs[l], &shared.table],
                );
                pass.set_bind_group(0, &bg, &SharedBuffers::offset(l));
                pass.dispatch_workgroups(wg.0, wg.1, 1);
            }
            // δ^l from δ^{l+1} with the weights of layer l + 1, masked at h^l.
            for l in (0..depth).rev() {
                let (src, dst) = (&deltas[(depth - l - 1) % 2], &deltas[(depth - l) % 2]);
                let offset = SharedBuffers::offset(l + 1);
                let bg = bind(
                    "backward layer",
                    &self.kernels.layer_layout,
                    [src, dst, &hs[l]],
                );
                pass.set_pipeline(self.kernels.backward_for(batch));
                pass.set_bind_group(0, &bg, &offset);
                pass.dispatch_workgroups(wg.0, wg.1, 1);
                let sg = bind(
                    "gradient stats",
                    &self.kernels.stats_layout,
                    [dst, &shared.pairs, &stats_buf],
                );
                pass.set_pipeline(&self.kernels.stats);
                pass.set_bind_group(0, &sg, &offset);
                pass.dispatch_workgroups(q as u32, groups, 1);
            }
        }
        enc.copy_buffer_to_buffer(&stats_buf, 0, &staging, 0, stats_bytes);
        let raw = ctx.submit_and_read(enc, &staging, stats_bytes)?;
        let mut delta_stats = vec![(Vec::new(), Vec::new()); depth + 1];
        delta_stats[depth] = block_stats(output_gradient, batch, &meas);
        for (l, layer_raw) in raw
            .chunks_exact(q * groups as usize)
            .take(depth)
            .enumerate()
        {
            let mut vals: Vec<f64> = layer_raw
                .chunks_exact(groups as usize)
                .map(|g| g.iter().map(|&x| f64::from(x)).sum())
                .collect();
            let dots = vals.split_off(batch);
            delta_stats[l] = (vals, dots);
        }
        let mut forward = Vec::with_capacity(depth);
        for h in hs.iter().take(depth) {
            let read = ctx.buffer("forward read-back", act_bytes, U::MAP_READ | U::COPY_DST)?;
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("read forward layer"),
                });
            enc.copy_buffer_to_buffer(h, 0, &read, 0, act_bytes);
            forward.push(ctx.submit_and_read(enc, &read, act_bytes)?);
        }
        Ok((delta_stats, forward))
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
        let out = self.run_chunk(spec, &h0, &meas, sample, &mut |_, _, _| Ok(()), true, None)?;
        out.ok_or_else(|| Error::Gpu("no activations were read back".into()))
    }
}

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        let used = self.kernels_used();
        BackendInfo {
            backend: "gpu".into(),
            adapter: self.ctx.describe(),
            // The variants that ran (several when sizes differ), else the choice.
            kernel: Some(if used.is_empty() {
                self.kernels_v.choice.name().to_string()
            } else {
                used.iter().map(|v| v.name()).collect::<Vec<_>>().join(",")
            }),
        }
    }

    fn backward(
        &mut self,
        spec: &SimSpec,
        ste: &crate::theory::backward::Ste,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<Vec<crate::sim::backward::BackwardCurve>> {
        crate::sim::backward::simulate_backward(spec, ste, cancel, Some(self))
    }

    fn device_seconds(&mut self) -> Option<f64> {
        self.ctx.timestamps.then(|| self.gpu_seconds.replace(0.0))
    }

    fn run_sample(
        &mut self,
        spec: &SimSpec,
        inputs: &[Vec<f64>],
        sample: u32,
        sink: &mut LayerSink<'_>,
    ) -> Result<()> {
        let n = spec.width;
        let meas = spec.measurements();
        let h0_all = feature_major(inputs, n);
        let (s0, d0) = block_stats(&h0_all, meas.batch, &meas);
        sink(0, &s0, &d0)?;
        let max_batch = self.max_batch(n);
        if meas.batch <= max_batch {
            return self
                .run_chunk(
                    spec,
                    &h0_all,
                    &meas,
                    sample,
                    &mut |l, s, d| sink(l, &s, &d),
                    false,
                    None,
                )
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
            self.run_chunk(
                spec,
                &h0,
                &chunk_meas,
                sample,
                &mut |l, s, d| {
                    sumsq[l][c0..c1].copy_from_slice(&s);
                    dots[l][c0 / 2..c1 / 2].copy_from_slice(&d);
                    Ok(())
                },
                false,
                None,
            )?;
        }
        for l in 1..=spec.depth {
            sink(l, &sumsq[l], &dots[l])?;
        }
        Ok(())
    }
}
