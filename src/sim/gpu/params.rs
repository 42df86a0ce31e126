//! The per-layer parameters every simulator kernel reads
//! (`shaders/params.wgsl`) and the buffers one network's passes share.

use super::device::{pack_slots, slot, GpuContext, SLOT_STRIDE};
use crate::error::Result;
use crate::rng::key_for;
use crate::sim::spec::{Measurements, SimActivation, SimSpec, Weights};
use crate::theory::backward::Ste;

/// Rows per statistics partial (one workgroup of stats.wgsl each).
pub const STATS_ROWS: u32 = 4096;

/// The per-layer parameters, field for field as in `shaders/params.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuParams {
    /// Layer index l (RNG counter).
    pub layer: u32,
    /// Network sample (RNG counter; a stacked dispatch's first, the
    /// workgroup z adds its offset).
    pub sample: u32,
    /// Key, low word of the seed.
    pub key0: u32,
    /// Key, high word of the seed.
    pub key1: u32,
    /// Width n.
    pub n: u32,
    /// Batch of this chunk.
    pub batch: u32,
    /// Activation kind (0 uniform, 1 steps, 2 tanh, 3 hard-tanh, 4 linear).
    pub kind: u32,
    /// Number of levels N (quantizers).
    pub states: u32,
    /// 1/Δ (uniform quantizer).
    pub inv_spacing: f32,
    /// N/2 (uniform quantizer).
    pub half_states: f32,
    /// σ_w/√n.
    pub w_scale: f32,
    /// σ_b.
    pub b_scale: f32,
    /// Slot of this layer in the statistics buffer.
    pub slot: u32,
    /// Measured quantities per layer (B + P).
    pub quantities: u32,
    /// Row groups per quantity.
    pub groups: u32,
    /// Rows per group.
    pub rows_per_group: u32,
    /// STE slope s (backward pass).
    pub ste_slope: f32,
    /// STE threshold t (backward pass).
    pub ste_threshold: f32,
    /// Weight ensemble: 0 gaussian, 1 rademacher, 2 hadamard.
    pub weights: u32,
    /// Padding.
    pub pad1: u32,
}

/// The activation as the kernels see it: (kind, table of levels then
/// thresholds, 1/Δ, N/2, N).
fn activation_table(act: &SimActivation) -> (u32, Vec<f32>, f32, f32, usize) {
    match act {
        SimActivation::Uniform {
            inv_spacing,
            half_states,
            levels,
        } => (0, levels.clone(), *inv_spacing, *half_states, levels.len()),
        SimActivation::Steps { thresholds, levels } => {
            let mut t = levels.clone();
            t.extend(thresholds);
            (1, t, 0.0, 0.0, levels.len())
        }
        SimActivation::Tanh => (2, vec![0.0], 0.0, 0.0, 0),
        SimActivation::HardTanh => (3, vec![0.0], 0.0, 0.0, 0),
        SimActivation::Linear => (4, vec![0.0], 0.0, 0.0, 0),
    }
}

/// The buffers every pass of one network shares: per-layer parameters
/// (entry l at l·256 bytes), the quantizer table and the measured pairs.
pub struct SharedBuffers {
    /// Per-layer parameters, one slot per layer.
    pub params: wgpu::Buffer,
    /// Levels, then thresholds.
    pub table: wgpu::Buffer,
    /// Measured pairs (a, b), flattened.
    pub pairs: wgpu::Buffer,
}

impl SharedBuffers {
    /// Builds and uploads them; `slot(l)` is the statistics slot of entry l.
    pub fn new(
        ctx: &GpuContext,
        spec: &SimSpec,
        meas: &Measurements,
        sample: u32,
        ste: Option<&Ste>,
        slot: &dyn Fn(usize) -> u32,
    ) -> Result<Self> {
        let n = spec.width;
        let act = SimActivation::from_activation(&spec.activation);
        let (kind, table, inv_spacing, half_states, states) = activation_table(&act);
        let key = key_for(spec.seed);
        let base = GpuParams {
            layer: 0,
            sample,
            key0: key[0],
            key1: key[1],
            n: n as u32,
            batch: meas.batch as u32,
            kind,
            states: states as u32,
            inv_spacing,
            half_states,
            w_scale: spec.weights.scale(spec.sigma_w, n),
            b_scale: spec.sigma_b as f32,
            slot: 0,
            quantities: (meas.batch + meas.pairs.len()) as u32,
            groups: (n as u32).div_ceil(STATS_ROWS),
            rows_per_group: STATS_ROWS,
            ste_slope: ste.map_or(0.0, |s| s.slope as f32),
            ste_threshold: ste.map_or(0.0, |s| {
                if s.threshold.is_finite() {
                    s.threshold as f32
                } else {
                    f32::MAX
                }
            }),
            weights: match spec.weights {
                Weights::Gaussian => 0,
                Weights::Rademacher => 1,
                Weights::Hadamard => 2,
            },
            pad1: 0,
        };
        let params = pack_slots(
            spec.depth + 1,
            (1..=spec.depth).map(|l| {
                (
                    l,
                    GpuParams {
                        layer: l as u32,
                        slot: slot(l),
                        ..base
                    },
                )
            }),
        );
        let pairs: Vec<u32> = if meas.pairs.is_empty() {
            vec![0, 0]
        } else {
            meas.pairs.iter().flat_map(|&(a, b)| [a, b]).collect()
        };
        use wgpu::BufferUsages as U;
        let out = SharedBuffers {
            params: ctx.buffer(
                "layer parameters",
                params.len() as u64,
                U::UNIFORM | U::COPY_DST,
            )?,
            table: ctx.buffer(
                "quantizer table",
                (table.len() * 4) as u64,
                U::STORAGE | U::COPY_DST,
            )?,
            pairs: ctx.buffer(
                "measured pairs",
                (pairs.len() * 4) as u64,
                U::STORAGE | U::COPY_DST,
            )?,
        };
        ctx.queue.write_buffer(&out.params, 0, &params);
        ctx.queue
            .write_buffer(&out.table, 0, bytemuck::cast_slice(&table));
        ctx.queue
            .write_buffer(&out.pairs, 0, bytemuck::cast_slice(&pairs));
        Ok(out)
    }

    /// The parameter binding (one entry, selected by a dynamic offset).
    pub fn params_entry(&self) -> wgpu::BindGroupEntry<'_> {
        slot(0, &self.params, std::mem::size_of::<GpuParams>())
    }

    /// The dynamic offset of layer entry l.
    pub fn offset(l: usize) -> [u32; 1] {
        [(l as u64 * SLOT_STRIDE) as u32]
    }
}
