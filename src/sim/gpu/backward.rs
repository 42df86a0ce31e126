//! The backward stage on the GPU (`shaders/backward.wgsl`): one network's
//! forward pass with every layer kept, then the straight-through backward
//! pass δ^l = s·1{|h^l| ≤ t}·(σ_w/√n)·(W^{l+1})ᵀ δ^{l+1} through the same
//! generated weights, with the statistics kernel measuring each δ^l. Its CPU
//! twin is [`crate::sim::layer::LayerWeights::transposed`] (one step) and
//! [`crate::sim::backward::cpu_sample`] (one network). The step follows the
//! forward layer's variant ([`KernelVariant::backward`]): tiled, split-K
//! (backward.wgsl with SPLIT, then layer_combine.wgsl with BACKWARD), or
//! wide/wide256 (`shaders/layer_wide.wgsl` with BACKWARD: one generated
//! weight tile serves 128/256 columns), each with the 16-bit-limb or the
//! u64 (mul64.wgsl) Philox multiply.

use super::device::{self, compute_pass, GpuContext};
use super::layer::{tile_columns, workgroups, VariantCache, VariantPipelines};
use super::params::SharedBuffers;
use super::variant::{self, KernelVariant, Tiling};
use super::{shaders, stats, GpuBackend};
use crate::error::{Error, Result};
use crate::sim::spec::{feature_major, SimSpec, Weights};
use crate::sim::stats::block_stats;
use crate::sim::{GradientPass, SampleGradients};
use crate::theory::backward::Ste;

/// The backward pipelines: the tiled step per tile width, built with the
/// backend, and the other backward variants ([`KernelVariant::backward`]:
/// `tiled-int64`, `splitk`, `wide`, `wide256`, each ± int64) built on first
/// use; they bind
/// like the layer kernel (parameters, δ in, δ out, h^l).
pub struct BackwardKernels {
    variants: Vec<(u32, wgpu::ComputePipeline)>,
    others: VariantCache,
}

impl BackwardKernels {
    /// Compiles backward.wgsl for 16, 32 and 64 batch columns per workgroup
    /// under the layer kernel's bind-group layout.
    pub fn new(ctx: &GpuContext, layout: &wgpu::BindGroupLayout) -> Result<Self> {
        let mut variants = Vec::new();
        for tb in [16, 32, 64] {
            let m = ctx.shader(&format!("backward.wgsl TB={tb}"), shaders::backward(tb))?;
            variants.push((
                tb,
                ctx.pipeline(&format!("backward TB={tb}"), layout, &m, "main")?,
            ));
        }
        Ok(BackwardKernels {
            variants,
            others: VariantCache::default(),
        })
    }

    /// The pipelines of the backward variant `variant` (one of
    /// [`KernelVariant::backward`]'s) for a batch: the step, and for
    /// split-K the combine pass.
    fn pipelines(
        &self,
        ctx: &GpuContext,
        layout: &wgpu::BindGroupLayout,
        variant: KernelVariant,
        batch: usize,
    ) -> Result<VariantPipelines> {
        let tb = tile_columns(batch);
        if variant == KernelVariant::Tiled {
            return Ok(VariantPipelines {
                main: shaders::variant(&self.variants, tb).clone(),
                combine: None,
            });
        }
        // The wide tilings have one tile width whatever the batch.
        let tb = match variant.tiling() {
            Tiling::Wide | Tiling::Wide256 => 0,
            _ => tb,
        };
        self.others.get_or_build(
            ctx,
            layout,
            "backward",
            (variant, tb),
            || variant::backward_source(variant, tb.max(16)),
            || variant::backward_combine_source(variant.int64()),
        )
    }
}

/// One backward step as a variant runs it: its pipelines, its grid, and
/// for split-K the partial sums and the combine pass's grid.
struct BackwardStep {
    pipes: VariantPipelines,
    wg: (u32, u32, u32),
    partial: Option<wgpu::Buffer>,
    combine_wg: (u32, u32),
}

impl BackwardStep {
    /// The step of backward variant `variant` at width n on `batch` inputs.
    fn new(b: &GpuBackend, variant: KernelVariant, n: usize, batch: usize) -> Result<Self> {
        let ctx = &b.ctx;
        let pipes = b
            .kernels
            .backward
            .pipelines(ctx, &b.kernels.layer.layout, variant, batch)?;
        let wg = variant.workgroups(n, batch, b.kernel.caps.max_storage_binding);
        let partial = match pipes.combine {
            Some(_) => Some(ctx.buffer(
                "split-K gradient partial sums",
                u64::from(wg.2) * (n * batch * 4) as u64,
                wgpu::BufferUsages::STORAGE,
            )?),
            None => None,
        };
        let combine_wg = device::spread(n * batch, ctx.limits.max_compute_workgroups_per_dimension);
        Ok(BackwardStep {
            pipes,
            wg,
            partial,
            combine_wg,
        })
    }

    /// Records δ^l (`dst`) from δ^{l+1} (`src`) with the weights of the
    /// layer whose parameters sit at `offset`, masked at h^l (`h`).
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        b: &GpuBackend,
        pass: &mut wgpu::ComputePass<'_>,
        shared: &SharedBuffers,
        offset: &[u32],
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        h: &wgpu::Buffer,
    ) {
        let (ctx, layout) = (&b.ctx, &b.kernels.layer.layout);
        let bind = |buffers: &[&wgpu::Buffer]| {
            ctx.bind_group("backward layer", layout, shared.params_entry(), buffers)
        };
        pass.set_pipeline(&self.pipes.main);
        match (&self.pipes.combine, &self.partial) {
            (Some(combine), Some(partial)) => {
                pass.set_bind_group(0, &bind(&[src, partial, h]), offset);
                pass.dispatch_workgroups(self.wg.0, self.wg.1, self.wg.2);
                pass.set_pipeline(combine);
                pass.set_bind_group(0, &bind(&[partial, dst, h]), offset);
                pass.dispatch_workgroups(self.combine_wg.0, self.combine_wg.1, 1);
            }
            _ => {
                pass.set_bind_group(0, &bind(&[src, dst, h]), offset);
                pass.dispatch_workgroups(self.wg.0, self.wg.1, self.wg.2);
            }
        }
    }
}

impl GpuBackend {
    /// One backward step on the GPU, for tests: δ^{L−1} =
    /// s·1{|h^{L−1}| ≤ t}·(σ_w/√n)·(W^L)ᵀ δ^L with the weights of layer
    /// L = `spec.depth` of network `sample`, `delta` = δ^L and `h` =
    /// h^{L−1} (both feature-major, n × B), run by the backward form of
    /// the layer variant `variant` ([`KernelVariant::backward`]). Its CPU
    /// twin is [`crate::sim::layer::LayerWeights::transposed`], then the mask.
    pub fn backward_step(
        &self,
        spec: &SimSpec,
        ste: &Ste,
        variant: KernelVariant,
        delta: &[f32],
        h: &[f32],
        sample: u32,
    ) -> Result<Vec<f32>> {
        spec.validate()?;
        let ctx = &self.ctx;
        let meas = spec.measurements();
        let (n, batch, depth) = (spec.width, meas.batch, spec.depth);
        let len = n * batch;
        if delta.len() != len || h.len() != len {
            return Err(Error::Gpu(format!(
                "a backward step at n = {n}, B = {batch} takes {len} gradients and pre-activations, not {} and {}",
                delta.len(),
                h.len()
            )));
        }
        if !variant.applicable(n, batch, &self.kernel.caps) {
            return Err(Error::invalid(
                "kernel variant",
                variant,
                &format!("a variant that applies at n = {n}, B = {batch}"),
            ));
        }
        let shared = SharedBuffers::new(ctx, spec, &meas, sample, Some(ste), &|l| (l - 1) as u32)?;
        use wgpu::BufferUsages as U;
        let bytes = (len * 4) as u64;
        let src = ctx.buffer("gradient in", bytes, U::STORAGE | U::COPY_DST)?;
        let dst = ctx.buffer("gradient out", bytes, U::STORAGE | U::COPY_SRC)?;
        let hb = ctx.buffer("pre-activations", bytes, U::STORAGE | U::COPY_DST)?;
        ctx.queue.write_buffer(&src, 0, bytemuck::cast_slice(delta));
        ctx.queue.write_buffer(&hb, 0, bytemuck::cast_slice(h));
        let step = BackwardStep::new(self, variant.backward(), n, batch)?;
        let mut enc = ctx.encoder("backward step");
        {
            let mut pass = compute_pass(&mut enc, "backward step");
            let offset = SharedBuffers::offset(depth);
            step.record(self, &mut pass, &shared, &offset, &src, &dst, &hb);
        }
        ctx.queue.submit([enc.finish()]);
        ctx.read("backward step read-back", &dst, bytes)
    }
}

/// One network's forward pass (every layer kept) and STE backward pass on
/// the GPU: the sums of squares and pair dot products of the gradients δ^l
/// for l = 0..=L (δ^L = `output_gradient`, feature-major) and the forward
/// pre-activations h^0..h^{L−1}.
impl GradientPass for GpuBackend {
    fn sample_gradients(
        &self,
        spec: &SimSpec,
        ste: &Ste,
        inputs: &[Vec<f64>],
        output_gradient: &[f32],
        sample: u32,
    ) -> Result<SampleGradients> {
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
        // The backward step follows the forward pass's variant (forced, or
        // tuned for the forward layer at this (n, B)); the forward layers
        // here run that variant too where it is one pass (wide, wide256),
        // else the tiled kernel with its multiply (split-K forward layers
        // would need its partial sums and combine pass here too; a stacked
        // one runs several networks, the backward pass one).
        let h0 = feature_major(inputs, n);
        let chosen = self
            .layer_variant(spec, &h0, &meas, sample)?
            .unwrap_or(KernelVariant::Tiled);
        self.kernel
            .used
            .borrow_mut()
            .insert((n, batch, spec.weights.name()), chosen);
        let back = chosen.backward();
        let forward = match chosen.tiling() {
            Tiling::Wide | Tiling::Wide256 => chosen,
            Tiling::Tiled | Tiling::SplitK | Tiling::Stacked if chosen.int64() => {
                KernelVariant::TiledInt64
            }
            Tiling::Tiled | Tiling::SplitK | Tiling::Stacked => KernelVariant::Tiled,
        };
        let forward_pipe = self.kernels.layer.variant(ctx, forward, batch)?.main;
        let step = BackwardStep::new(self, back, n, batch)?;
        let q = batch + meas.pairs.len();
        let groups = stats::groups(n);
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
        ctx.queue.write_buffer(&hs[0], 0, bytemuck::cast_slice(&h0));
        ctx.queue
            .write_buffer(&deltas[0], 0, bytemuck::cast_slice(output_gradient));
        let kernels = &self.kernels;
        let wg = match forward.tiling() {
            Tiling::Wide | Tiling::Wide256 => {
                forward.workgroups(n, batch, self.kernel.caps.max_storage_binding)
            }
            _ => {
                let (x, y) = workgroups(n, batch);
                (x, y, 1)
            }
        };
        let mut enc = ctx.encoder("forward and backward");
        {
            let mut pass = compute_pass(&mut enc, "forward and backward");
            pass.set_pipeline(&forward_pipe);
            for l in 1..=depth {
                let bg = kernels.layer.bind_group(ctx, &shared, &hs[l - 1], &hs[l]);
                pass.set_bind_group(0, &bg, &SharedBuffers::offset(l));
                pass.dispatch_workgroups(wg.0, wg.1, wg.2);
            }
            // δ^l from δ^{l+1} with the weights of layer l + 1, masked at h^l.
            for l in (0..depth).rev() {
                let (src, dst) = (&deltas[(depth - l - 1) % 2], &deltas[(depth - l) % 2]);
                let offset = SharedBuffers::offset(l + 1);
                step.record(self, &mut pass, &shared, &offset, src, dst, &hs[l]);
                let sg = kernels.stats.bind_group(ctx, &shared, dst, &stats_buf);
                kernels.stats.record(&mut pass, &sg, &offset, q, n);
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
            delta_stats[l] = stats::reduce(layer_raw, groups, batch);
        }
        let forward = hs
            .iter()
            .take(depth)
            .map(|h| ctx.read("forward read-back", h, act_bytes))
            .collect::<Result<_>>()?;
        Ok(SampleGradients {
            delta: delta_stats,
            forward,
        })
    }
}
