//! The GPU training backend: stored weights and the kernels of
//! `shaders/train_*.wgsl` (forward with φ fused, transposed backward with the
//! STE mask fused, weight gradient with the momentum update fused, softmax
//! cross-entropy), on the device plumbing of the simulator
//! ([`crate::sim::gpu::GpuContext`]).
//!
//! Per step the batch goes up (inputs and labels), then one submission
//! records every layer's forward pass, the loss, and per layer from the top:
//! the backward product (which reads W before its update), then the fused
//! weight-gradient-and-update of that layer. Nothing comes back until a
//! report asks for the accumulated loss (per-input sums, no float atomics).
//! Layouts are the CPU twin's (src/train/cpu.rs): feature-major activations,
//! fan_out × fan_in weights.

use crate::error::{Error, Result};
use crate::sim::gpu::device::{
    compute_pass, pack_slots, slot, AdapterPolicy, GpuContext, SLOT_STRIDE as STRIDE,
};
use crate::train::cpu::BatchLoss;
use crate::train::model::{ModelSpec, Params};
use crate::train::{BackendState, TrainBackend};

mod params;
mod pipelines;
pub mod shaders;

use pipelines::{tile_index, Pipelines};

pub use shaders::Tile;

use params::TrainParams;

/// Inputs per step or evaluation batch the buffers hold.
const MAX_BATCH: usize = 1024;

struct Layer {
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    h: wgpu::Buffer,
    a: wgpu::Buffer,
}

struct Net {
    spec: ModelSpec,
    cap: usize,
    layers: Vec<Layer>,
    /// Momentum of each layer's weights and biases (read and written by
    /// checkpoints; bound in the update groups).
    velocity: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    x: wgpu::Buffer,
    labels: wgpu::Buffer,
    losses: wgpu::Buffer,
    correct: wgpu::Buffer,
    loss_acc: wgpu::Buffer,
    params: wgpu::Buffer,
    forward: Vec<wgpu::BindGroup>,
    backward: Vec<Option<wgpu::BindGroup>>,
    update: Vec<wgpu::BindGroup>,
    loss: wgpu::BindGroup,
    /// (batch, lr bits, momentum bits) the step slots were written for.
    step_slots: Option<(usize, u32, u32)>,
    /// The batch the evaluation slots were written for.
    eval_slots: Option<usize>,
    loss_inputs: usize,
    /// Inputs in the last uploaded batch.
    batch: usize,
}

/// Trains on a GPU.
pub struct GpuTrainBackend {
    ctx: GpuContext,
    pipes: Pipelines,
    net: Option<Net>,
    /// The product tile of every dispatch, or None: by shape ([`Tile::for_shape`]).
    tile: Option<Tile>,
}

fn bytes_f32(n: usize) -> Result<u64> {
    n.checked_mul(4)
        .map(|b| b as u64)
        .ok_or_else(|| Error::Gpu(format!("a buffer of {n} floats overflows")))
}

impl GpuTrainBackend {
    /// Opens a device under `policy` and builds the pipelines.
    pub fn new(policy: AdapterPolicy) -> Result<Self> {
        let ctx = GpuContext::new(policy)?;
        let pipes = Pipelines::new(&ctx)?;
        Ok(GpuTrainBackend {
            ctx,
            pipes,
            net: None,
            tile: None,
        })
    }

    /// Runs every product with `tile` (None: the default, by each product's
    /// shape). The variants give the same step to f32 rounding.
    pub fn set_tile(&mut self, tile: Option<Tile>) {
        self.tile = tile;
    }

    /// The tile of an m × n product.
    fn tile_for(&self, m: usize, n: usize) -> Tile {
        self.tile.unwrap_or_else(|| Tile::for_shape(m, n))
    }

    /// Builds the kernels of every tile a step or evaluation of batch `b`
    /// dispatches (with the backward and update products when `train`).
    fn prepare(&mut self, b: usize, train: bool) -> Result<()> {
        let spec = self.net()?.spec.clone();
        let mut tiles = Vec::new();
        for l in 0..spec.depth {
            let (fi, fo) = spec.layer_shape(l);
            tiles.push(self.tile_for(fo, b));
            if train {
                tiles.push(self.tile_for(fi, b));
                tiles.push(self.tile_for(fo, fi));
            }
        }
        tiles.sort_by_key(|&t| tile_index(t));
        tiles.dedup();
        for t in tiles {
            self.pipes.ensure(&self.ctx, t)?;
        }
        Ok(())
    }

    /// The device.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    fn net(&mut self) -> Result<&mut Net> {
        self.net
            .as_mut()
            .ok_or_else(|| Error::Gpu("no network loaded".into()))
    }

    /// Slots: role 0 (step) at 0..3L+1, role 1 (evaluation) after it.
    fn slot(spec: &ModelSpec, role: usize, k: usize) -> u32 {
        ((role * (3 * spec.depth + 1) + k) as u64 * STRIDE) as u32
    }

    /// Writes the parameter slots of a role for batch `b`.
    fn write_slots(&self, role: usize, b: usize, lr: f32, momentum: f32) -> Result<()> {
        let net = self
            .net
            .as_ref()
            .ok_or_else(|| Error::Gpu("no network".into()))?;
        let spec = &net.spec;
        let depth = spec.depth;
        let slots = params::slots(spec, role, b, lr, momentum);
        let bytes = pack_slots(3 * depth + 1, slots);
        self.ctx
            .queue
            .write_buffer(&net.params, Self::slot(spec, role, 0) as u64, &bytes);
        Ok(())
    }

    fn upload(&mut self, x: &[f32], labels: &[u8]) -> Result<usize> {
        let net = self
            .net
            .as_ref()
            .ok_or_else(|| Error::Gpu("no network".into()))?;
        let b = labels.len();
        if b == 0 || b > net.cap || x.len() != b * net.spec.input_dim {
            return Err(Error::invalid(
                "batch",
                b,
                &format!(
                    "between 1 and {} inputs of {} values each",
                    net.cap, net.spec.input_dim
                ),
            ));
        }
        self.ctx
            .queue
            .write_buffer(&net.x, 0, bytemuck::cast_slice(x));
        let y: Vec<u32> = labels.iter().map(|&v| v as u32).collect();
        self.ctx
            .queue
            .write_buffer(&net.labels, 0, bytemuck::cast_slice(&y));
        self.net()?.batch = b;
        Ok(b)
    }

    /// Records the forward pass and the loss (role 0 step, 1 evaluation).
    fn record_forward(&self, pass: &mut wgpu::ComputePass<'_>, role: usize, b: usize) {
        let net = self.net.as_ref().expect("loaded");
        let spec = &net.spec;
        for l in 0..spec.depth {
            let (_, fo) = spec.layer_shape(l);
            let tile = self.tile_for(fo, b);
            pass.set_pipeline(&self.pipes.of(tile).forward);
            pass.set_bind_group(0, &net.forward[l], &[Self::slot(spec, role, l)]);
            let (x, y) = tile.groups(fo, b);
            pass.dispatch_workgroups(x, y, 1);
        }
        pass.set_pipeline(&self.pipes.loss);
        pass.set_bind_group(0, &net.loss, &[Self::slot(spec, role, 3 * spec.depth)]);
        pass.dispatch_workgroups(b.div_ceil(64) as u32, 1, 1);
    }

    fn read(&self, src: &wgpu::Buffer, floats: usize) -> Result<Vec<f32>> {
        self.ctx.read("train readback", src, bytes_f32(floats)?)
    }
}

impl TrainBackend for GpuTrainBackend {
    fn describe(&self) -> String {
        match self.tile {
            None => format!("gpu {}", self.ctx.describe()),
            Some(t) => format!("gpu {} (product tile {})", self.ctx.describe(), t.name()),
        }
    }

    fn load(&mut self, spec: &ModelSpec, params: &Params<f32>) -> Result<()> {
        self.load_with_capacity(spec, params, MAX_BATCH)
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn step(&mut self, x: &[f32], labels: &[u8], lr: f32, momentum: f32) -> Result<()> {
        let b = self.upload(x, labels)?;
        let want = (b, lr.to_bits(), momentum.to_bits());
        if self.net()?.step_slots != Some(want) {
            self.write_slots(0, b, lr, momentum)?;
            self.net()?.step_slots = Some(want);
        }
        self.prepare(b, true)?;
        let mut enc = self.ctx.encoder("train step");
        {
            let mut pass = compute_pass(&mut enc, "train step");
            self.record_forward(&mut pass, 0, b);
            let net = self.net.as_ref().expect("loaded");
            let spec = &net.spec;
            for l in (0..spec.depth).rev() {
                let (fi, fo) = spec.layer_shape(l);
                if let Some(bg) = &net.backward[l] {
                    let tile = self.tile_for(fi, b);
                    pass.set_pipeline(&self.pipes.of(tile).backward);
                    pass.set_bind_group(0, bg, &[Self::slot(spec, 0, spec.depth + l)]);
                    let (x, y) = tile.groups(fi, b);
                    pass.dispatch_workgroups(x, y, 1);
                }
                let slot = Self::slot(spec, 0, 2 * spec.depth + l);
                let tile = self.tile_for(fo, fi);
                pass.set_pipeline(&self.pipes.of(tile).update);
                pass.set_bind_group(0, &net.update[l], &[slot]);
                let (x, y) = tile.groups(fo, fi);
                pass.dispatch_workgroups(x, y, 1);
                pass.set_pipeline(&self.pipes.update_bias);
                pass.dispatch_workgroups(fo.div_ceil(64) as u32, 1, 1);
            }
        }
        self.ctx.queue.submit([enc.finish()]);
        self.net()?.loss_inputs += b;
        Ok(())
    }

    fn take_loss(&mut self) -> Result<(f64, usize)> {
        let net = self
            .net
            .as_ref()
            .ok_or_else(|| Error::Gpu("no network".into()))?;
        let v = self.read(&net.loss_acc, net.cap)?;
        let mut enc = self.ctx.encoder("train loss reset");
        enc.clear_buffer(&net.loss_acc, 0, None);
        self.ctx.queue.submit([enc.finish()]);
        let n = std::mem::take(&mut self.net()?.loss_inputs);
        Ok((v.iter().map(|&x| x as f64).sum(), n))
    }

    fn evaluate(&mut self, x: &[f32], labels: &[u8]) -> Result<BatchLoss> {
        let b = self.upload(x, labels)?;
        if self.net()?.eval_slots != Some(b) {
            self.write_slots(1, b, 0.0, 0.0)?;
            self.net()?.eval_slots = Some(b);
        }
        self.prepare(b, false)?;
        let mut enc = self.ctx.encoder("train evaluate");
        {
            let mut pass = compute_pass(&mut enc, "train evaluate");
            self.record_forward(&mut pass, 1, b);
        }
        self.ctx.queue.submit([enc.finish()]);
        let net = self.net.as_ref().expect("loaded");
        let losses = self.read(&net.losses, b)?;
        let top = self.read(&net.correct, b)?;
        let mut out = BatchLoss {
            loss_sum: losses.iter().map(|&x| x as f64).sum(),
            ..BatchLoss::default()
        };
        // ±k: k classes share the largest logit, + when the label is one of them.
        for &v in &top {
            out.count(v.abs().round() as usize, v > 0.0);
        }
        Ok(out)
    }

    fn params(&mut self) -> Result<Params<f32>> {
        let net = self
            .net
            .as_ref()
            .ok_or_else(|| Error::Gpu("no network".into()))?;
        let mut p = Params::zeros(&net.spec);
        for (l, layer) in net.layers.iter().enumerate() {
            p.weights[l] = self.read(&layer.w, p.weights[l].len())?;
            p.biases[l] = self.read(&layer.b, p.biases[l].len())?;
        }
        Ok(p)
    }

    fn save_state(&mut self) -> Result<BackendState> {
        let params = self.params()?;
        let net = self
            .net
            .as_ref()
            .ok_or_else(|| Error::Gpu("no network".into()))?;
        let mut velocity = Params::zeros(&net.spec);
        for (l, (vw, vb)) in net.velocity.iter().enumerate() {
            velocity.weights[l] = self.read(vw, velocity.weights[l].len())?;
            velocity.biases[l] = self.read(vb, velocity.biases[l].len())?;
        }
        let sums = self.read(&net.loss_acc, net.cap)?;
        Ok(BackendState {
            params,
            velocity,
            loss_sums: sums.iter().map(|&v| f64::from(v)).collect(),
            loss_inputs: net.loss_inputs,
        })
    }

    fn restore_state(&mut self, spec: &ModelSpec, state: &BackendState) -> Result<()> {
        state.check(spec, MAX_BATCH)?;
        // Each sum was an f32 on the device that saved it: exact back in f32.
        let sums: Vec<f32> = state.loss_sums.iter().map(|&v| v as f32).collect();
        if sums
            .iter()
            .zip(&state.loss_sums)
            .any(|(&a, &b)| f64::from(a).to_bits() != b.to_bits() && !b.is_nan())
        {
            return Err(Error::invalid(
                "training state",
                "(loss sums)",
                "the f32 loss sums a GPU backend saved",
            ));
        }
        self.load_with_capacity(spec, &state.params, MAX_BATCH)?;
        let net = self.net.as_mut().expect("loaded");
        for (l, (vw, vb)) in net.velocity.iter().enumerate() {
            self.ctx
                .queue
                .write_buffer(vw, 0, bytemuck::cast_slice(&state.velocity.weights[l]));
            self.ctx
                .queue
                .write_buffer(vb, 0, bytemuck::cast_slice(&state.velocity.biases[l]));
        }
        self.ctx
            .queue
            .write_buffer(&net.loss_acc, 0, bytemuck::cast_slice(&sums));
        net.loss_inputs = state.loss_inputs;
        self.ctx.check()
    }
}

impl GpuTrainBackend {
    /// The pre-activations H and activations φ(H) of every layer after the
    /// last step's or evaluation's forward pass (fan_out × B each,
    /// feature-major, as [`crate::train::cpu::Trainer::pre_activations`] and
    /// [`crate::train::cpu::Trainer::activations`]); the last layer's φ(H)
    /// is written only when the logits are quantized.
    pub fn layer_outputs(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let net = self
            .net
            .as_ref()
            .ok_or_else(|| Error::Gpu("no network".into()))?;
        (0..net.spec.depth)
            .map(|l| {
                let units = net.spec.layer_shape(l).1 * net.batch;
                let layer = &net.layers[l];
                Ok((self.read(&layer.h, units)?, self.read(&layer.a, units)?))
            })
            .collect()
    }

    /// [`TrainBackend::load`] with room for batches of up to `cap` inputs.
    pub fn load_with_capacity(
        &mut self,
        spec: &ModelSpec,
        params: &Params<f32>,
        cap: usize,
    ) -> Result<()> {
        use wgpu::BufferUsages as U;
        spec.validate()?;
        self.net = None;
        let ctx = &self.ctx;
        let store = U::STORAGE | U::COPY_DST | U::COPY_SRC;
        let init = |label: &str, data: &[f32]| -> Result<wgpu::Buffer> {
            let buf = ctx.buffer(label, bytes_f32(data.len())?, store)?;
            ctx.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
            Ok(buf)
        };
        let sized = |label: &str, floats: usize| -> Result<wgpu::Buffer> {
            ctx.buffer(label, bytes_f32(floats)?, store)
        };
        let mut layers = Vec::new();
        let (mut vws, mut vbs) = (Vec::new(), Vec::new());
        for l in 0..spec.depth {
            let (fi, fo) = spec.layer_shape(l);
            if params.weights[l].len() != fi * fo || params.biases[l].len() != fo {
                return Err(Error::invalid(
                    "training parameters",
                    format!("layer {l}"),
                    "shapes that match the network",
                ));
            }
            let fo_b = fo
                .checked_mul(cap)
                .ok_or_else(|| Error::Gpu("activation buffer size overflows".into()))?;
            layers.push(Layer {
                w: init(&format!("W{l}"), &params.weights[l])?,
                b: init(&format!("b{l}"), &params.biases[l])?,
                h: sized(&format!("H{l}"), fo_b)?,
                a: sized(&format!("A{l}"), fo_b)?,
            });
            vws.push(init(&format!("vW{l}"), &vec![0.0; fi * fo])?);
            vbs.push(init(&format!("vb{l}"), &vec![0.0; fo])?);
        }
        let gmax = spec.width.max(spec.classes) * cap;
        let g = [sized("G0", gmax)?, sized("G1", gmax)?];
        let x = sized("X", spec.input_dim * cap)?;
        let labels = ctx.buffer("labels", 4 * cap as u64, store)?;
        let losses = sized("losses", cap)?;
        let correct = sized("correct", cap)?;
        let loss_acc = init("loss sums", &vec![0.0; cap])?;
        let params_buf = ctx.buffer(
            "train params",
            2 * (3 * spec.depth as u64 + 1) * STRIDE,
            U::UNIFORM | U::COPY_DST,
        )?;
        let pentry = slot(0, &params_buf, std::mem::size_of::<TrainParams>());
        let group = |label: &str, layout: &wgpu::BindGroupLayout, bufs: &[&wgpu::Buffer]| {
            ctx.bind_group(label, layout, pentry.clone(), bufs)
        };
        let depth = spec.depth;
        // G of layer l lives in g[(depth − 1 − l) % 2]; its G_prev in the other.
        let gi = |l: usize| (depth - 1 - l) % 2;
        let mut forward = Vec::new();
        let mut backward = Vec::new();
        let mut update = Vec::new();
        for l in 0..depth {
            let input = if l == 0 { &x } else { &layers[l - 1].a };
            let ly = &layers[l];
            forward.push(group(
                "train forward",
                &self.pipes.forward_layout,
                &[&ly.w, input, &ly.b, &ly.h, &ly.a],
            ));
            backward.push((l > 0).then(|| {
                group(
                    "train backward",
                    &self.pipes.backward_layout,
                    &[&ly.w, &g[gi(l)], &layers[l - 1].h, &g[1 - gi(l)]],
                )
            }));
            update.push(group(
                "train update",
                &self.pipes.update_layout,
                &[&g[gi(l)], input, &ly.w, &vws[l], &ly.b, &vbs[l]],
            ));
        }
        let top = &layers[depth - 1];
        let logits = if spec.quantize_logits { &top.a } else { &top.h };
        let loss = group(
            "train loss",
            &self.pipes.loss_layout,
            &[
                logits,
                &top.h,
                &labels,
                &g[gi(depth - 1)],
                &losses,
                &correct,
                &loss_acc,
            ],
        );
        ctx.check()?;
        // The gradient buffers stay alive through their bind groups.
        drop(g);
        self.net = Some(Net {
            spec: spec.clone(),
            cap,
            layers,
            velocity: vws.into_iter().zip(vbs).collect(),
            x,
            labels,
            losses,
            correct,
            loss_acc,
            params: params_buf,
            forward,
            backward,
            update,
            loss,
            step_slots: None,
            eval_slots: None,
            loss_inputs: 0,
            batch: 0,
        });
        Ok(())
    }
}
