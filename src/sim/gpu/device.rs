//! Device plumbing shared by every GPU stage (the simulator's and the
//! trainer's): adapter choice, the open device and its error reporting,
//! buffers and shader modules behind error scopes, bind-group layouts and
//! pipelines, parameter slots, read-back, and timestamp queries.

use crate::error::{Error, Result};
use std::borrow::Cow;
use std::sync::{mpsc, Arc, Mutex};

/// Bytes between parameter slots of a uniform buffer bound with a dynamic
/// offset (WebGPU's largest `minUniformBufferOffsetAlignment`).
pub const SLOT_STRIDE: u64 = 256;

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
                // "llvmpipe (LLVM 15.0.6, 256 bits)" → "llvmpipe": the driver's version
                // detail would double the line.
                let name = i.name.split(" (").next().unwrap_or(&i.name);
                format!("{name} ({:?}, {:?})", i.device_type, i.backend)
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
        // SHADER_INT64: the `-int64` layer kernel variants (variant.rs).
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

    /// `make()` inside an error scope of `filter`; an error caught there
    /// becomes [`Error::Gpu`] with the message `what(error)`.
    fn scoped<T>(
        &self,
        filter: wgpu::ErrorFilter,
        make: impl FnOnce() -> T,
        what: impl FnOnce(wgpu::Error) -> String,
    ) -> Result<T> {
        let scope = self.device.push_error_scope(filter);
        let made = make();
        match pollster::block_on(scope.pop()) {
            Some(e) => Err(Error::Gpu(what(e))),
            None => Ok(made),
        }
    }

    /// A shader module from WGSL, with its compile errors as [`Error::Gpu`].
    pub fn shader(&self, label: &str, source: String) -> Result<wgpu::ShaderModule> {
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(Cow::Owned(source)),
        };
        self.scoped(
            wgpu::ErrorFilter::Validation,
            || self.device.create_shader_module(desc),
            |e| format!("shader {label}: {e}"),
        )
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
        let desc = wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4),
            usage,
            mapped_at_creation: false,
        };
        self.scoped(
            wgpu::ErrorFilter::OutOfMemory,
            || self.device.create_buffer(&desc),
            |e| format!("out of GPU memory allocating {label} ({size} bytes): {e}"),
        )
    }

    /// A bind-group layout for compute: binding 0 a uniform of `uniform_size`
    /// bytes bound with a dynamic offset, then one storage buffer per entry
    /// of `read_only` (bindings 1, 2, …), then `extra` entries as given.
    pub fn layout(
        &self,
        label: &str,
        uniform_size: usize,
        read_only: &[bool],
        extra: &[wgpu::BindGroupLayoutEntry],
    ) -> wgpu::BindGroupLayout {
        let mut entries = vec![uniform_entry(0, uniform_size)];
        entries.extend(
            read_only
                .iter()
                .enumerate()
                .map(|(i, &ro)| storage_entry(i as u32 + 1, ro)),
        );
        entries.extend_from_slice(extra);
        self.device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries: &entries,
            })
    }

    /// A compute pipeline of `module`'s `entry_point` under `layout`, with
    /// validation errors as [`Error::Gpu`].
    pub fn pipeline(
        &self,
        label: &str,
        layout: &wgpu::BindGroupLayout,
        module: &wgpu::ShaderModule,
        entry_point: &str,
    ) -> Result<wgpu::ComputePipeline> {
        let d = &self.device;
        let make = || {
            let pl = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            });
            d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: Some(&pl),
                module,
                entry_point: Some(entry_point),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        self.scoped(wgpu::ErrorFilter::Validation, make, |e| {
            format!("pipeline {label}: {e}")
        })
    }

    /// A bind group of `layout`: `uniform` at binding 0, then `buffers` whole
    /// at bindings 1, 2, ….
    pub fn bind_group(
        &self,
        label: &str,
        layout: &wgpu::BindGroupLayout,
        uniform: wgpu::BindGroupEntry<'_>,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let mut entries = vec![uniform];
        entries.extend(
            buffers
                .iter()
                .enumerate()
                .map(|(i, b)| whole(i as u32 + 1, b)),
        );
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout,
            entries: &entries,
        })
    }

    /// A command encoder (its passes: [`compute_pass`]).
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
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

    /// The first `size` bytes of `src` as f32, through a fresh staging
    /// buffer (waits for the queue).
    pub fn read(&self, label: &str, src: &wgpu::Buffer, size: u64) -> Result<Vec<f32>> {
        let staging = self.buffer(
            label,
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut enc = self.encoder(label);
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        self.submit_and_read(enc, &staging, size)
    }

    /// A pair of timestamp queries around one compute pass, where the
    /// adapter has them.
    pub fn pass_timer(&self, label: &str) -> Result<Option<PassTimer>> {
        if !self.timestamps {
            return Ok(None);
        }
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some(label),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = self.buffer(
            "timestamp resolve",
            PassTimer::BYTES,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        )?;
        Ok(Some(PassTimer { set, resolve }))
    }
}

/// Timestamps written at the start and end of a compute pass.
pub struct PassTimer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
}

impl PassTimer {
    /// Bytes of the two resolved timestamps.
    pub const BYTES: u64 = 16;

    /// The pass's timestamp writes.
    pub fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// Resolves the two timestamps and copies them to `staging` at `offset`.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder, staging: &wgpu::Buffer, offset: u64) {
        enc.resolve_query_set(&self.set, 0..2, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, staging, offset, Self::BYTES);
    }

    /// Seconds between the two timestamps, from the last four words of
    /// `raw` (removed from it).
    pub fn take_seconds(raw: &mut Vec<f32>, queue: &wgpu::Queue) -> f64 {
        let t: Vec<u32> = raw
            .split_off(raw.len() - 4)
            .iter()
            .map(|x| x.to_bits())
            .collect();
        let t0 = u64::from(t[0]) | (u64::from(t[1]) << 32);
        let t1 = u64::from(t[2]) | (u64::from(t[3]) << 32);
        let ns = t1.saturating_sub(t0) as f64 * f64::from(queue.get_timestamp_period());
        ns * 1e-9
    }
}

/// A compute pass in `enc`, labelled, without timestamps.
pub fn compute_pass<'e>(enc: &'e mut wgpu::CommandEncoder, label: &str) -> wgpu::ComputePass<'e> {
    enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    })
}

/// A storage-buffer layout entry.
pub fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
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

/// A uniform layout entry of `size` bytes bound with a dynamic offset.
pub fn uniform_entry(binding: u32, size: usize) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(size as u64),
        },
        count: None,
    }
}

/// A whole buffer at `binding`.
pub fn whole(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

/// One `size`-byte slot of `buffer` at `binding` (the slot is chosen by a
/// dynamic offset).
pub fn slot(binding: u32, buffer: &wgpu::Buffer, size: usize) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: 0,
            size: wgpu::BufferSize::new(size as u64),
        }),
    }
}

/// `count` parameter slots, [`SLOT_STRIDE`] bytes apart, holding the
/// given (slot, value) pairs (the other slots zero).
pub fn pack_slots<T: bytemuck::Pod>(
    count: usize,
    values: impl IntoIterator<Item = (usize, T)>,
) -> Vec<u8> {
    let stride = SLOT_STRIDE as usize;
    let mut bytes = vec![0u8; count * stride];
    for (k, v) in values {
        let off = k * stride;
        bytes[off..off + std::mem::size_of::<T>()].copy_from_slice(bytemuck::bytes_of(&v));
    }
    bytes
}

/// Workgroups (x, y) covering `threads` threads of 256 under the per-dimension limit.
pub fn spread(threads: usize, max_dim: u32) -> (u32, u32) {
    let groups = threads.div_ceil(256) as u64;
    let x = groups.min(u64::from(max_dim)).max(1);
    (x as u32, groups.div_ceil(x) as u32)
}
