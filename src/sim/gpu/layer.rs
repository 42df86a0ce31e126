//! The layer stage on the GPU (`shaders/layer.wgsl`): one fused kernel per
//! layer, H_next = (σ_w/√n)·W·φ(H) + σ_b·ζ with the weights generated in
//! workgroup memory. Its CPU twin is [`crate::sim::cpu::layer`] (and
//! [`crate::sim::cpu::ensemble_layer_with_stats`] for the Rademacher signs).
//! Its variants (split-K, wide tiles, the u64 multiply: [`super::variant`])
//! compute the same layer and are compiled here on first use.

use super::device::GpuContext;
use super::params::{GpuParams, SharedBuffers};
use super::shaders;
pub use super::variant::tile_columns;
use super::variant::{self, KernelVariant, Tiling};
use crate::error::Result;
use std::cell::RefCell;

/// Rows of the next layer per workgroup (layer.wgsl `TI`).
const TILE_ROWS: u32 = 64;

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
    /// The other variants' pipelines, built on first use.
    others: VariantCache,
}

/// One stage's variant pipelines by (variant, TB), each compiled on first
/// use (the layer's and the backward step's).
#[derive(Default)]
pub struct VariantCache(RefCell<Vec<((KernelVariant, u32), VariantPipelines)>>);

impl VariantCache {
    /// The pipelines of `variant` at `tb` under `layout`: from the cache,
    /// else compiled from `main` (and for split-K `combine`), labelled
    /// with `stage`, and kept.
    pub fn get_or_build(
        &self,
        ctx: &GpuContext,
        layout: &wgpu::BindGroupLayout,
        stage: &str,
        (variant, tb): (KernelVariant, u32),
        main: impl FnOnce() -> String,
        combine: impl FnOnce() -> String,
    ) -> Result<VariantPipelines> {
        if let Some((_, p)) = self.0.borrow().iter().find(|(k, _)| *k == (variant, tb)) {
            return Ok(p.clone());
        }
        let label = format!("{stage} {variant} TB={tb}");
        let m = ctx.shader(&label, main())?;
        let main = ctx.pipeline(&label, layout, &m, "main")?;
        let combine = if variant.tiling() == Tiling::SplitK {
            let label = format!("{stage} combine ({variant})");
            let m = ctx.shader(&label, combine())?;
            Some(ctx.pipeline(&label, layout, &m, "main")?)
        } else {
            None
        };
        let p = VariantPipelines { main, combine };
        self.0.borrow_mut().push(((variant, tb), p.clone()));
        Ok(p)
    }
}

/// The compute pipelines of one variant at one TB: the main pass, and for
/// split-K the combine pass. Both use the layer's bind-group layout: split-K
/// writes its partial sums where the layer writes its output, and the
/// combine pass reads them where the layer reads its input.
#[derive(Debug, Clone)]
pub struct VariantPipelines {
    /// The main pass.
    pub main: wgpu::ComputePipeline,
    /// The split-K combine pass.
    pub combine: Option<wgpu::ComputePipeline>,
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
        Ok(LayerKernels {
            layout,
            variants,
            others: VariantCache::default(),
        })
    }

    /// The pipelines of `variant` for a batch (compiled on first use; the
    /// reference `tiled` variant is compiled with the backend).
    pub fn variant(
        &self,
        ctx: &GpuContext,
        variant: KernelVariant,
        batch: usize,
    ) -> Result<VariantPipelines> {
        if variant == KernelVariant::Tiled {
            return Ok(VariantPipelines {
                main: self.pipeline_for(batch).clone(),
                combine: None,
            });
        }
        let tb = match variant.tiling() {
            Tiling::Wide | Tiling::Wide256 => 0,
            _ => tile_columns(batch),
        };
        self.others.get_or_build(
            ctx,
            &self.layout,
            "layer",
            (variant, tb),
            || variant::layer_source(variant, tb.max(16)),
            || variant::combine_source(variant.int64()),
        )
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
