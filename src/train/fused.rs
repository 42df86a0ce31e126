//! The f32 training step the CPU backend runs: [`Trainer`]'s forward, loss,
//! backward and update with the products of [`crate::train::gemm`] and what
//! follows each product fused into it (bias and φ after the forward product,
//! the STE mask after the input gradient, the momentum update in place of the
//! weight gradient). The same step as [`Trainer::step`] (the plain twin, also
//! the f64 path of the finite-difference test) to f32 rounding: the products
//! sum over k in k order, which `matrixmultiply` need not do. No buffer is
//! allocated once the first step has sized them.

use crate::sim::gemm::Kernel;
use crate::train::cpu::{ste, BatchLoss, Trainer};
use crate::train::gemm::{
    forward, input_grad, pack_columns, pack_transposed, pad_rows_cols, weight_update,
};

/// ⌊v⌋ for |v| < 2⁵² (exact: truncation through i64, one step down for
/// negative non-integers), without the libm call that `f64::floor` is on
/// x86-64 targets without SSE4.1.
#[inline(always)]
fn floor_small(v: f64) -> f64 {
    let t = v as i64 as f64;
    if t > v {
        t - 1.0
    } else {
        t
    }
}

/// [`ModelSpec::phi_f64`] of an f32, the same bits: the uniform quantizer's
/// level index ⌊x/Δ + N/2⌋ clamped to [0, N − 1] is unchanged by clamping
/// x/Δ + N/2 to [−1, N] first, which keeps the floor in `floor_small`'s range.
#[inline(always)]
fn phi_inline(spec: &crate::train::model::ModelSpec, x: f32) -> f32 {
    match spec.phi {
        crate::train::model::Phi::Uniform {
            states,
            spacing,
            amplitude,
        } => {
            let n = states as f64;
            let u = x as f64 / spacing + n / 2.0;
            if u.is_nan() {
                return f32::NAN;
            }
            let k = floor_small(u.clamp(-1.0, n)).clamp(0.0, n - 1.0);
            (-amplitude + k * (2.0 * amplitude / (n - 1.0))) as f32
        }
        crate::train::model::Phi::Surrogate => spec.phi_f64(x as f64) as f32,
    }
}

impl Trainer<f32> {
    /// The forward pass of `x` (input_dim × B, feature-major) through the
    /// fused products; returns the logits (classes × B).
    pub fn forward_fused(&mut self, kernel: Kernel, x: &[f32], batch: usize) -> &[f32] {
        assert_eq!(x.len(), self.spec.input_dim * batch, "input size");
        self.resize(batch);
        let depth = self.spec.depth;
        let spec = &self.spec;
        let phi = |v: f32| phi_inline(spec, v);
        for l in 0..depth {
            let (fan_in, fan_out) = spec.layer_shape(l);
            let (done, rest) = self.a.split_at_mut(l);
            let input: &[f32] = if l == 0 { x } else { &done[l - 1] };
            pack_columns(input, fan_in, batch, &mut self.pack);
            let apply_phi = l + 1 < depth || spec.quantize_logits;
            forward(
                kernel,
                &self.params.weights[l],
                (fan_out, fan_in),
                &self.pack,
                batch,
                &self.params.biases[l],
                &mut self.h[l],
                &mut rest[0],
                apply_phi.then_some(&phi),
            );
        }
        if self.spec.quantize_logits {
            &self.a[depth - 1]
        } else {
            &self.h[depth - 1]
        }
    }

    /// The straight-through backward pass of the last forward pass on `x`
    /// (after [`Trainer::loss`]) and the momentum update, layer by layer
    /// from the top: the input gradient with the layer's weights before
    /// their update, then the update. `grads` is not filled (the weight
    /// gradient is never stored); [`Trainer::backward`] fills it.
    pub fn backward_update_fused(&mut self, kernel: Kernel, x: &[f32], lr: f32, momentum: f32) {
        let (b, depth) = (self.batch, self.spec.depth);
        let (s, t) = (self.spec.ste_slope as f32, self.spec.ste_threshold as f32);
        if self.spec.quantize_logits {
            for (g, &h) in self.g.iter_mut().zip(&self.h[depth - 1]) {
                *g *= ste(h, s, t);
            }
        }
        for l in (0..depth).rev() {
            let (fan_in, fan_out) = self.spec.layer_shape(l);
            let stride = pad_rows_cols(&self.g, fan_out, b, &mut self.gpad);
            if l > 0 {
                self.g_prev.resize(fan_in * b, 0.0);
                let h = &self.h[l - 1];
                input_grad(
                    kernel,
                    &self.params.weights[l],
                    (fan_out, fan_in),
                    &self.gpad,
                    stride,
                    b,
                    &mut self.g_prev,
                    &|i, j| ste(h[i * b + j], s, t),
                );
            }
            let biases = &mut self.params.biases[l];
            for (o, (bias, v)) in biases
                .iter_mut()
                .zip(self.velocity.biases[l].iter_mut())
                .enumerate()
            {
                let gb = self.g[o * b..(o + 1) * b]
                    .iter()
                    .fold(0f32, |acc, &v| acc + v);
                *v = momentum * *v + gb;
                *bias -= lr * *v;
            }
            let input: &[f32] = if l == 0 { x } else { &self.a[l - 1] };
            pack_transposed(input, fan_in, b, &mut self.pack);
            weight_update(
                kernel,
                &mut self.params.weights[l],
                &mut self.velocity.weights[l],
                (fan_out, fan_in),
                &self.gpad,
                stride,
                &self.pack,
                b,
                (lr, momentum),
            );
            if l > 0 {
                std::mem::swap(&mut self.g, &mut self.g_prev);
            }
        }
    }

    /// One fused training step on a batch; returns its loss (before the update).
    pub fn step_fused(
        &mut self,
        kernel: Kernel,
        x: &[f32],
        labels: &[u8],
        lr: f32,
        momentum: f32,
    ) -> BatchLoss {
        self.forward_fused(kernel, x, labels.len());
        let loss = self.loss(labels);
        self.backward_update_fused(kernel, x, lr, momentum);
        loss
    }

    /// Loss and accuracy of a batch without training (fused forward).
    pub fn evaluate_fused(&mut self, kernel: Kernel, x: &[f32], labels: &[u8]) -> BatchLoss {
        self.forward_fused(kernel, x, labels.len());
        self.loss(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::model::{ModelSpec, Phi};

    /// The inline quantizer gives `phi_f64`'s bits on a dense sweep across
    /// every threshold (and exactly at them), far outside, at ±∞ and NaN.
    #[test]
    fn inline_phi_equals_phi_f64_bit_for_bit() {
        for (states, spacing) in [(2u32, 1.0), (3, 0.7), (4, 0.4387), (16, 0.1234), (65, 0.02)] {
            let spec = ModelSpec {
                input_dim: 1,
                width: 1,
                depth: 2,
                classes: 2,
                phi: Phi::Uniform {
                    states,
                    spacing,
                    amplitude: 1.3,
                },
                ste_slope: 1.0,
                ste_threshold: 1.0,
                sigma_w: 1.0,
                sigma_b: 0.0,
                quantize_logits: false,
            };
            let mut xs: Vec<f32> = (-40_000..=40_000)
                .map(|i| i as f32 * 1e-4 * states as f32)
                .collect();
            for k in 0..=states {
                let t = ((k as f64 - states as f64 / 2.0) * spacing) as f32;
                xs.extend([
                    t,
                    f32::from_bits(t.to_bits() + 1),
                    f32::from_bits(t.to_bits().wrapping_sub(1)),
                ]);
            }
            xs.extend([
                0.0,
                -0.0,
                1e30,
                -1e30,
                f32::MAX,
                f32::MIN,
                f32::INFINITY,
                f32::NEG_INFINITY,
            ]);
            for x in xs {
                let (a, b) = (phi_inline(&spec, x), spec.phi_f64(x as f64) as f32);
                if x.is_nan() {
                    assert!(a.is_nan() && b.is_nan());
                    continue;
                }
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "N = {states}, x = {x:e}: {a} against {b}"
                );
            }
            assert!(phi_inline(&spec, f32::NAN).is_nan());
        }
    }
}
