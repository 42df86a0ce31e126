//! The statistics stage on the GPU (`shaders/stats.wgsl`): per layer, the
//! sums of squares of every input and the dot products of every measured
//! pair, as partial sums over groups of rows that the host adds in f64. Its
//! CPU twin is [`crate::sim::cpu::block_stats`].

use super::device::GpuContext;
use super::params::{GpuParams, SharedBuffers};
use super::shaders;
use crate::error::Result;

/// Rows per statistics partial (one workgroup each).
pub const STATS_ROWS: u32 = 4096;

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
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, offset);
        pass.dispatch_workgroups(quantities as u32, groups(n), 1);
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
