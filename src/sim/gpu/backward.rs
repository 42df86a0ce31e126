//! The backward stage on the GPU (`shaders/backward.wgsl`): one network's
//! forward pass with every layer kept, then the straight-through backward
//! pass δ^l = s·1{|h^l| ≤ t}·(σ_w/√n)·(W^{l+1})ᵀ δ^{l+1} through the same
//! generated weights, with the statistics kernel measuring each δ^l. Its CPU
//! twin is [`crate::sim::layer::LayerWeights::transposed`] (one step) and
//! [`crate::sim::backward::cpu_sample`] (one network).

use super::device::{compute_pass, GpuContext};
use super::layer::{tile_columns, workgroups};
use super::params::SharedBuffers;
use super::{shaders, stats, GpuBackend};
use crate::error::{Error, Result};
use crate::sim::spec::{feature_major, SimSpec, Weights};
use crate::sim::stats::block_stats;
use crate::sim::{GradientPass, SampleGradients};
use crate::theory::backward::Ste;

/// The backward pipelines, one per tile width; they bind like the layer
/// kernel (parameters, δ in, δ out, h^l).
pub struct BackwardKernels {
    variants: Vec<(u32, wgpu::ComputePipeline)>,
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
        Ok(BackwardKernels { variants })
    }

    /// The pipeline for a batch.
    pub fn pipeline_for(&self, batch: usize) -> &wgpu::ComputePipeline {
        shaders::variant(&self.variants, tile_columns(batch))
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
        ctx.queue
            .write_buffer(&hs[0], 0, bytemuck::cast_slice(&feature_major(inputs, n)));
        ctx.queue
            .write_buffer(&deltas[0], 0, bytemuck::cast_slice(output_gradient));
        let kernels = &self.kernels;
        let wg = workgroups(n, batch);
        let mut enc = ctx.encoder("forward and backward");
        {
            let mut pass = compute_pass(&mut enc, "forward and backward");
            pass.set_pipeline(kernels.layer.pipeline_for(batch));
            for l in 1..=depth {
                let bg = kernels.layer.bind_group(ctx, &shared, &hs[l - 1], &hs[l]);
                pass.set_bind_group(0, &bg, &SharedBuffers::offset(l));
                pass.dispatch_workgroups(wg.0, wg.1, 1);
            }
            // δ^l from δ^{l+1} with the weights of layer l + 1, masked at h^l.
            for l in (0..depth).rev() {
                let (src, dst) = (&deltas[(depth - l - 1) % 2], &deltas[(depth - l) % 2]);
                let offset = SharedBuffers::offset(l + 1);
                let bg = ctx.bind_group(
                    "backward layer",
                    &kernels.layer.layout,
                    shared.params_entry(),
                    &[src, dst, &hs[l]],
                );
                pass.set_pipeline(kernels.backward.pipeline_for(batch));
                pass.set_bind_group(0, &bg, &offset);
                pass.dispatch_workgroups(wg.0, wg.1, 1);
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
