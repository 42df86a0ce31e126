//! The per-dispatch parameters of the training kernels
//! (`shaders/train_params.wgsl`) and their values for one step or
//! evaluation.

use crate::train::model::{ModelSpec, Phi};

/// The parameters of one dispatch, field for field as in `shaders/train_params.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TrainParams {
    /// Rows of C.
    pub m: u32,
    /// Columns of C.
    pub n: u32,
    /// Inner dimension.
    pub k: u32,
    /// Row stride of A.
    pub rsa: u32,
    /// Column stride of A.
    pub csa: u32,
    /// Row stride of B.
    pub rsb: u32,
    /// Column stride of B.
    pub csb: u32,
    /// Apply φ (forward) or the STE mask (loss with quantized logits).
    pub apply_phi: u32,
    /// N.
    pub states: u32,
    /// Classes.
    pub classes: u32,
    /// Batch.
    pub batch: u32,
    /// Add the loss to the running sums.
    pub accumulate: u32,
    /// 1/Δ.
    pub inv_spacing: f32,
    /// N/2.
    pub half_states: f32,
    /// A.
    pub amplitude: f32,
    /// 2A/(N − 1).
    pub level_step: f32,
    /// STE slope.
    pub ste_slope: f32,
    /// STE threshold.
    pub ste_threshold: f32,
    /// Learning rate.
    pub lr: f32,
    /// Momentum.
    pub momentum: f32,
    /// 1/B.
    pub inv_batch: f32,
    /// Padding.
    pub pad: [u32; 3],
}

/// The fields every dispatch shares: φ, the classes and the STE.
fn base(spec: &ModelSpec) -> TrainParams {
    let (states, inv_spacing, half_states, amplitude, level_step) = match spec.phi {
        Phi::Uniform {
            states,
            spacing,
            amplitude,
        } => (
            states,
            (1.0 / spacing) as f32,
            states as f32 / 2.0,
            amplitude as f32,
            (2.0 * amplitude / (states as f64 - 1.0)) as f32,
        ),
        Phi::Surrogate => (2, 1.0, 1.0, 1.0, 2.0),
    };
    TrainParams {
        states,
        inv_spacing,
        half_states,
        amplitude,
        level_step,
        classes: spec.classes as u32,
        ste_slope: spec.ste_slope as f32,
        ste_threshold: spec.ste_threshold as f32,
        ..Default::default()
    }
}

/// The parameter slots of one step (role 0) or evaluation (role 1) on a
/// batch of `b`: per layer l the forward (slot l), backward (L + l) and
/// update (2L + l) products, then the loss (3L).
pub fn slots(
    spec: &ModelSpec,
    role: usize,
    b: usize,
    lr: f32,
    momentum: f32,
) -> Vec<(usize, TrainParams)> {
    let depth = spec.depth;
    let base = base(spec);
    let mut slots = Vec::with_capacity(3 * depth + 1);
    let mut put = |k: usize, p: TrainParams| slots.push((k, p));
    for l in 0..depth {
        let (fi, fo) = spec.layer_shape(l);
        // forward: H (fo × B) = W (fo × fi) · A (fi × B)
        put(
            l,
            TrainParams {
                m: fo as u32,
                n: b as u32,
                k: fi as u32,
                rsa: fi as u32,
                csa: 1,
                rsb: b as u32,
                csb: 1,
                apply_phi: (l + 1 < depth || spec.quantize_logits) as u32,
                ..base
            },
        );
        // backward: G_prev (fi × B) = Wᵀ (fi × fo) · G (fo × B)
        put(
            depth + l,
            TrainParams {
                m: fi as u32,
                n: b as u32,
                k: fo as u32,
                rsa: 1,
                csa: fi as u32,
                rsb: b as u32,
                csb: 1,
                ..base
            },
        );
        // update: ΔW (fo × fi) = G (fo × B) · Aᵀ (B × fi)
        put(
            2 * depth + l,
            TrainParams {
                m: fo as u32,
                n: fi as u32,
                k: b as u32,
                rsa: b as u32,
                csa: 1,
                rsb: 1,
                csb: b as u32,
                lr,
                momentum,
                ..base
            },
        );
    }
    put(
        3 * depth,
        TrainParams {
            batch: b as u32,
            apply_phi: spec.quantize_logits as u32,
            accumulate: (role == 0) as u32,
            inv_batch: 1.0 / b as f32,
            ..base
        },
    );
    slots
}
