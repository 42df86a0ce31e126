//! The CPU training step: forward, softmax cross-entropy, straight-through
//! backward and SGD with momentum, as plain loops around a blocked GEMM
//! (`matrixmultiply`, the crate the simulator uses), rows of every product
//! split across threads.
//!
//! The CPU twin of `shaders/train_*.wgsl`, with the same layouts: every
//! activation, pre-activation and gradient is feature-major, X[i·B + b] for
//! unit i and input b of a batch of B; weights are fan_out × fan_in,
//! row-major. Per layer l with input A (fan_in × B):
//!
//! * product: C = A·B, strided, [`gemm`]                 (`train_gemm`)
//! * forward: H = W·A + b, A' = φ(H)                    (`train_forward`)
//! * backward: G_A = Wᵀ·G, G_prev = G_A ⊙ s·1{|H_prev| ≤ t}   (`train_backward`)
//! * gradient and update: ΔW = G·Aᵀ, Δb = Σ_b G, v ← μv + Δ, w ← w − ηv  (`train_update`)
//! * loss: p = softmax(logits), ℓ = −ln p_y, G_logits = (p − e_y)/B      (`train_loss`)
//!
//! Generic over f32 (training) and f64 (the finite-difference test).

use crate::train::model::{ModelSpec, Params};
use rayon::prelude::*;

/// The float types the step runs in.
pub trait Real:
    Copy
    + Default
    + PartialOrd
    + Send
    + Sync
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + 'static
{
    /// Conversion from f64.
    fn of(x: f64) -> Self;
    /// Conversion to f64.
    fn f64(self) -> f64;
    /// C (m × n) = A (m × k) · B (k × n) with the given element strides, β = 0.
    ///
    /// # Safety
    /// The strides must address memory inside the slices' allocations.
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        c: *mut Self,
    );
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        c: *mut f32,
    ) {
        matrixmultiply::sgemm(
            m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, n as isize, 1,
        );
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        c: *mut f64,
    ) {
        matrixmultiply::dgemm(
            m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, n as isize, 1,
        );
    }
}

/// A (m × k, strides rsa/csa) times B (k × n, strides rsb/csb) into the
/// contiguous row-major C (m × n); blocks of rows of C go to threads (each
/// element is one GEMM's full sum over k, so the result does not depend on
/// the thread count). The CPU twin of `shaders/train_gemm.wgsl`.
pub fn gemm<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    (rsa, csa): (usize, usize),
    b: &[T],
    (rsb, csb): (usize, usize),
    c: &mut [T],
) {
    assert_eq!(c.len(), m * n);
    assert!(m == 0 || k == 0 || (m - 1) * rsa + (k - 1) * csa < a.len());
    assert!(k == 0 || n == 0 || (k - 1) * rsb + (n - 1) * csb < b.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.iter_mut().for_each(|x| *x = T::default());
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let rows = m.div_ceil(4 * threads).max(8);
    c.par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let r0 = ci * rows;
            let mr = chunk.len() / n;
            // SAFETY: rows r0..r0+mr of A lie inside `a` (asserted above for all
            // m rows), B is read whole, and `chunk` is mr × n.
            unsafe {
                T::gemm(
                    mr,
                    k,
                    n,
                    a.as_ptr().add(r0 * rsa),
                    rsa as isize,
                    csa as isize,
                    b.as_ptr(),
                    rsb as isize,
                    csb as isize,
                    chunk.as_mut_ptr(),
                )
            }
        });
}

/// The straight-through derivative s·1{|h| ≤ t}.
#[inline(always)]
pub(super) fn ste<T: Real>(h: T, s: T, t: T) -> T {
    let zero = T::default();
    let abs = if h < zero { zero - h } else { h };
    if abs <= t {
        s
    } else {
        zero
    }
}

/// Loss and accuracy of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BatchLoss {
    /// Σ over the batch of −ln p_y.
    pub loss_sum: f64,
    /// Correct predictions with ties broken uniformly at random, in
    /// expectation: an input whose label is among the k classes sharing the
    /// largest logit counts 1/k (quantized logits tie often; a network whose
    /// logits are all equal scores chance, 1/classes, whatever its labels).
    pub correct: f64,
    /// Inputs whose largest logit is shared by two or more classes.
    pub ties: usize,
}

impl BatchLoss {
    /// Adds one input whose largest logit is shared by `k` ≥ 1 classes,
    /// `label_top` when its label is one of them.
    pub fn count(&mut self, k: usize, label_top: bool) {
        if label_top {
            self.correct += 1.0 / k as f64;
        }
        if k > 1 {
            self.ties += 1;
        }
    }
}

/// One network being trained on the CPU, with its optimizer state and the
/// buffers of its last forward and backward pass.
#[derive(Debug, Clone)]
pub struct Trainer<T> {
    /// The network.
    pub spec: ModelSpec,
    /// Weights and biases.
    pub params: Params<T>,
    /// Momentum buffers.
    pub velocity: Params<T>,
    /// Gradients of the last backward pass (of the mean loss over the batch).
    pub grads: Params<T>,
    pub(super) batch: usize,
    /// Pre-activations per layer, fan_out × B.
    pub(super) h: Vec<Vec<T>>,
    /// φ(H) per layer (the logits' only when they are quantized).
    pub(super) a: Vec<Vec<T>>,
    /// Gradient with respect to the current layer's pre-activations.
    pub(super) g: Vec<T>,
    pub(super) g_prev: Vec<T>,
    /// Scratch of the fused step (`train::fused`): packed operands, padded G.
    pub(super) pack: Vec<T>,
    pub(super) gpad: Vec<T>,
}

impl<T: Real> Trainer<T> {
    /// A trainer starting from `params` with zero momentum.
    pub fn new(spec: &ModelSpec, params: Params<T>) -> Self {
        Trainer {
            spec: spec.clone(),
            velocity: Params::zeros(spec),
            grads: Params::zeros(spec),
            params,
            batch: 0,
            h: Vec::new(),
            a: Vec::new(),
            g: Vec::new(),
            g_prev: Vec::new(),
            pack: Vec::new(),
            gpad: Vec::new(),
        }
    }

    pub(super) fn resize(&mut self, batch: usize) {
        if self.batch == batch && !self.h.is_empty() {
            return;
        }
        self.batch = batch;
        self.h = (0..self.spec.depth)
            .map(|l| vec![T::default(); self.spec.layer_shape(l).1 * batch])
            .collect();
        self.a = self.h.clone();
    }

    /// The forward pass of `x` (input_dim × B, feature-major); returns the
    /// logits (classes × B).
    pub fn forward(&mut self, x: &[T], batch: usize) -> &[T] {
        assert_eq!(x.len(), self.spec.input_dim * batch, "input size");
        self.resize(batch);
        let depth = self.spec.depth;
        let spec = self.spec.clone();
        for l in 0..depth {
            let (fan_in, fan_out) = spec.layer_shape(l);
            let (done, rest) = self.a.split_at_mut(l);
            let input: &[T] = if l == 0 { x } else { &done[l - 1] };
            let h = &mut self.h[l];
            gemm(
                fan_out,
                fan_in,
                batch,
                &self.params.weights[l],
                (fan_in, 1),
                input,
                (batch, 1),
                h,
            );
            let bias = &self.params.biases[l];
            let apply_phi = l + 1 < depth || spec.quantize_logits;
            let out = &mut rest[0];
            h.par_chunks_mut(batch)
                .zip(out.par_chunks_mut(batch))
                .enumerate()
                .for_each(|(o, (hr, ar))| {
                    let b = bias[o];
                    for (hv, av) in hr.iter_mut().zip(ar.iter_mut()) {
                        *hv = *hv + b;
                        if apply_phi {
                            *av = T::of(spec.phi_f64(hv.f64()));
                        }
                    }
                });
        }
        if spec.quantize_logits {
            &self.a[depth - 1]
        } else {
            &self.h[depth - 1]
        }
    }

    /// Pre-activations H of every layer in the last forward pass
    /// (fan_out × B each).
    pub fn pre_activations(&self) -> &[Vec<T>] {
        &self.h
    }

    /// φ(H) of every layer in the last forward pass (the last layer's only
    /// when the logits are quantized).
    pub fn activations(&self) -> &[Vec<T>] {
        &self.a
    }

    /// Softmax cross-entropy of the last forward pass against `labels`;
    /// leaves ∂(mean loss)/∂logits in the backward buffer.
    pub fn loss(&mut self, labels: &[u8]) -> BatchLoss {
        let (b, classes, depth) = (self.batch, self.spec.classes, self.spec.depth);
        assert_eq!(labels.len(), b, "labels");
        let logits = if self.spec.quantize_logits {
            &self.a[depth - 1]
        } else {
            &self.h[depth - 1]
        };
        self.g.clear();
        self.g.resize(classes * b, T::default());
        let mut out = BatchLoss::default();
        let inv_b = 1.0 / b as f64;
        for j in 0..b {
            let y = labels[j] as usize;
            let col = |c: usize| logits[c * b + j].f64();
            let mut best = 0;
            for c in 1..classes {
                if col(c) > col(best) {
                    best = c;
                }
            }
            let m = col(best);
            let k = (0..classes).filter(|&c| col(c) == m).count();
            out.count(k, col(y) == m);
            let z: f64 = (0..classes).map(|c| (col(c) - m).exp()).sum();
            out.loss_sum += z.ln() + m - col(y);
            for c in 0..classes {
                let p = (col(c) - m).exp() / z;
                let t = if c == y { 1.0 } else { 0.0 };
                self.g[c * b + j] = T::of((p - t) * inv_b);
            }
        }
        out
    }

    /// The straight-through backward pass of the last forward pass on `x`
    /// (after [`Trainer::loss`]): fills `grads`.
    pub fn backward(&mut self, x: &[T]) {
        let (b, depth) = (self.batch, self.spec.depth);
        let (s, t) = (T::of(self.spec.ste_slope), T::of(self.spec.ste_threshold));
        if self.spec.quantize_logits {
            for (g, &h) in self.g.iter_mut().zip(&self.h[depth - 1]) {
                *g = *g * ste(h, s, t);
            }
        }
        for l in (0..depth).rev() {
            let (fan_in, fan_out) = self.spec.layer_shape(l);
            let input: &[T] = if l == 0 { x } else { &self.a[l - 1] };
            // ΔW = G (fan_out × B) · Aᵀ (B × fan_in).
            gemm(
                fan_out,
                b,
                fan_in,
                &self.g,
                (b, 1),
                input,
                (1, b),
                &mut self.grads.weights[l],
            );
            for (o, gb) in self.grads.biases[l].iter_mut().enumerate() {
                *gb = self.g[o * b..(o + 1) * b]
                    .iter()
                    .fold(T::default(), |acc, &v| acc + v);
            }
            if l > 0 {
                // G_A = Wᵀ (fan_in × fan_out) · G (fan_out × B), then the STE mask.
                self.g_prev.resize(fan_in * b, T::default());
                gemm(
                    fan_in,
                    fan_out,
                    b,
                    &self.params.weights[l],
                    (1, fan_in),
                    &self.g,
                    (b, 1),
                    &mut self.g_prev,
                );
                let h = &self.h[l - 1];
                self.g_prev
                    .par_chunks_mut(b)
                    .zip(h.par_chunks(b))
                    .for_each(|(gr, hr)| {
                        for (g, &hv) in gr.iter_mut().zip(hr) {
                            *g = *g * ste(hv, s, t);
                        }
                    });
                std::mem::swap(&mut self.g, &mut self.g_prev);
            }
        }
    }

    /// SGD with momentum (PyTorch's form, no dampening): v ← μv + ∇, w ← w − ηv.
    pub fn update(&mut self, lr: T, momentum: T) {
        let upd = |w: &mut Vec<T>, v: &mut Vec<T>, g: &Vec<T>| {
            w.par_iter_mut()
                .zip(v.par_iter_mut())
                .zip(g.par_iter())
                .for_each(|((w, v), &g)| {
                    *v = momentum * *v + g;
                    *w = *w - lr * *v;
                });
        };
        for l in 0..self.spec.depth {
            upd(
                &mut self.params.weights[l],
                &mut self.velocity.weights[l],
                &self.grads.weights[l],
            );
            upd(
                &mut self.params.biases[l],
                &mut self.velocity.biases[l],
                &self.grads.biases[l],
            );
        }
    }

    /// One training step on a batch; returns its loss (before the update).
    pub fn step(&mut self, x: &[T], labels: &[u8], lr: T, momentum: T) -> BatchLoss {
        self.forward(x, labels.len());
        let loss = self.loss(labels);
        self.backward(x);
        self.update(lr, momentum);
        loss
    }

    /// Loss and accuracy of a batch without training.
    pub fn evaluate(&mut self, x: &[T], labels: &[u8]) -> BatchLoss {
        self.forward(x, labels.len());
        self.loss(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::model::Phi;

    fn tiny(phi: Phi, quantize_logits: bool) -> ModelSpec {
        ModelSpec {
            input_dim: 7,
            width: 9,
            depth: 4,
            classes: 5,
            phi,
            ste_slope: 1.3,
            ste_threshold: 1.0,
            sigma_w: 1.5,
            sigma_b: 0.3,
            quantize_logits,
        }
    }

    fn batch(dim: usize, b: usize) -> (Vec<f64>, Vec<u8>) {
        let s = crate::rng::Stream::new(99, 3);
        let mut x = vec![0f32; dim * b];
        s.fill_row(0, 0, &mut x);
        (
            x.iter().map(|&v| v as f64).collect(),
            (0..b).map(|j| (j * 3 % 5) as u8).collect(),
        )
    }

    /// Mean loss of the surrogate network at `params`.
    fn mean_loss(spec: &ModelSpec, p: &Params<f64>, x: &[f64], y: &[u8]) -> f64 {
        let mut t = Trainer::new(spec, p.clone());
        t.evaluate(x, y).loss_sum / y.len() as f64
    }

    /// The STE backward pass is the exact gradient of the surrogate network
    /// s·clamp(h, −t, t) (same mask, same slope), so central differences of
    /// that network's loss must match it to the differences' O(ε²)
    /// truncation and f64 rounding (ε = 1e-6: errors ≲ 1e-9).
    #[test]
    fn ste_backward_equals_finite_differences_of_the_surrogate_network() {
        for ql in [false, true] {
            let spec = tiny(Phi::Surrogate, ql);
            let p = Params::init(&spec, 5).to_f64();
            let (x, y) = batch(spec.input_dim, 6);
            let mut t = Trainer::new(&spec, p.clone());
            t.forward(&x, y.len());
            t.loss(&y);
            t.backward(&x);
            // No pre-activation within 1e-4 of a kink, or the differences straddle it.
            let near =
                t.h.iter()
                    .flatten()
                    .filter(|h| (h.abs() - 1.0).abs() < 1e-4)
                    .count();
            assert_eq!(
                near, 0,
                "choose another seed: a pre-activation sits at a kink"
            );
            let eps = 1e-6;
            let (mut checked, mut nonzero) = (0, 0);
            for l in 0..spec.depth {
                for k in 0..p.weights[l].len() + p.biases[l].len() {
                    let bump = |d: f64| {
                        let mut q = p.clone();
                        let nw = q.weights[l].len();
                        if k < nw {
                            q.weights[l][k] += d;
                        } else {
                            q.biases[l][k - nw] += d;
                        }
                        mean_loss(&spec, &q, &x, &y)
                    };
                    let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
                    let nw = p.weights[l].len();
                    let g = if k < nw {
                        t.grads.weights[l][k]
                    } else {
                        t.grads.biases[l][k - nw]
                    };
                    assert!(
                        (g - fd).abs() <= 1e-8 + 1e-6 * fd.abs(),
                        "quantized logits {ql}, layer {l}, parameter {k}: backward {g:e}, finite differences {fd:e}"
                    );
                    checked += 1;
                    if g.abs() > 1e-6 {
                        nonzero += 1;
                    }
                }
            }
            // Most gradients are non-zero (a test of zeros would prove nothing).
            assert!(nonzero * 2 > checked, "{nonzero} of {checked} non-zero");
        }
    }

    /// The forward pass is H = W·A + b then φ, against a plain triple loop.
    #[test]
    fn forward_matches_plain_loops() {
        let spec = tiny(
            Phi::Uniform {
                states: 4,
                spacing: 0.9,
                amplitude: 1.0,
            },
            false,
        );
        let p = Params::init(&spec, 2).to_f64();
        let (x, y) = batch(spec.input_dim, 3);
        let mut t = Trainer::new(&spec, p.clone());
        let logits = t.forward(&x, y.len()).to_vec();
        let b = y.len();
        let mut a = x.clone();
        for l in 0..spec.depth {
            let (fi, fo) = spec.layer_shape(l);
            let mut h = vec![0.0; fo * b];
            for o in 0..fo {
                for j in 0..b {
                    h[o * b + j] = p.biases[l][o]
                        + (0..fi)
                            .map(|i| p.weights[l][o * fi + i] * a[i * b + j])
                            .sum::<f64>();
                }
            }
            a = if l + 1 < spec.depth {
                h.iter().map(|&v| spec.phi_f64(v)).collect()
            } else {
                h
            };
        }
        for (u, v) in logits.iter().zip(&a) {
            assert!((u - v).abs() < 1e-12, "{u} vs {v}");
        }
    }
}
