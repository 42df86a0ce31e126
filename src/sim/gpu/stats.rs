//! The statistics stage on the GPU (`shaders/stats.wgsl`): per layer, the
//! sums of squares of every input and the dot products of every measured
//! pair, as partial sums over groups of rows that the host adds in f64. Its
//! CPU twin is [`crate::sim::stats::block_stats`].

use super::device::{compute_pass, GpuContext};
use super::params::{GpuParams, SharedBuffers, STATS_ROWS};
use super::shaders;
use crate::error::{Error, Result};
use crate::sim::spec::{Measurements, SimSpec};

/// Row groups (partials per quantity) at width n.
pub fn groups(n: usize) -> u32 {
    (n as u32).div_ceil(STATS_ROWS)
}

/// The statistics pipeline and its bind-group layout: parameters,
/// activations (read), pairs (read), partials (write).
pub struct StatsKernel {
    layout: wgpu::BindGroupLayout,
    /// The pipeline.
    pub pipeline: wgpu::ComputePipeline,
}

impl StatsKernel {
    /// Compiles stats.wgsl.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let layout = ctx.layout(
            "stats bind group layout",
            std::mem::size_of::<GpuParams>(),
            &[true, true, false],
            &[],
        );
        let m = ctx.shader("stats.wgsl", shaders::stats())?;
        let pipeline = ctx.pipeline("stats", &layout, &m, "main")?;
        Ok(StatsKernel { layout, pipeline })
    }

    /// A bind group measuring `h` into `partials`.
    pub fn bind_group(
        &self,
        ctx: &GpuContext,
        shared: &SharedBuffers,
        h: &wgpu::Buffer,
        partials: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        ctx.bind_group(
            "stats bind group",
            &self.layout,
            shared.params_entry(),
            &[h, &shared.pairs, partials],
        )
    }

    /// Records the statistics of one layer (`quantities` = B + P).
    pub fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        offset: &[u32],
        quantities: usize,
        n: usize,
    ) {
        self.record_stacked(pass, bind_group, offset, quantities, n, 1);
    }

    /// Records the statistics of one layer of `stack` network samples
    /// (activations S × n × B, sample on the grid's z axis): slot
    /// `p.slot·S + z` holds sample z's partials.
    pub fn record_stacked(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        offset: &[u32],
        quantities: usize,
        n: usize,
        stack: usize,
    ) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, offset);
        pass.dispatch_workgroups(quantities as u32, groups(n), stack.max(1) as u32);
    }
}

/// One layer's statistics from its partials (quantity-major, `groups` per
/// quantity), added in f64: (sums of squares of the `batch` inputs, pair
/// dot products).
pub fn reduce(partials: &[f32], groups: u32, batch: usize) -> (Vec<f64>, Vec<f64>) {
    let mut vals: Vec<f64> = partials
        .chunks_exact(groups as usize)
        .map(|g| g.iter().map(|&x| f64::from(x)).sum())
        .collect();
    let dots = vals.split_off(batch);
    (vals, dots)
}

impl super::GpuBackend {
    /// The statistics stage alone on `h` (feature-major, `spec.width` ×
    /// `meas.batch`): sums of squares per input and dot products per measured
    /// pair, as a layer pass measures them (stats.wgsl's f32 partials per
    /// group of rows, added in f64). Holds the stage against its CPU twin
    /// [`crate::sim::stats::block_stats`].
    pub fn stats(
        &self,
        spec: &SimSpec,
        h: &[f32],
        meas: &Measurements,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let ctx = &self.ctx;
        let (n, batch) = (spec.width, meas.batch);
        if h.len() != n * batch {
            return Err(Error::invalid(
                "activations",
                h.len(),
                &format!("width × batch = {n} × {batch} values"),
            ));
        }
        let q = batch + meas.pairs.len();
        let groups = groups(n);
        let shared = SharedBuffers::new(ctx, spec, meas, 0, None, &|_| 0)?;
        use wgpu::BufferUsages as U;
        let input = ctx.buffer(
            "activations",
            (h.len() * 4) as u64,
            U::STORAGE | U::COPY_DST,
        )?;
        let bytes = (q * groups as usize * 4) as u64;
        let partials = ctx.buffer("statistics", bytes, U::STORAGE | U::COPY_SRC)?;
        ctx.queue.write_buffer(&input, 0, bytemuck::cast_slice(h));
        let bg = self
            .kernels
            .stats
            .bind_group(ctx, &shared, &input, &partials);
        let mut enc = ctx.encoder("statistics");
        {
            let mut pass = compute_pass(&mut enc, "statistics");
            let offset = SharedBuffers::offset(1);
            self.kernels.stats.record(&mut pass, &bg, &offset, q, n);
        }
        ctx.queue.submit([enc.finish()]);
        let raw = ctx.read("statistics read-back", &partials, bytes)?;
        Ok(reduce(&raw, groups, batch))
    }
}
