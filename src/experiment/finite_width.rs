//! A run's pair curves beside the finite-width (1/n) theory
//! (theory::finite_width): per layer the simulated n·(ĉ − c) and n·P·Var ĉ
//! over networks against the predicted n·(E ĉ − c) and n·Var ĉ, with
//! z-scores against the corrected means (and, for contrast, against the
//! infinite-width ones). The plots `finite-width-*` draw them for every
//! group of points that differ only in width: where the theory holds the
//! widths collapse onto one line.

use crate::error::Result;
use crate::setup::ResolvedNetwork;
use crate::sim::{stats::PairCurve, Weights};
use crate::theory::finite_width::expand;
use serde::{Deserialize, Serialize};

/// One layer of [`FiniteWidthCurve`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FiniteWidthLayer {
    /// Layer l.
    pub layer: usize,
    /// n·(mean ĉ over networks − c_∞).
    pub n_shift: f64,
    /// Its standard error (n·SE of the mean).
    pub n_shift_se: f64,
    /// The prediction n·(E ĉ − c_∞) = dc_l.
    pub n_shift_theory: f64,
    /// n·P·(variance of ĉ over networks): one pair's n·Var ĉ.
    pub n_var: f64,
    /// Its standard error (√(2/(E − 1)) of it, Gaussian networks).
    pub n_var_se: f64,
    /// The prediction: one pair's n·Var ĉ.
    pub n_var_theory: f64,
    /// ε₁ or ε₂ > 0.1 at this width: the expansion is not to be trusted.
    pub flagged: bool,
}

/// The 1/n comparison of one pair curve (one c⁰) of a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiniteWidthCurve {
    /// c⁰.
    pub c0: f64,
    /// Mean z² of the simulated mean ĉ against the corrected means
    /// c + dc/n, over the layers ≥ 1 that are not flagged (≈ 1 when the
    /// 1/n theory holds).
    pub mean_z2_corrected: f64,
    /// The same against the infinite-width c (large where 1/n matters).
    pub mean_z2_infinite: f64,
    /// Layers in the two means.
    pub layers_scored: usize,
    /// Layers 0..=L.
    pub layers: Vec<FiniteWidthLayer>,
}

/// The 1/n comparison of each pair curve of a point simulated with
/// `weights` at width `width` with `pairs` pairs per network: empty
/// (nothing to compare) for weights other than Gaussian, activations other
/// than quantized, or fewer than 2 networks; an error where the expansion
/// refuses the curve.
pub fn compare(
    r: &ResolvedNetwork,
    weights: Weights,
    width: usize,
    pairs: usize,
    curves: &[PairCurve],
) -> Result<Vec<FiniteWidthCurve>> {
    use crate::activation::Activation;
    if weights != Weights::Gaussian || !matches!(r.network.activation, Activation::Quantized(_)) {
        return Ok(Vec::new());
    }
    let n = width as f64;
    let mut out = Vec::new();
    for pc in curves {
        let e = pc.c_per_network.len();
        if e < 2 {
            continue;
        }
        let depth = pc.layers.len().saturating_sub(1);
        let rows = expand(&r.network, r.q0, pc.c0, depth)?.at_width(width, pairs)?;
        let ef = e as f64;
        let (mut zc, mut zi, mut k) = (0.0, 0.0, 0usize);
        let layers: Vec<FiniteWidthLayer> = rows
            .iter()
            .enumerate()
            .map(|(l, row)| {
                let xs: Vec<f64> = pc.c_per_network.iter().map(|v| v[l]).collect();
                let mean = xs.iter().sum::<f64>() / ef;
                let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (ef - 1.0);
                let se = (var / ef).sqrt();
                if l >= 1 && !row.flagged && se > 0.0 {
                    zc += ((mean - row.mean_c) / se).powi(2);
                    zi += ((mean - row.c) / se).powi(2);
                    k += 1;
                }
                let scale = n * pairs as f64;
                FiniteWidthLayer {
                    layer: row.layer,
                    n_shift: n * (mean - row.c),
                    n_shift_se: n * se,
                    n_shift_theory: n * (row.mean_c - row.c),
                    n_var: scale * var,
                    n_var_se: scale * var * (2.0 / (ef - 1.0)).sqrt(),
                    n_var_theory: scale * row.sd_c * row.sd_c,
                    flagged: row.flagged,
                }
            })
            .collect();
        let kf = k.max(1) as f64;
        out.push(FiniteWidthCurve {
            c0: pc.c0,
            mean_z2_corrected: zc / kf,
            mean_z2_infinite: zi / kf,
            layers_scored: k,
            layers,
        });
    }
    Ok(out)
}
