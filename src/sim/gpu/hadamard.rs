//! The Hadamard-ensemble layer on the GPU (`shaders/hadamard.wgsl`): per
//! sign round, a tile pass (φ or the previous round's output, signs, the
//! butterfly stages inside a workgroup tile), one pass per global stage,
//! then the finish pass (scale and bias). Its CPU twin is
//! [`crate::sim::layer::LayerWeights::hadamard`] (the transform in
//! [`crate::sim::hadamard`]).

use super::device::{pack_slots, slot, spread, uniform_entry, GpuContext, SLOT_STRIDE};
use super::params::{GpuParams, SharedBuffers};
use super::shaders;
use crate::error::Result;

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
    for round in 0..crate::sim::spec::HADAMARD_ROUNDS {
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

/// hadamard.wgsl's pipelines (tile_stages, butterfly_stage, finish) and
/// their layout: the layer's bindings plus the step parameters (binding 4,
/// a dynamic offset per dispatch).
pub struct HadamardKernels {
    layout: wgpu::BindGroupLayout,
    pipelines: [wgpu::ComputePipeline; 3],
}

impl HadamardKernels {
    /// Compiles hadamard.wgsl's three entry points.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let layout = ctx.layout(
            "hadamard bind group layout",
            std::mem::size_of::<GpuParams>(),
            &[true, false, true],
            &[uniform_entry(4, std::mem::size_of::<HadamardStep>())],
        );
        let hm = ctx.shader("hadamard.wgsl", shaders::hadamard())?;
        let pipelines = [
            ctx.pipeline("hadamard tile stages", &layout, &hm, "tile_stages")?,
            ctx.pipeline("hadamard butterfly stage", &layout, &hm, "butterfly_stage")?,
            ctx.pipeline("hadamard finish", &layout, &hm, "finish")?,
        ];
        Ok(HadamardKernels { layout, pipelines })
    }

    /// The step parameters and bind groups of a network's Hadamard layers
    /// at width n, ping-ponging between `h[0]` and `h[1]`.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        shared: &SharedBuffers,
        h: &[wgpu::Buffer; 2],
        n: usize,
    ) -> Result<HadamardLayers> {
        let (steps, passes) = hadamard_plan(n);
        let bytes = pack_slots(steps.len(), steps.iter().copied().enumerate());
        let step_buf = ctx.buffer(
            "hadamard steps",
            bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        ctx.queue.write_buffer(&step_buf, 0, &bytes);
        let bind_groups = (0..2)
            .map(|k| {
                ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("hadamard bind group"),
                    layout: &self.layout,
                    entries: &[
                        shared.params_entry(),
                        super::device::whole(1, &h[k]),
                        super::device::whole(2, &h[1 - k]),
                        super::device::whole(3, &shared.table),
                        slot(4, &step_buf, std::mem::size_of::<HadamardStep>()),
                    ],
                })
            })
            .collect();
        Ok(HadamardLayers {
            bind_groups,
            passes,
            tile: n.min(HADAMARD_TILE),
            max_dim: ctx.limits.max_compute_workgroups_per_dimension,
        })
    }

    /// Records the dispatches of layer l (parameter offset `offset`) on a
    /// batch of `batch` at width n.
    pub fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        layers: &HadamardLayers,
        l: usize,
        offset: u32,
        n: usize,
        batch: usize,
    ) {
        let bg = &layers.bind_groups[(l - 1) % 2];
        let max_dim = layers.max_dim;
        for pass_kind in &layers.passes {
            let (pipe, k, groups) = match *pass_kind {
                HadamardPass::Tile(k) => (
                    &self.pipelines[0],
                    k,
                    (batch.div_ceil(4) as u32, (n / layers.tile) as u32),
                ),
                HadamardPass::Stage(k) => (&self.pipelines[1], k, spread(n / 2 * batch, max_dim)),
                HadamardPass::Finish => (&self.pipelines[2], 0, spread(n * batch, max_dim)),
            };
            pass.set_pipeline(pipe);
            pass.set_bind_group(0, bg, &[offset, (k as u64 * SLOT_STRIDE) as u32]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
    }
}

/// A network's Hadamard layers, ready to record.
pub struct HadamardLayers {
    bind_groups: Vec<wgpu::BindGroup>,
    passes: Vec<HadamardPass>,
    tile: usize,
    max_dim: u32,
}
