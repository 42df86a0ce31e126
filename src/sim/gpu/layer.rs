//! The layer stage on the GPU (`shaders/layer.wgsl`): one fused kernel per
//! layer, H_next = (σ_w/√n)·W·φ(H) + σ_b·ζ with the weights generated in
//! workgroup memory. Its CPU twin is [`crate::sim::cpu::layer`] (and
//! [`crate::sim::cpu::ensemble_layer_with_stats`] for the Rademacher signs).

use super::device::GpuContext;
use super::params::{GpuParams, SharedBuffers};
use super::shaders;
use crate::error::Result;

/// Rows of the next layer per workgroup (layer.wgsl `TI`).
const TILE_ROWS: u32 = 64;

/// The batch columns per workgroup of the layer kernel for a batch.
pub fn tile_columns(batch: usize) -> u32 {
    match batch {
        0..=16 => 16,
        17..=32 => 32,
        _ => 64,
    }
}

/// Workgroups (x over batch tiles, y over 64-row tiles) of one layer (and
/// of one backward step, which tiles the same way).
pub fn workgroups(n: usize, batch: usize) -> (u32, u32) {
    let tb = tile_columns(batch) as usize;
    (batch.div_ceil(tb) as u32, (n as u32).div_ceil(TILE_ROWS))
}

/// The layer pipelines (one per tile width) and their bind-group layout:
/// parameters, activations in (read), activations out (write), the
/// quantizer table (read).
pub struct LayerKernels {
    /// The bind-group layout (also the backward kernel's).
    pub layout: wgpu::BindGroupLayout,
    variants: Vec<(u32, wgpu::ComputePipeline)>,
}

impl LayerKernels {
    /// Compiles layer.wgsl for 16, 32 and 64 batch columns per workgroup.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let layout = ctx.layout(
            "layer bind group layout",
            std::mem::size_of::<GpuParams>(),
            &[true, false, true],
            &[],
        );
        let mut variants = Vec::new();
        for tb in [16, 32, 64] {
            let m = ctx.shader(&format!("layer.wgsl TB={tb}"), shaders::layer(tb))?;
            variants.push((
                tb,
                ctx.pipeline(&format!("layer TB={tb}"), &layout, &m, "main")?,
            ));
        }
        Ok(LayerKernels { layout, variants })
    }

    /// The pipeline for a batch.
    pub fn pipeline_for(&self, batch: usize) -> &wgpu::ComputePipeline {
        let tb = tile_columns(batch);
        &self
            .variants
            .iter()
            .find(|(t, _)| *t == tb)
            .expect("all tile variants are built")
            .1
    }

    /// A bind group reading `input`, writing `output`.
    pub fn bind_group(
        &self,
        ctx: &GpuContext,
        shared: &SharedBuffers,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        ctx.bind_group(
            "layer bind group",
            &self.layout,
            shared.params_entry(),
            &[input, output, &shared.table],
        )
    }
}
