//! φ as the simulators evaluate it, in f32: the CPU twin of
//! `shaders/phi.wgsl` (the piece the layer and Hadamard kernels apply to
//! each tile), with the same quantizer index and level table.

use crate::activation::Activation;

/// The activation as the simulators evaluate it, in f32, identically on the
/// CPU and in `shaders/phi.wgsl`.
#[derive(Debug, Clone, PartialEq)]
pub enum SimActivation {
    /// Uniform quantizer: k = clamp(⌊x·(1/Δ) + N/2⌋, 0, N − 1), φ = levels[k].
    Uniform {
        /// 1/Δ in f32.
        inv_spacing: f32,
        /// N/2 in f32.
        half_states: f32,
        /// The N levels in f32.
        levels: Vec<f32>,
    },
    /// General quantizer: φ = levels[#{k : thresholds[k] ≤ x}].
    Steps {
        /// Thresholds in f32.
        thresholds: Vec<f32>,
        /// Levels in f32.
        levels: Vec<f32>,
    },
    /// tanh.
    Tanh,
    /// clamp(x, −1, 1).
    HardTanh,
    /// Identity.
    Linear,
}

impl SimActivation {
    /// The f32 form of an activation.
    pub fn from_activation(a: &Activation) -> Self {
        match a {
            Activation::Quantized(q) => {
                let levels = q.levels().iter().map(|&y| y as f32).collect();
                match q.uniform_params() {
                    Some((n, spacing, _)) => SimActivation::Uniform {
                        inv_spacing: (1.0 / spacing) as f32,
                        half_states: (n as f64 / 2.0) as f32,
                        levels,
                    },
                    None => SimActivation::Steps {
                        thresholds: q.thresholds().iter().map(|&g| g as f32).collect(),
                        levels,
                    },
                }
            }
            Activation::Tanh => SimActivation::Tanh,
            Activation::HardTanh => SimActivation::HardTanh,
            Activation::Linear => SimActivation::Linear,
        }
    }

    /// k = clamp(⌊x/Δ + N/2⌋, 0, N − 1). A float-to-int cast truncates,
    /// which is the floor for t ≥ 0, and every t < 0 clamps to 0 either way;
    /// the same k as the shader's `floor` then `clamp`.
    #[inline(always)]
    fn uniform_index(x: f32, inv_spacing: f32, half_states: f32, states: usize) -> usize {
        let t = x * inv_spacing + half_states;
        (t.max(0.0) as usize).min(states - 1)
    }

    /// y = φ(x) elementwise (the activation chosen once, outside the loop).
    pub fn apply(&self, x: &[f32], y: &mut [f32]) {
        match self {
            SimActivation::Uniform {
                inv_spacing,
                half_states,
                levels,
            } => {
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = levels[Self::uniform_index(v, *inv_spacing, *half_states, levels.len())];
                }
            }
            other => {
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = other.eval(v);
                }
            }
        }
    }

    /// φ(x) in f32.
    #[inline]
    pub fn eval(&self, x: f32) -> f32 {
        match self {
            SimActivation::Uniform {
                inv_spacing,
                half_states,
                levels,
            } => levels[Self::uniform_index(x, *inv_spacing, *half_states, levels.len())],
            SimActivation::Steps { thresholds, levels } => {
                levels[thresholds.partition_point(|&g| g <= x)]
            }
            SimActivation::Tanh => x.tanh(),
            SimActivation::HardTanh => x.clamp(-1.0, 1.0),
            SimActivation::Linear => x,
        }
    }
}
