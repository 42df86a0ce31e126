//! Backward pass with a straight-through estimator, on the CPU: gradients
//! δ^l = φ'_STE(h^l) ⊙ (W^{l+1})ᵀ δ^{l+1} through the same generated
//! weights as the forward pass (every weight ensemble; the GPU backward
//! kernel covers Gaussian weights), with per-layer gradient-norm ratios and
//! gradient correlations aggregated over networks.
//!
//! The two inputs of a pair receive the same output gradient (a fresh
//! standard-normal vector per pair and network), so their gradient
//! correlation starts at 1 and decays going down, as
//! [`crate::theory::backward::backward_curve`] predicts with `grad_c_out = 1`.

use crate::error::{Error, Result};
use crate::rng::Stream;
use crate::sim::hadamard;
use crate::sim::layer::{sgemm, LayerWeights};
use crate::sim::spec::{feature_major, Inputs, SimActivation, SimSpec, Weights};
use crate::sim::stats::{block_stats, Estimate};
use crate::sim::GradientPass;
pub use crate::sim::SampleGradients;
use crate::theory::backward::Ste;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes of stored forward pre-activations a backward run may hold.
pub const STORED_ACTIVATIONS_LIMIT: usize = 4 << 30;

/// Reserved layer index of the output-gradient stream.
const OUTPUT_GRADIENT_LAYER: u32 = u32::MAX - 1;

/// One layer of a backward curve.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BackwardLayer {
    /// Layer l (gradient with respect to h^l).
    pub layer: usize,
    /// ‖δ^l‖²/‖δ^{l+1}‖², averaged over the group's inputs (None at l = L).
    pub norm_ratio: Option<Estimate>,
    /// Correlation of the two inputs' gradients δ^l, averaged over pairs.
    pub grad_corr: Estimate,
    /// ‖δ^l‖²/‖δ^L‖², averaged over the group's inputs (theory: Π M).
    pub norm_cumulative: Estimate,
}

/// The backward curve of the pairs sharing one c⁰.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackwardCurve {
    /// Input correlation c⁰.
    pub c0: f64,
    /// Layers 0..=L.
    pub layers: Vec<BackwardLayer>,
    /// Empirical NTK Θ^L(a, a) of f = v·h^L/√n (v the output gradient),
    /// with the STE surrogate: Σ_l (δ_a^l·δ_a^l/n)(σ_w² φ_a^{l−1}·φ_a^{l−1}/n + σ_b²).
    pub ntk_aa: Estimate,
    /// Empirical NTK Θ^L(a, b) of the pair, likewise.
    pub ntk_ab: Estimate,
}

impl LayerWeights<'_> {
    /// The transposed layer, CPU twin of `shaders/backward.wgsl` (before
    /// its STE mask): `out = Wᵀδ`, out[j·B + b] = Σᵢ W_ij·δ[i·B + b]
    /// through the generated rows (Gaussian, Rademacher), or
    /// Sᵀδ = σ_w·n^{-3/2} D₁ H D₂ H D₃ H δ for the Hadamard ensemble (S is
    /// orthogonal, so this is also S⁻¹δ, scaled).
    pub fn transposed(&self, delta: &[f32], batch: usize, out: &mut [f32]) {
        match self.ensemble {
            Weights::Gaussian => self.dense_transposed(Stream::fill_row, delta, batch, out),
            Weights::Rademacher => self.dense_transposed(Stream::fill_row_signs, delta, batch, out),
            Weights::Hadamard => {
                out.copy_from_slice(delta);
                hadamard::apply_transposed_unscaled(out, self.n, batch, self.stream, self.layer);
                let ws = self.ensemble.scale(self.sigma_w, self.n);
                out.par_iter_mut().for_each(|v| *v *= ws);
            }
        }
    }

    /// Wᵀδ for a dense ensemble whose standardized rows `fill` writes. Rows
    /// are split into a fixed number of ranges whose partial products are
    /// added in range order (reproducible whatever the thread count).
    fn dense_transposed(
        &self,
        fill: impl Fn(&Stream, u32, u32, &mut [f32]) + Sync,
        delta: &[f32],
        batch: usize,
        out: &mut [f32],
    ) {
        const RANGES: usize = 8;
        const BLOCK: usize = 16;
        let n = self.n;
        let rows_per = n.div_ceil(RANGES);
        let partials: Vec<Vec<f32>> = (0..RANGES)
            .into_par_iter()
            .map(|k| {
                let (r0, r1) = (k * rows_per, ((k + 1) * rows_per).min(n));
                let mut acc = vec![0f32; n * batch];
                let mut w = vec![0f32; BLOCK * n];
                for i0 in (r0..r1).step_by(BLOCK) {
                    let r = BLOCK.min(r1 - i0);
                    self.fill_rows(&fill, i0, r, &mut w);
                    // acc (n × B) += W_blkᵀ (n × r) · δ_blk (r × B)
                    let d = &delta[i0 * batch..];
                    sgemm(n, r, batch, &w, (1, n), d, (batch, 1), 1.0, &mut acc);
                }
                acc
            })
            .collect();
        let ws = self.ensemble.scale(self.sigma_w, n);
        out.par_chunks_mut(batch).enumerate().for_each(|(j, row)| {
            for (b, o) in row.iter_mut().enumerate() {
                let mut s = 0f32;
                for p in &partials {
                    s += p[j * batch + b];
                }
                *o = ws * s;
            }
        });
    }
}

/// The transposed product with the weights of `layer` in the ensemble
/// `weights` ([`LayerWeights::transposed`]).
pub fn ensemble_transposed_layer(
    weights: Weights,
    delta: &[f32],
    n: usize,
    batch: usize,
    stream: &Stream,
    layer: u32,
    sigma_w: f64,
    out: &mut [f32],
) {
    let w = LayerWeights {
        ensemble: weights,
        stream,
        layer,
        n,
        sigma_w,
        sigma_b: 0.0,
    };
    w.transposed(delta, batch, out);
}

/// The output gradient of network `sample`: one standard-normal vector per
/// pair, shared by its two inputs (feature-major, n × B).
pub fn output_gradient(stream: &Stream, n: usize, batch: usize) -> Vec<f32> {
    let mut delta = vec![0f32; n * batch];
    let mut g = vec![0f32; n];
    for p in 0..batch / 2 {
        stream.fill_row(OUTPUT_GRADIENT_LAYER, p as u32, &mut g);
        for (i, &v) in g.iter().enumerate() {
            delta[i * batch + 2 * p] = v;
            delta[i * batch + 2 * p + 1] = v;
        }
    }
    delta
}

/// One network's forward and backward pass on the CPU.
pub fn cpu_sample(spec: &SimSpec, ste: &Ste, sample: u32) -> SampleGradients {
    let (n, depth) = (spec.width, spec.depth);
    let meas = spec.measurements();
    let batch = meas.batch;
    let act = SimActivation::from_activation(&spec.activation);
    let stream = Stream::new(spec.seed, sample);
    let mut hs = vec![feature_major(&spec.input_vectors(sample), n)];
    for l in 1..depth {
        let a: Vec<f32> = hs[l - 1].iter().map(|&x| act.eval(x)).collect();
        let mut h = vec![0f32; n * batch];
        LayerWeights::of(spec, &stream, l as u32).layer(&a, batch, &mut h, None);
        hs.push(h);
    }
    let mut delta = output_gradient(&stream, n, batch);
    let mut stats = vec![(Vec::new(), Vec::new()); depth + 1];
    stats[depth] = block_stats(&delta, batch, &meas);
    let (t, s) = (ste.threshold as f32, ste.slope as f32);
    for l in (0..depth).rev() {
        let mut back = vec![0f32; n * batch];
        LayerWeights::of(spec, &stream, (l + 1) as u32).transposed(&delta, batch, &mut back);
        for (d, &h) in back.iter_mut().zip(&hs[l]) {
            *d = if h.abs() <= t { s * *d } else { 0.0 };
        }
        delta = back;
        stats[l] = block_stats(&delta, batch, &meas);
    }
    SampleGradients {
        delta: stats,
        forward: hs,
    }
}

/// Runs forward and backward passes of every network of `spec` (pair
/// inputs) with the STE surrogate `ste`, on the CPU, or on `gpu` when given
/// (the GPU backend: shaders/backward.wgsl); both aggregate the same way.
pub fn simulate_backward(
    spec: &SimSpec,
    ste: &Ste,
    cancel: &AtomicBool,
    gpu: Option<&dyn GradientPass>,
) -> Result<Vec<BackwardCurve>> {
    spec.validate()?;
    let Inputs::Pairs { c0, pairs } = &spec.inputs else {
        return Err(Error::invalid(
            "inputs",
            "circle",
            "the backward pass is measured on pairs of inputs",
        ));
    };
    let (n, depth) = (spec.width, spec.depth);
    let meas = spec.measurements();
    let batch = meas.batch;
    let stored = (depth + 1)
        .saturating_mul(n)
        .saturating_mul(batch)
        .saturating_mul(4);
    if stored > STORED_ACTIVATIONS_LIMIT {
        return Err(Error::invalid(
            "depth × width × batch",
            format!("{} GiB of stored pre-activations", stored >> 30),
            &format!("the backward pass stores every layer: at most {} GiB; reduce depth, width or pairs", STORED_ACTIVATIONS_LIMIT >> 30),
        ));
    }
    if gpu.is_some() && spec.weights != Weights::Gaussian {
        return Err(Error::invalid(
            "weights",
            spec.weights,
            "the GPU backward pass supports gaussian weights; run the backward pass of this ensemble on the CPU backend (--backend cpu)",
        ));
    }
    let act = SimActivation::from_activation(&spec.activation);
    let groups = c0.len();
    let nf = n as f64;
    let (sw2, sb2) = (spec.sigma_w * spec.sigma_w, spec.sigma_b * spec.sigma_b);
    // Welford sums over networks: [layer][group] → (ratio, corr); [group] → (Θ_aa, Θ_ab).
    let mut acc = vec![[(0f64, 0f64); 3]; (depth + 1) * groups];
    let mut ntk_acc = vec![[(0f64, 0f64); 2]; groups];
    let mut samples = 0usize;
    let welford = |w: &mut (f64, f64), x: f64, k: f64| {
        let dx = x - w.0;
        w.0 += dx / k;
        w.1 += dx * (x - w.0);
    };
    for sample in 0..spec.samples as u32 {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let sg = match gpu {
            None => cpu_sample(spec, ste, sample),
            Some(g) => {
                let stream = Stream::new(spec.seed, sample);
                let out = output_gradient(&stream, n, batch);
                g.sample_gradients(spec, ste, &spec.input_vectors(sample), &out, sample)?
            }
        };
        for (l, (sq, _)) in sg.delta.iter().enumerate() {
            if let Some(b) = sq.iter().position(|v| *v <= 0.0) {
                return Err(Error::Numerical(format!(
                    "network {sample}, layer {l}: the gradient of input {b} is exactly zero (every |h| > t = {}): \
                     ratios and correlations are undefined; raise the STE threshold",
                    ste.threshold
                )));
            }
        }
        let phi_stats: Vec<(Vec<f64>, Vec<f64>)> = sg
            .forward
            .iter()
            .map(|h| {
                let a: Vec<f32> = h.iter().map(|&x| act.eval(x)).collect();
                block_stats(&a, batch, &meas)
            })
            .collect();
        samples += 1;
        let k = samples as f64;
        for l in 0..=depth {
            let (sq, dots) = &sg.delta[l];
            for gi in 0..groups {
                let (mut r, mut c, mut cum) = (0.0, 0.0, 0.0);
                let top = &sg.delta[depth].0;
                for p in gi * pairs..(gi + 1) * pairs {
                    let (a, b) = (2 * p, 2 * p + 1);
                    cum += sq[a] / top[a] + sq[b] / top[b];
                    if l < depth {
                        let next = &sg.delta[l + 1].0;
                        r += sq[a] / next[a] + sq[b] / next[b];
                    }
                    c += dots[p] / (sq[a] * sq[b]).sqrt();
                }
                let w = &mut acc[l * groups + gi];
                welford(&mut w[0], r / (2 * pairs) as f64, k);
                welford(&mut w[1], c / *pairs as f64, k);
                welford(&mut w[2], cum / (2 * pairs) as f64, k);
            }
        }
        for (gi, w) in ntk_acc.iter_mut().enumerate() {
            let (mut taa, mut tab) = (0.0, 0.0);
            for p in gi * pairs..(gi + 1) * pairs {
                let (a, b) = (2 * p, 2 * p + 1);
                for l in 1..=depth {
                    let (dsq, ddot) = &sg.delta[l];
                    let (fsq, fdot) = &phi_stats[l - 1];
                    taa += 0.5
                        * (dsq[a] / nf * (sw2 * fsq[a] / nf + sb2)
                            + dsq[b] / nf * (sw2 * fsq[b] / nf + sb2));
                    tab += ddot[p] / nf * (sw2 * fdot[p] / nf + sb2);
                }
            }
            welford(&mut w[0], taa / *pairs as f64, k);
            welford(&mut w[1], tab / *pairs as f64, k);
        }
    }
    let est = |w: (f64, f64)| Estimate {
        mean: w.0,
        se: (samples >= 2).then(|| (w.1 / (samples as f64 - 1.0) / samples as f64).sqrt()),
    };
    Ok((0..groups)
        .map(|gi| BackwardCurve {
            c0: c0[gi],
            layers: (0..=depth)
                .map(|l| {
                    let w = acc[l * groups + gi];
                    BackwardLayer {
                        layer: l,
                        norm_ratio: (l < depth).then(|| est(w[0])),
                        grad_corr: est(w[1]),
                        norm_cumulative: est(w[2]),
                    }
                })
                .collect(),
            ntk_aa: est(ntk_acc[gi][0]),
            ntk_ab: est(ntk_acc[gi][1]),
        })
        .collect())
}
