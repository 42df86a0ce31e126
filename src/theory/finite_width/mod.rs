//! The finite-width (1/n) theory of a pair of inputs (THEORY.md §9;
//! docs/finite-width.md): what a width-n experiment measures, not only its
//! infinite-width limit.
//!
//! Given layer l − 1, the rows of layer l are i.i.d. N(0, K^l) with
//! K^l = σ_b² + σ_w² (1/n) Σⱼ φ(h_j^{l−1}) φ(h_j^{l−1})ᵀ. Writing
//! K^l = K_∞^l + δ, E δ = M^l/n, n·Cov δ = V^l, to O(1/n):
//!
//! * M^{l+1} = J M^l + ½ H : V^l, V^{l+1} = σ_w⁴ C(K_∞^l) + J V^l Jᵀ
//!   (Yaida 2020; Roberts, Yaida & Hanin 2022), J and H from [`kernel`];
//! * the input layer is the simulator's own construction (src/sim/spec.rs):
//!   h⁰ = √(n q⁰)·(u, c⁰u + √(1 − c⁰²) v) with (u, v) a uniformly random
//!   orthonormal pair. One row of √n (u, v) has density
//!   ∝ (1 − |y|²/n)^{(n−4)/2} = ϕ(y)[1 − (1/n)(2L₂(|y|²/2)) + O(1/n²)],
//!   which gives M¹ = −H : (K⁰ K⁰ᵀ) (minus the second derivative of F
//!   along the ray K ↦ (1 + t)K⁰), and the sample of rows has exact second
//!   moments, which removes the part of the four-point noise that is linear
//!   in them: V¹ = σ_w⁴ C(K⁰) − J W(K⁰) Jᵀ;
//! * the measured kernel Ĝ^l is Wishart around K^l: Σ^l = V^l + W(K_∞^l),
//!   E ĉ = c + (1/n)[∇c·M + ½ tr(∇²c Σ)], n·Var ĉ = ∇cᵀ Σ ∇c; the same for
//!   q̂ = (q̂_a + q̂_b)/2 (the simulator's q̂ of a pair), which is linear in
//!   Ĝ; and n·Cov(Ĝ^l, Ĝ^{l'}) = J^{l'−1}⋯J^l Σ^l for l < l'.
//!
//! Layer 0 is the input, measured exactly (ĉ⁰ = c⁰, q̂⁰ = q⁰), as the
//! simulator reports it. Gaussian weights only: Rademacher weights add a
//! fourth-cumulant term and orthogonal (Hadamard) weights remove the
//! Wishart-like noise; neither is modelled.

pub mod kernel;
pub mod ste;

use crate::activation::{Activation, Quantizer};
use crate::error::{Error, Result};
use crate::theory::maps::Network;
use kernel::{contract, matmul, matvec, transpose, wishart, Jet, KernelMap, Mat3, AA, AB, BB};

/// Validity threshold: a layer whose ε₁ or ε₂ exceeds it is flagged.
pub const EPS_FLAG: f64 = 0.1;

/// Smallest width the expansion is evaluated at: one row of an orthonormal
/// pair has a density only for n > 4, and below 8 every layer is flagged anyway.
pub const MIN_WIDTH: usize = 8;

/// One layer of the width-independent expansion of one pair of inputs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Order1Layer {
    /// Layer l (0 = the inputs).
    pub layer: usize,
    /// Infinite-width q^l (both inputs: the pair's average).
    pub q: f64,
    /// Infinite-width c^l.
    pub c: f64,
    /// n·(E q̂ − q), q̂ the average of the pair's two q̂.
    pub dq: f64,
    /// n·(E ĉ − c).
    pub dc: f64,
    /// n·Var q̂ for one pair.
    pub var_q: f64,
    /// n·Var ĉ for one pair.
    pub var_c: f64,
    /// K_∞^l = (K_aa, K_ab, K_bb).
    #[serde(skip)]
    pub kernel: [f64; 3],
    /// M^l: n·(E K^l − K_∞^l).
    #[serde(skip)]
    pub mean_shift: [f64; 3],
    /// V^l: n·Cov K^l.
    #[serde(skip)]
    pub v: Mat3,
    /// Σ^l = V^l + W(K_∞^l): n·Cov of the measured kernel Ĝ^l (0 at layer 0).
    #[serde(skip)]
    pub sigma: Mat3,
    /// J at K_∞^l (the step from layer l to l + 1).
    #[serde(skip)]
    pub jacobian: Mat3,
    /// ∇c at K_∞^l.
    #[serde(skip)]
    pub grad_c: [f64; 3],
}

/// The width-independent 1/n expansion of a pair of inputs through a
/// network, layers 0..=L.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Expansion {
    /// Fixed point q* of the variance map.
    pub q_star: f64,
    /// Stable fixed point c* of the correlation map.
    pub c_star: f64,
    /// Input variance q⁰.
    pub q0: f64,
    /// Input correlation c⁰.
    pub c0: f64,
    /// Layers 0..=L.
    pub layers: Vec<Order1Layer>,
}

/// One layer of the prediction at width n for the average of P pairs per network.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WidthLayer {
    /// Layer l.
    pub layer: usize,
    /// Infinite-width q^l.
    pub q: f64,
    /// Infinite-width c^l.
    pub c: f64,
    /// Predicted E q̂ = q + dq/n.
    pub mean_q: f64,
    /// Predicted E ĉ = c + dc/n.
    pub mean_c: f64,
    /// Predicted standard deviation of one network's q̂ (its P-pair average).
    pub sd_q: f64,
    /// Predicted standard deviation of one network's ĉ (its P-pair average).
    pub sd_c: f64,
    /// ε₁ = n·Var ĉ / (n (1 − |c|)²): the fluctuation against the distance
    /// to the non-analytic point |c| = 1.
    pub eps1: f64,
    /// ε₂ = |n(E ĉ − c)| / (n |c − c*|): the correction against the signal.
    pub eps2: f64,
    /// ε₁ or ε₂ above [`EPS_FLAG`]: the expansion is not to be trusted here.
    pub flagged: bool,
}

fn quantizer(net: &Network) -> Result<&Quantizer> {
    match &net.activation {
        Activation::Quantized(q) => Ok(q),
        other => Err(Error::invalid(
            "activation",
            other.name(),
            "the finite-width expansion is implemented for quantized (step) activations only: \
             it integrates the step function exactly with the bivariate normal CDF",
        )),
    }
}

/// ∇c and ∇²c of c = G_ab/√(G_aa G_bb) at G.
fn correlation_jet(g: [f64; 3]) -> Jet {
    Jet::var(AB, g[AB])
        .mul(&Jet::var(AA, g[AA]).powf(-0.5))
        .mul(&Jet::var(BB, g[BB]).powf(-0.5))
}

/// ∇q of q̂ = (Ĝ_aa + Ĝ_bb)/2.
const GRAD_Q: [f64; 3] = [0.5, 0.0, 0.5];

fn quad(a: &[f64; 3], m: &Mat3, b: &[f64; 3]) -> f64 {
    let mb = matvec(m, b);
    (0..3).map(|i| a[i] * mb[i]).sum()
}

fn outer(a: &[f64; 3]) -> Mat3 {
    [0, 1, 2].map(|i| [0, 1, 2].map(|k| a[i] * a[k]))
}

/// J A Jᵀ.
fn sandwich(j: &Mat3, a: &Mat3) -> Mat3 {
    matmul(&matmul(j, a), &transpose(j))
}

fn add(a: &Mat3, b: &Mat3, s: f64) -> Mat3 {
    [0, 1, 2].map(|i| [0, 1, 2].map(|k| a[i][k] + s * b[i][k]))
}

/// The 1/n expansion of a pair with input variance `q0` and correlation
/// `c0` through `depth` layers of `net` (Gaussian weights).
///
/// Refused (with the reason) for a continuous activation, |c⁰| = 1 (the
/// kernel map of a step function is not differentiable at |ρ| = 1: the two
/// inputs are the same up to sign and there is no fluctuation to expand),
/// and wherever a derivative is not finite (a correlation within rounding
/// of ±1).
pub fn expand(net: &Network, q0: f64, c0: f64, depth: usize) -> Result<Expansion> {
    let quant = quantizer(net)?;
    if !(q0.is_finite() && q0 > 0.0) {
        return Err(Error::invalid(
            "q0",
            q0,
            "the input variance must be a finite number > 0",
        ));
    }
    if !(c0.is_finite() && c0.abs() < 1.0) {
        return Err(Error::invalid(
            "c0",
            c0,
            "the 1/n expansion needs -1 < c0 < 1: at |c0| = 1 the two inputs coincide (up to sign), \
             ĉ stays ±1 at every width, and the step's correlation map has infinite slope there",
        ));
    }
    if depth == 0 || depth > crate::theory::maps::MAX_CURVE_DEPTH {
        return Err(Error::invalid(
            "depth",
            depth,
            &format!(
                "between 1 and {} layers",
                crate::theory::maps::MAX_CURVE_DEPTH
            ),
        ));
    }
    let q_star = net.q_star()?;
    let c_star = net.c_star(q_star)?;
    let map = KernelMap::new(quant, net.sigma_w, net.sigma_b);
    let zero = [[0.0; 3]; 3];
    let mut k = [q0, c0 * q0, q0];
    let mut m = [0.0; 3];
    let mut v = zero;
    let mut layers = Vec::with_capacity(depth + 1);
    for l in 0..=depth {
        let rho = k[AB] / (k[AA] * k[BB]).sqrt();
        if !(rho.abs() < 1.0 && k[AA] > 0.0 && k[BB] > 0.0) {
            return Err(Error::Numerical(format!(
                "layer {l}: the infinite-width kernel left the domain (q = {}, c = {rho}): \
                 the expansion needs |c| < 1",
                k[AA]
            )));
        }
        let loc = map.local(k);
        let sigma = if l == 0 {
            zero
        } else {
            add(&v, &wishart(k), 1.0)
        };
        let cj = correlation_jet(k);
        let dc = (0..3).map(|i| cj.g[i] * m[i]).sum::<f64>() + 0.5 * contract(&cj.h, &sigma);
        let dq = (0..3).map(|i| GRAD_Q[i] * m[i]).sum::<f64>();
        let row = Order1Layer {
            layer: l,
            q: 0.5 * (k[AA] + k[BB]),
            c: cj.v,
            dq,
            dc,
            var_q: quad(&GRAD_Q, &sigma, &GRAD_Q),
            var_c: quad(&cj.g, &sigma, &cj.g),
            kernel: k,
            mean_shift: m,
            v,
            sigma,
            jacobian: loc.j,
            grad_c: cj.g,
        };
        let finite = [row.dq, row.dc, row.var_q, row.var_c]
            .iter()
            .chain(loc.j.iter().flatten())
            .chain(loc.h.iter().flatten().flatten())
            .all(|x| x.is_finite());
        if !finite {
            return Err(Error::Numerical(format!(
                "layer {l}: the expansion is not finite at c = {} (q = {}): the correlation is \
                 too close to ±1 for derivatives of the step's kernel map",
                row.c, row.q
            )));
        }
        layers.push(row);
        if l == depth {
            break;
        }
        // The step to layer l + 1.
        let (m1, v1) = if l == 0 {
            // Orthonormal inputs: M¹ = −H:(K⁰K⁰ᵀ), V¹ = σ_w⁴C − J W Jᵀ.
            let kk = outer(&k);
            let m1 = [0, 1, 2].map(|x| -contract(&loc.h[x], &kk));
            let v1 = add(&loc.noise, &sandwich(&loc.j, &wishart(k)), -1.0);
            (m1, v1)
        } else {
            let jm = matvec(&loc.j, &m);
            let m1 = [0, 1, 2].map(|x| jm[x] + 0.5 * contract(&loc.h[x], &v));
            let v1 = add(&loc.noise, &sandwich(&loc.j, &v), 1.0);
            (m1, v1)
        };
        k = loc.f;
        m = m1;
        v = v1;
    }
    Ok(Expansion {
        q_star,
        c_star,
        q0,
        c0,
        layers,
    })
}

/// Checks a width for [`Expansion::at_width`].
pub fn check_width(width: usize) -> Result<()> {
    if width < MIN_WIDTH {
        return Err(Error::invalid(
            "width",
            width,
            &format!(
                "the 1/n expansion is evaluated at widths of at least {MIN_WIDTH} \
                 (it is an expansion in 1/n; below that every layer fails its validity check)"
            ),
        ));
    }
    Ok(())
}

impl Expansion {
    /// The prediction at width `width` for a network's average over
    /// `pairs` pairs with the same c⁰ (each with its own input directions).
    ///
    /// The pairs' q̂ and ĉ are correlated at O(1/n²) through the shared
    /// weights, so the average's variance is (V/(nP))(1 + κP/n) with κ of
    /// order 1; the prediction keeps the leading V/(nP), a statement
    /// about P ≪ n (the CLI warns beyond P = n/10).
    pub fn at_width(&self, width: usize, pairs: usize) -> Result<Vec<WidthLayer>> {
        check_width(width)?;
        if pairs == 0 {
            return Err(Error::invalid("pairs", 0, "at least 1 pair per network"));
        }
        let n = width as f64;
        let p = pairs as f64;
        Ok(self
            .layers
            .iter()
            .map(|r| {
                let eps1 = r.var_c / (n * (1.0 - r.c.abs()).powi(2));
                let gap = (r.c - self.c_star).abs();
                let eps2 = if r.dc == 0.0 {
                    0.0
                } else {
                    r.dc.abs() / (n * gap)
                };
                WidthLayer {
                    layer: r.layer,
                    q: r.q,
                    c: r.c,
                    mean_q: r.q + r.dq / n,
                    mean_c: r.c + r.dc / n,
                    sd_q: (r.var_q / (n * p)).sqrt(),
                    sd_c: (r.var_c / (n * p)).sqrt(),
                    eps1,
                    eps2,
                    flagged: !(eps1 <= EPS_FLAG && eps2 <= EPS_FLAG),
                }
            })
            .collect())
    }

    /// The covariance of the measured kernels of layers l and l′ (either
    /// order): entry [x][y] is n·Cov(Ĝ^{l′}_x, Ĝ^l_y), which is
    /// J^{l′−1}⋯J^l Σ^l for l ≤ l′.
    pub fn kernel_covariance(&self, l: usize, lp: usize) -> Mat3 {
        let (lo, hi) = if l <= lp { (l, lp) } else { (lp, l) };
        let mut c = self.layers[lo].sigma;
        for r in &self.layers[lo..hi] {
            c = matmul(&r.jacobian, &c);
        }
        if l <= lp {
            c
        } else {
            transpose(&c)
        }
    }

    /// n·Cov(ĉ^l, ĉ^{l'}) for one pair.
    pub fn covariance_c(&self, l: usize, lp: usize) -> f64 {
        let c = self.kernel_covariance(l, lp);
        quad(&self.layers[lp].grad_c, &c, &self.layers[l].grad_c)
    }

    /// n·Cov(q̂^l, q̂^{l'}) for one pair.
    pub fn covariance_q(&self, l: usize, lp: usize) -> f64 {
        quad(&GRAD_Q, &self.kernel_covariance(l, lp), &GRAD_Q)
    }
}
