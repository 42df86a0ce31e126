//! The compute pipelines of the training kernels: the loss and the bias
//! update built with the backend, the three product kernels of each tile
//! variant built when a product first needs that variant.

use super::params::TrainParams;
use super::shaders::{self, Tile};
use crate::error::Result;
use crate::sim::gpu::device::GpuContext;

/// The three product kernels of one tile variant.
pub(super) struct ProductPipes {
    pub(super) forward: wgpu::ComputePipeline,
    pub(super) backward: wgpu::ComputePipeline,
    pub(super) update: wgpu::ComputePipeline,
}

pub(super) struct Pipelines {
    /// Per variant of [`Tile::ALL`], built when a product first needs it.
    pub(super) products: [Option<ProductPipes>; 4],
    pub(super) update_bias: wgpu::ComputePipeline,
    pub(super) loss: wgpu::ComputePipeline,
    pub(super) forward_layout: wgpu::BindGroupLayout,
    pub(super) backward_layout: wgpu::BindGroupLayout,
    pub(super) update_layout: wgpu::BindGroupLayout,
    pub(super) loss_layout: wgpu::BindGroupLayout,
}

fn layout(ctx: &GpuContext, label: &str, read: &[bool]) -> wgpu::BindGroupLayout {
    ctx.layout(label, std::mem::size_of::<TrainParams>(), read, &[])
}

fn pipe(
    ctx: &GpuContext,
    label: &str,
    src: String,
    entry: &str,
    bgl: &wgpu::BindGroupLayout,
) -> Result<wgpu::ComputePipeline> {
    ctx.pipeline(label, bgl, &ctx.shader(label, src)?, entry)
}

pub(super) fn tile_index(tile: Tile) -> usize {
    Tile::ALL
        .iter()
        .position(|&t| t == tile)
        .expect("every tile is in Tile::ALL")
}

impl Pipelines {
    pub(super) fn new(ctx: &GpuContext) -> Result<Self> {
        let forward_layout = layout(ctx, "train forward", &[true, true, true, false, false]);
        let backward_layout = layout(ctx, "train backward", &[true, true, true, false]);
        let update_layout = layout(
            ctx,
            "train update",
            &[true, true, false, false, false, false],
        );
        let loss_layout = layout(
            ctx,
            "train loss",
            &[true, true, true, false, false, false, false],
        );
        let p = Pipelines {
            products: [None, None, None, None],
            update_bias: pipe(
                ctx,
                "train_update.wgsl bias",
                shaders::product(shaders::UPDATE, Tile::T16x16),
                "bias",
                &update_layout,
            )?,
            loss: pipe(
                ctx,
                "train_loss.wgsl",
                shaders::loss(),
                "main",
                &loss_layout,
            )?,
            forward_layout,
            backward_layout,
            update_layout,
            loss_layout,
        };
        ctx.check()?;
        Ok(p)
    }

    /// Builds the product kernels of `tile` if no product has used it yet.
    pub(super) fn ensure(&mut self, ctx: &GpuContext, tile: Tile) -> Result<()> {
        let i = tile_index(tile);
        if self.products[i].is_none() {
            let name = tile.name();
            let product = |file: &str, kernel: &str, bgl: &wgpu::BindGroupLayout| {
                pipe(
                    ctx,
                    &format!("{file} {name}"),
                    shaders::product(kernel, tile),
                    "main",
                    bgl,
                )
            };
            self.products[i] = Some(ProductPipes {
                forward: product("train_forward.wgsl", shaders::FORWARD, &self.forward_layout)?,
                backward: product(
                    "train_backward.wgsl",
                    shaders::BACKWARD,
                    &self.backward_layout,
                )?,
                update: product("train_update.wgsl", shaders::UPDATE, &self.update_layout)?,
            });
            ctx.check()?;
        }
        Ok(())
    }

    pub(super) fn of(&self, tile: Tile) -> &ProductPipes {
        self.products[tile_index(tile)]
            .as_ref()
            .expect("Pipelines::ensure ran for every tile a step records")
    }
}
