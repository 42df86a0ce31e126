//! The statistics stage on the CPU and its aggregation: [`block_stats`] is
//! the twin of `shaders/stats.wgsl` (GPU driver `src/sim/gpu/stats.rs`),
//! the raw per-layer sums (sums of squares, dot products); the rest takes
//! them to q̂ and ĉ and aggregates them over network samples into means
//! with standard errors.
//!
//! Inputs that share a network are correlated, so the standard error is
//! taken over network samples: each sample contributes one number per
//! quantity (its average over the pairs of a group, or over the points of a
//! circle), and SE = sd/√E over the E samples (Welford's algorithm in f64).

use crate::error::{Error, Result};
use crate::sim::spec::{Inputs, Measurements, SimSpec};

/// Sums of squares per input and dot products per measured pair over a
/// block of rows (feature-major, B columns), accumulated in f64.
pub fn block_stats(h: &[f32], batch: usize, m: &Measurements) -> (Vec<f64>, Vec<f64>) {
    let mut sumsq = vec![0.0f64; batch];
    let mut dots = vec![0.0f64; m.pairs.len()];
    for row in h.chunks_exact(batch) {
        for (s, &x) in sumsq.iter_mut().zip(row) {
            *s += f64::from(x) * f64::from(x);
        }
        for (d, &(a, b)) in dots.iter_mut().zip(&m.pairs) {
            *d += f64::from(row[a as usize]) * f64::from(row[b as usize]);
        }
    }
    (sumsq, dots)
}

/// The statistics of a matrix from those of its blocks of rows
/// ([`block_stats`] of each), added in block order.
pub fn combine_blocks(
    blocks: impl IntoIterator<Item = (Vec<f64>, Vec<f64>)>,
    batch: usize,
    m: &Measurements,
) -> (Vec<f64>, Vec<f64>) {
    let mut sumsq = vec![0.0; batch];
    let mut dots = vec![0.0; m.pairs.len()];
    for (s, d) in blocks {
        sumsq.iter_mut().zip(s).for_each(|(a, b)| *a += b);
        dots.iter_mut().zip(d).for_each(|(a, b)| *a += b);
    }
    (sumsq, dots)
}

/// A mean over network samples with its standard error (`None` with one sample).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Mean over samples.
    pub mean: f64,
    /// Standard error of the mean, sd/√E; `None` when E = 1.
    pub se: Option<f64>,
}

/// One layer of a pair curve.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PairLayer {
    /// Layer l.
    pub layer: usize,
    /// q̂ averaged over the group's inputs.
    pub q: Estimate,
    /// ĉ averaged over the group's pairs.
    pub c: Estimate,
}

/// The empirical depth curve of the pairs that share one c⁰.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairCurve {
    /// Input correlation c⁰.
    pub c0: f64,
    /// Pairs per network (K).
    pub pairs: usize,
    /// Layers 0..=L.
    pub layers: Vec<PairLayer>,
    /// ĉ of each network sample (its average over the group's pairs),
    /// `[sample][layer]`: the between-network variation that intervals of
    /// quantities fitted across layers need (layers of one network are
    /// correlated).
    #[serde(skip)]
    pub c_per_network: Vec<Vec<f64>>,
}

/// One layer of a circle ensemble.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CircleLayer {
    /// Layer l.
    pub layer: usize,
    /// q̂ averaged over the points.
    pub q: Estimate,
    /// Covariance (1/n) Σᵢ h_{m,i} h_{m+d,i}, averaged over m, for d = 0..=⌊M/2⌋.
    pub cov: Vec<Estimate>,
    /// Correlation ĉ of points d apart, averaged over m, for d = 0..=⌊M/2⌋.
    pub corr: Vec<Estimate>,
}

/// Statistics of a circle ensemble.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CircleCurves {
    /// Number of points M.
    pub points: usize,
    /// Angle offsets Δθ = 2πd/M, d = 0..=⌊M/2⌋.
    pub angles: Vec<f64>,
    /// Layers 0..=L.
    pub layers: Vec<CircleLayer>,
}

/// Aggregated statistics of a simulation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimStats {
    /// Network samples aggregated.
    pub samples: usize,
    /// One curve per c⁰ (pair ensembles).
    pub pairs: Vec<PairCurve>,
    /// Circle statistics (circle ensembles).
    pub circle: Option<CircleCurves>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Welford {
    mean: f64,
    m2: f64,
}

/// Accumulates per-sample statistics and turns them into [`SimStats`].
#[derive(Debug, Clone)]
pub struct Aggregator {
    spec_inputs: Inputs,
    width: usize,
    depth: usize,
    per_layer: usize,
    acc: Vec<Welford>,
    current: Vec<f64>,
    samples: usize,
    /// Every committed sample's values (pair ensembles only).
    kept: Vec<Vec<f64>>,
}

impl Aggregator {
    /// An empty aggregator for `spec`.
    pub fn new(spec: &SimSpec) -> Self {
        let per_layer = match &spec.inputs {
            Inputs::Pairs { c0, .. } => 2 * c0.len(),
            Inputs::Circle { points } => 1 + 2 * (points / 2 + 1),
        };
        let size = (spec.depth + 1) * per_layer;
        Aggregator {
            spec_inputs: spec.inputs.clone(),
            width: spec.width,
            depth: spec.depth,
            per_layer,
            acc: vec![Welford::default(); size],
            current: vec![0.0; size],
            samples: 0,
            kept: Vec::new(),
        }
    }

    /// Records layer `layer` of the sample in progress from its sums of
    /// squares (one per input) and dot products (one per measured pair).
    pub fn record_layer(&mut self, layer: usize, sumsq: &[f64], dots: &[f64]) -> Result<()> {
        let mut current = std::mem::take(&mut self.current);
        let r = self.record_layer_into(&mut current, layer, sumsq, dots);
        self.current = current;
        r
    }

    /// An empty record of one sample, for samples in progress side by side
    /// (several networks run at once): fill it with
    /// [`Self::record_layer_into`], add it with [`Self::commit_record`].
    pub fn new_record(&self) -> Vec<f64> {
        vec![0.0; self.acc.len()]
    }

    /// [`Self::record_layer`] into the sample record `out` ([`Self::new_record`]).
    pub fn record_layer_into(
        &self,
        out: &mut [f64],
        layer: usize,
        sumsq: &[f64],
        dots: &[f64],
    ) -> Result<()> {
        if out.len() != self.acc.len() || layer > self.depth {
            return Err(Error::Numerical(format!(
                "layer {layer} of a {}-layer record of {} values recorded into {} values",
                self.depth,
                self.acc.len(),
                out.len()
            )));
        }
        let n = self.width as f64;
        let q: Vec<f64> = sumsq.iter().map(|s| s / n).collect();
        if let Some((i, v)) = q
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            return Err(Error::Numerical(format!(
                "layer {layer}: input {i} has pre-activation second moment {v}; correlations are undefined \
                 (the signal vanished or overflowed — check sigma_w, sigma_b and the spacing)"
            )));
        }
        let out = &mut out[layer * self.per_layer..(layer + 1) * self.per_layer];
        match &self.spec_inputs {
            Inputs::Pairs { c0, pairs } => {
                for g in 0..c0.len() {
                    let (mut qs, mut cs) = (0.0, 0.0);
                    for p in g * pairs..(g + 1) * pairs {
                        let (a, b) = (2 * p, 2 * p + 1);
                        qs += q[a] + q[b];
                        cs += dots[p] / n / (q[a] * q[b]).sqrt();
                    }
                    out[2 * g] = qs / (2 * pairs) as f64;
                    out[2 * g + 1] = cs / *pairs as f64;
                }
            }
            Inputs::Circle { points } => {
                let m = *points;
                let qm = q.iter().sum::<f64>() / m as f64;
                out[0] = qm;
                out[1] = qm; // covariance at d = 0
                out[2] = 1.0; // correlation at d = 0
                for d in 1..=m / 2 {
                    let (mut cov, mut corr) = (0.0, 0.0);
                    for i in 0..m {
                        let dot = dots[(d - 1) * m + i] / n;
                        cov += dot;
                        corr += dot / (q[i] * q[(i + d) % m]).sqrt();
                    }
                    out[1 + 2 * d] = cov / m as f64;
                    out[2 + 2 * d] = corr / m as f64;
                }
            }
        }
        if let Some(k) = out.iter().position(|v| !v.is_finite()) {
            return Err(Error::Numerical(format!(
                "layer {layer}: a measured {} is {} (a dot product overflowed or is NaN); \
                 check sigma_w, sigma_b and the levels",
                if k == 0 || matches!(self.spec_inputs, Inputs::Pairs { .. }) && k % 2 == 0 {
                    "variance"
                } else {
                    "correlation or covariance"
                },
                out[k]
            )));
        }
        Ok(())
    }

    /// Adds the sample whose layers were all recorded.
    pub fn commit_sample(&mut self) {
        let current = std::mem::take(&mut self.current);
        self.commit_record(&current);
        self.current = current;
    }

    /// Adds a sample recorded in `record` ([`Self::record_layer_into`]
    /// for every layer): as [`Self::commit_sample`] does, so samples
    /// committed in the same order give the same bits either way.
    pub fn commit_record(&mut self, record: &[f64]) {
        self.samples += 1;
        let k = self.samples as f64;
        for (w, &x) in self.acc.iter_mut().zip(record) {
            let delta = x - w.mean;
            w.mean += delta / k;
            w.m2 += delta * (x - w.mean);
        }
        if matches!(self.spec_inputs, Inputs::Pairs { .. }) {
            self.kept.push(record.to_vec());
        }
    }

    /// Samples committed so far.
    pub fn samples(&self) -> usize {
        self.samples
    }

    fn estimate(&self, idx: usize) -> Estimate {
        let w = self.acc[idx];
        let e = self.samples;
        Estimate {
            mean: w.mean,
            se: (e >= 2).then(|| (w.m2 / (e as f64 - 1.0) / e as f64).sqrt()),
        }
    }

    /// The aggregated statistics of the committed samples.
    pub fn finish(&self) -> SimStats {
        let layers = 0..=self.depth;
        match &self.spec_inputs {
            Inputs::Pairs { c0, pairs } => SimStats {
                samples: self.samples,
                pairs: c0
                    .iter()
                    .enumerate()
                    .map(|(g, &c)| PairCurve {
                        c0: c,
                        pairs: *pairs,
                        layers: layers
                            .clone()
                            .map(|l| PairLayer {
                                layer: l,
                                q: self.estimate(l * self.per_layer + 2 * g),
                                c: self.estimate(l * self.per_layer + 2 * g + 1),
                            })
                            .collect(),
                        c_per_network: self
                            .kept
                            .iter()
                            .map(|v| {
                                (0..=self.depth)
                                    .map(|l| v[l * self.per_layer + 2 * g + 1])
                                    .collect()
                            })
                            .collect(),
                    })
                    .collect(),
                circle: None,
            },
            Inputs::Circle { points } => {
                let m = *points;
                let angles = (0..=m / 2)
                    .map(|d| 2.0 * std::f64::consts::PI * d as f64 / m as f64)
                    .collect();
                let layers = layers
                    .map(|l| {
                        let base = l * self.per_layer;
                        CircleLayer {
                            layer: l,
                            q: self.estimate(base),
                            cov: (0..=m / 2)
                                .map(|d| self.estimate(base + 1 + 2 * d))
                                .collect(),
                            corr: (0..=m / 2)
                                .map(|d| self.estimate(base + 2 + 2 * d))
                                .collect(),
                        }
                    })
                    .collect();
                SimStats {
                    samples: self.samples,
                    pairs: Vec::new(),
                    circle: Some(CircleCurves {
                        points: m,
                        angles,
                        layers,
                    }),
                }
            }
        }
    }
}
