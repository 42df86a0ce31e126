//! What a simulation is asked to do: the network, the input ensemble, and
//! the sizes; and the inputs themselves, built exactly.

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::rng::Stream;

pub use crate::sim::phi::SimActivation;

/// The ensemble of inputs pushed through each network.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// Pairs of inputs with prescribed correlations: `pairs` pairs for each
    /// value in `c0`.
    Pairs {
        /// Input correlations c⁰, each in [−1, 1].
        c0: Vec<f64>,
        /// Pairs per value of c⁰ (K).
        pairs: usize,
    },
    /// `points` inputs equally spaced on a great circle (the paper's Figure 1).
    Circle {
        /// Number of points M (at least 3).
        points: usize,
    },
}

/// The random-matrix ensemble of every layer's weights.
///
/// For forward signal propagation the three give the same mean-field maps
/// (q-map, c-map, χ, ξ): a pre-activation hᵢ = Σⱼ Wᵢⱼ φⱼ + bᵢ enters the
/// theory only through its first two moments given the previous layer,
/// E hᵢ = 0 and E hᵢ hᵢ' = δᵢᵢ' σ_w² φ·φ'/n + σ_b², which holds for i.i.d.
/// weights of any law with variance σ_w²/n (and a finite fourth moment, for
/// the central limit over j), and for a Haar-like orthogonal S, which
/// preserves norms and inner products exactly (Saxe, McClelland & Ganguli
/// 2014; Pennington, Schoenholz & Ganguli 2017). What differs is the
/// finite-width correction and the Jacobian spectrum (see the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weights {
    /// i.i.d. Gaussian W ~ N(0, σ_w²/n): n² generated normals per layer
    /// (four per Philox call, counter (column/4, row, layer, sample)).
    #[default]
    Gaussian,
    /// i.i.d. ±σ_w/√n (Rademacher): bit `column mod 32` of word
    /// `(column/32) mod 4` of Philox counter (column/128, row, layer,
    /// sample), set = −1: 128 weights per call, applied as sign flips inside
    /// the product (B ≤ 32 on the CPU) or unpacked per block of rows.
    Rademacher,
    /// Structured orthogonal S = n^{-3/2} H D₃ H D₂ H D₁ (Yu et al. 2016,
    /// "Orthogonal Random Features"; Choromanski et al. 2017): H the ±1
    /// Walsh–Hadamard matrix, applied by the fast transform in O(n log n);
    /// D_r random sign diagonals, sign i of round r from bit `i mod 32` of
    /// word `(i/32) mod 4` of Philox counter (i/128, r, layer, sample),
    /// r = 0, 1, 2 for D₁, D₂, D₃. The width must be a power of two.
    Hadamard,
}

/// Rows of W per block of the CPU layer for width n and batch B (a
/// multiple of 8, the SGEMM kernel's row tile, between 8 and 128): a block
/// generates 256 KiB of weights for small batches, which are bound by weight
/// generation (the block stays in L2), and 1 MiB from B = 64, where taller
/// blocks amortize SGEMM's packing of the activations. The memory plan
/// counts one block per thread.
pub fn rows_per_block(n: usize, batch: usize) -> usize {
    let block_bytes: usize = if batch >= 64 { 1 << 20 } else { 256 << 10 };
    ((block_bytes / 4 / n.max(1)) / 8 * 8).clamp(8, 128)
}

/// The sign rounds D₁, D₂, D₃ of a Hadamard layer (rounds 0, 1, 2 of its
/// sign stream).
pub const HADAMARD_ROUNDS: u32 = 3;

/// The inputs as a feature-major f32 matrix (n × B: row i holds unit i of
/// every input), the layout of every backend's activations.
pub fn feature_major(inputs: &[Vec<f64>], n: usize) -> Vec<f32> {
    let b = inputs.len();
    let mut h = vec![0f32; n * b];
    for (k, v) in inputs.iter().enumerate() {
        for (i, &x) in v.iter().enumerate() {
            h[i * b + k] = x as f32;
        }
    }
    h
}

impl Weights {
    /// The name used on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Weights::Gaussian => "gaussian",
            Weights::Rademacher => "rademacher",
            Weights::Hadamard => "hadamard",
        }
    }

    /// Parses a name (`key` names the flag or config key in the error).
    pub fn parse(key: &str, s: &str) -> Result<Self> {
        match s.trim() {
            "gaussian" => Ok(Weights::Gaussian),
            "rademacher" => Ok(Weights::Rademacher),
            "hadamard" => Ok(Weights::Hadamard),
            other => Err(Error::invalid(
                key,
                format!("\"{other}\""),
                "one of \"gaussian\", \"rademacher\", \"hadamard\"",
            )),
        }
    }

    /// The f32 scale both backends apply to the standardized product at
    /// width n: σ_w/√n (Gaussian, Rademacher) or σ_w·n^{-3/2} (Hadamard,
    /// after its three unscaled transforms).
    pub fn scale(self, sigma_w: f64, n: usize) -> f32 {
        match self {
            Weights::Hadamard => (sigma_w / (n as f64).powf(1.5)) as f32,
            _ => (sigma_w / (n as f64).sqrt()) as f32,
        }
    }

    /// Checks that this ensemble exists at width n (hadamard: n a power of two).
    pub fn check_width(self, key: &str, n: usize) -> Result<()> {
        if self == Weights::Hadamard && !n.is_power_of_two() {
            let below = if n > 1 {
                1usize << (usize::BITS - 1 - n.leading_zeros())
            } else {
                2
            };
            return Err(Error::invalid(
                key,
                n,
                &format!(
                    "hadamard weights need a power-of-two width (the fast Walsh–Hadamard transform), e.g. {} or {}",
                    below,
                    n.checked_next_power_of_two().unwrap_or(below)
                ),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A simulation: E independent networks, each applied to the same batch.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSpec {
    /// The activation (f64 form; converted to [`SimActivation`]).
    pub activation: Activation,
    /// Weight scale σ_w.
    pub sigma_w: f64,
    /// Bias scale σ_b.
    pub sigma_b: f64,
    /// Width n of every layer.
    pub width: usize,
    /// Depth L (number of layers after the inputs).
    pub depth: usize,
    /// Number of independent network samples E.
    pub samples: usize,
    /// The seed of every random number (weights, biases, input directions).
    pub seed: u64,
    /// Input pre-activation variance q⁰.
    pub q0: f64,
    /// The input ensemble.
    pub inputs: Inputs,
    /// The weight ensemble (default Gaussian).
    pub weights: Weights,
}

/// Bytes the aggregated statistics may take; more is refused up front.
pub const STATS_MEMORY_LIMIT: usize = 2 << 30;

/// Most inputs in one batch.
pub const MAX_BATCH: usize = 1 << 20;

/// Most measured pairs per layer (circle: M·⌊M/2⌋).
pub const MAX_MEASURED_PAIRS: usize = 1 << 26;

/// Most layers of a simulation.
pub const MAX_SIM_DEPTH: usize = 10_000_000;

/// The largest circle whose M·⌊M/2⌋ pairs fit in [`MAX_MEASURED_PAIRS`].
pub fn max_circle_points() -> usize {
    let mut m = ((2.0 * MAX_MEASURED_PAIRS as f64).sqrt()) as usize + 2;
    while m * (m / 2) > MAX_MEASURED_PAIRS {
        m -= 1;
    }
    m
}

/// Estimated peak memory of a simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryPlan {
    /// Host (RAM) bytes.
    pub host_bytes: u64,
    /// Device (GPU) bytes; 0 on the CPU backend.
    pub device_bytes: u64,
}

/// The per-layer statistics to gather: sums of squares for every input and
/// dot products for these index pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurements {
    /// Batch size B.
    pub batch: usize,
    /// Pairs (a, b) of batch indices whose dot product is measured.
    pub pairs: Vec<(u32, u32)>,
}

impl SimSpec {
    /// A simulation of a resolved network: its activation, σ_w, σ_b and q⁰.
    pub fn of_network(
        r: &crate::setup::ResolvedNetwork,
        width: usize,
        depth: usize,
        samples: usize,
        seed: u64,
        inputs: Inputs,
    ) -> Self {
        SimSpec {
            activation: r.network.activation.clone(),
            sigma_w: r.sigma_w,
            sigma_b: r.sigma_b,
            width,
            depth,
            samples,
            seed,
            q0: r.q0,
            inputs,
            weights: Weights::Gaussian,
        }
    }

    /// The same simulation with weights from `weights`.
    pub fn with_weights(self, weights: Weights) -> Self {
        SimSpec { weights, ..self }
    }

    /// Checks every field, with a message naming what is wrong and what would be right.
    pub fn validate(&self) -> Result<()> {
        // Err(invalid(key, value, expected)) unless `ok`.
        let want = |ok: bool, key: &str, value: &dyn std::fmt::Display, expected: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::invalid(key, value, expected))
            }
        };
        let n = self.width;
        want(
            n >= 2,
            "width",
            &n,
            "the width must be at least 2 (inputs are built from two orthogonal directions)",
        )?;
        want(
            n < crate::rng::BIAS_ROW as usize,
            "width",
            &n,
            "the width must be below 2^32 - 1",
        )?;
        self.weights.check_width("width", n)?;
        want(
            self.depth > 0,
            "depth",
            &0,
            "the depth must be at least 1 layer",
        )?;
        want(
            self.samples > 0,
            "samples",
            &0,
            "at least 1 network sample is needed (2 or more for standard errors)",
        )?;
        want(
            self.samples <= u32::MAX as usize,
            "samples",
            &self.samples,
            "at most 2^32 - 1 network samples",
        )?;
        let (sw, sb, q0) = (self.sigma_w, self.sigma_b, self.q0);
        want(
            sw.is_finite() && sw > 0.0,
            "sigma_w",
            &sw,
            "must be a finite number > 0",
        )?;
        want(
            sb.is_finite() && sb >= 0.0,
            "sigma_b",
            &sb,
            "must be a finite number >= 0",
        )?;
        want(
            q0.is_finite() && q0 > 0.0,
            "q0",
            &q0,
            "the input variance must be a finite number > 0",
        )?;
        match &self.inputs {
            Inputs::Pairs { c0, pairs } => {
                want(
                    !c0.is_empty(),
                    "c0",
                    &"(empty)",
                    "give at least one input correlation",
                )?;
                if let Some(c) = c0.iter().find(|c| !(-1.0..=1.0).contains(*c)) {
                    return Err(Error::invalid("c0", c, "a correlation must lie in [-1, 1]"));
                }
                want(*pairs > 0, "pairs", &0, "at least 1 pair per value of c0")?;
            }
            Inputs::Circle { points } => want(
                *points >= 3,
                "circle points",
                points,
                "a circle needs at least 3 points",
            )?,
        }
        // Sizes from the counts alone, before anything is allocated.
        let (batch, measured) = self.sizes()?;
        // Aggregated statistics: per layer, mean and M2 (f64) for q and c of
        // each group (pairs), or q plus covariance and correlation of each
        // offset (circle); the per-sample buffer holds B + P f64 per layer.
        let per_layer = 2 * (self.groups() * 2 + self.offsets() * 2 + 1) + batch + measured;
        let layers = self.depth.saturating_add(1);
        let bytes = layers.saturating_mul(per_layer).saturating_mul(8);
        if bytes > STATS_MEMORY_LIMIT {
            return Err(Error::invalid(
                "depth × measured quantities",
                format!("{layers} layers × {per_layer} values = {:.1} GiB", bytes as f64 / (1u64 << 30) as f64),
                &format!("the statistics must fit in {} GiB: reduce the depth, the pairs or the circle points", STATS_MEMORY_LIMIT >> 30),
            ));
        }
        if self.depth > MAX_SIM_DEPTH {
            return Err(Error::invalid(
                "depth",
                self.depth,
                &format!("a simulation has at most {MAX_SIM_DEPTH} layers"),
            ));
        }
        let act_bytes = 2usize
            .saturating_mul(self.width)
            .saturating_mul(batch)
            .saturating_mul(4);
        if act_bytes > 8 << 30 {
            return Err(Error::invalid(
                "width × batch",
                format!("{} × {}", self.width, batch),
                "two layers of activations must fit in 8 GiB",
            ));
        }
        Ok(())
    }

    /// The batch size B and the number of measured pairs P, computed from
    /// the counts with overflow checks (nothing is allocated): B = 2·K·|c⁰|
    /// and P = K·|c⁰| for pairs; B = M and P = M·⌊M/2⌋ on a circle. Errors
    /// beyond 2^20 inputs or 2^26 measured pairs.
    pub fn sizes(&self) -> Result<(usize, usize)> {
        let too_big = |what: &str, v: String, limit: &str| Error::invalid(what, v, limit);
        match &self.inputs {
            Inputs::Pairs { c0, pairs } => {
                let p = c0.len().checked_mul(*pairs).filter(|p| *p <= MAX_BATCH / 2);
                match p {
                    Some(p) => Ok((2 * p, p)),
                    None => Err(too_big(
                        "pairs",
                        format!("{pairs} per c0 × {} values of c0", c0.len()),
                        &format!("a batch holds at most {MAX_BATCH} inputs (2^20): at most {} pairs in all", MAX_BATCH / 2),
                    )),
                }
            }
            Inputs::Circle { points } => {
                let m = *points;
                let p = m.checked_mul(m / 2).filter(|p| *p <= MAX_MEASURED_PAIRS);
                match p {
                    Some(p) if m <= MAX_BATCH => Ok((m, p)),
                    _ => Err(too_big(
                        "circle points",
                        m.to_string(),
                        &format!(
                            "a circle of M points measures M·⌊M/2⌋ pairs per layer, at most {MAX_MEASURED_PAIRS} (M up to {})",
                            max_circle_points()
                        ),
                    )),
                }
            }
        }
    }

    /// Estimated peak memory of this simulation, host and device (bytes),
    /// with overflow-checked arithmetic: inputs (f64 and f32 copies), two
    /// layers of activations, per-thread weight blocks, the aggregated
    /// statistics, and for the backward pass every layer's activations.
    /// `gpu`: the layer passes run on a device, which then holds the
    /// activations and the statistics read back per layer.
    pub fn memory_plan(&self, gpu: bool, backward: bool) -> Result<MemoryPlan> {
        let (batch, measured) = self.sizes()?;
        let over = || {
            Error::TooLarge(format!(
                "the memory of width {} × batch {batch} × depth {} does not fit in 64 bits",
                self.width, self.depth
            ))
        };
        let mul = |a: u64, b: u64| a.checked_mul(b).ok_or_else(over);
        let add = |a: u64, b: u64| a.checked_add(b).ok_or_else(over);
        let (n, b, l1) = (self.width as u64, batch as u64, self.depth as u64 + 1);
        let nb = mul(n, b)?;
        let inputs = mul(nb, 12)?; // f64 vectors + f32 feature-major copy
        let activations = mul(nb, 8)?; // two f32 layers
        let threads = rayon::current_num_threads() as u64;
        // Weight row blocks (one per thread), and per block of rows the
        // partial sums of squares and dot products (two vectors each).
        let rows = rows_per_block(self.width, batch) as u64;
        let blocks = add(
            mul(threads, mul(n, 4 * rows)?)?,
            mul(n.div_ceil(rows), add(mul(b + measured as u64, 8)?, 64)?)?,
        )?;
        // The activations packed once per layer into NR-column panels
        // (sim::gemm), zero-padded past B.
        let nr = crate::sim::gemm::NR as u64;
        let packed = mul(mul(n, b.div_ceil(nr))?, 4 * nr)?;
        let per_layer =
            2 * (self.groups() as u64 * 2 + self.offsets() as u64 * 2 + 1) + b + measured as u64;
        let stats = mul(mul(l1, per_layer)?, 16)?;
        let stored = if backward { mul(mul(l1, nb)?, 8)? } else { 0 };
        let (host, device) = if gpu {
            let device = add(
                add(activations, mul(nb, 4)?)?,
                mul(mul(l1, b + measured as u64)?, 8)?,
            )?;
            (add(add(inputs, stats)?, stored)?, device)
        } else {
            (
                add(
                    add(add(add(add(inputs, activations)?, blocks)?, packed)?, stats)?,
                    stored,
                )?,
                0,
            )
        };
        Ok(MemoryPlan {
            host_bytes: host,
            device_bytes: device,
        })
    }

    /// Number of c⁰ groups (pairs ensemble) or 0.
    pub fn groups(&self) -> usize {
        match &self.inputs {
            Inputs::Pairs { c0, .. } => c0.len(),
            Inputs::Circle { .. } => 0,
        }
    }

    /// Number of angle offsets d = 1..⌊M/2⌋ (circle ensemble) or 0.
    pub fn offsets(&self) -> usize {
        match &self.inputs {
            Inputs::Pairs { .. } => 0,
            Inputs::Circle { points } => points / 2,
        }
    }

    /// The batch size and the measured pairs: (2p, 2p+1) for pair ensembles;
    /// (m, m + d mod M) for every point m and offset d = 1..⌊M/2⌋ on a circle.
    pub fn measurements(&self) -> Measurements {
        match &self.inputs {
            Inputs::Pairs { c0, pairs } => {
                let p = c0.len() * pairs;
                Measurements {
                    batch: 2 * p,
                    pairs: (0..p as u32).map(|i| (2 * i, 2 * i + 1)).collect(),
                }
            }
            Inputs::Circle { points } => {
                let m = *points;
                let mut v = Vec::with_capacity(m * (m / 2));
                for d in 1..=m / 2 {
                    for i in 0..m {
                        v.push((i as u32, ((i + d) % m) as u32));
                    }
                }
                Measurements { batch: m, pairs: v }
            }
        }
    }

    /// The inputs h⁰ of network sample `sample` as `batch` vectors of length
    /// n (f64), with per-coordinate second moment exactly q⁰ and pairwise
    /// correlations exactly as asked: each pair (or the circle) is built from
    /// two orthonormal directions u, v (Gram–Schmidt on Gaussian vectors from
    /// the sample's stream, reserved layer index 2³² − 1).
    ///
    /// Each sample draws fresh directions: the finite-n fluctuation of
    /// (1/n) Σⱼ φ(h_a,j) φ(h_b,j) around its Gaussian expectation, O(1/√n),
    /// then averages out over samples and is part of the standard error,
    /// instead of being a bias shared by every sample.
    pub fn input_vectors(&self, sample: u32) -> Vec<Vec<f64>> {
        let n = self.width;
        let scale = (n as f64 * self.q0).sqrt();
        let stream = Stream::new(self.seed, sample);
        let direction_pair = |k: u32| -> (Vec<f64>, Vec<f64>) {
            let mut a = vec![0f32; n];
            let mut b = vec![0f32; n];
            stream.fill_row(u32::MAX, 2 * k, &mut a);
            stream.fill_row(u32::MAX, 2 * k + 1, &mut b);
            let mut u: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
            let mut v: Vec<f64> = b.iter().map(|&x| f64::from(x)).collect();
            normalize(&mut u);
            let d: f64 = u.iter().zip(&v).map(|(x, y)| x * y).sum();
            v.iter_mut().zip(&u).for_each(|(y, x)| *y -= d * x);
            normalize(&mut v);
            (u, v)
        };
        match &self.inputs {
            Inputs::Pairs { c0, pairs } => {
                let mut out = Vec::with_capacity(2 * c0.len() * pairs);
                let mut k = 0;
                for &c in c0 {
                    let s = ((1.0 - c) * (1.0 + c)).max(0.0).sqrt();
                    for _ in 0..*pairs {
                        let (u, v) = direction_pair(k);
                        k += 1;
                        out.push(u.iter().map(|x| scale * x).collect());
                        out.push(
                            u.iter()
                                .zip(&v)
                                .map(|(x, y)| scale * (c * x + s * y))
                                .collect(),
                        );
                    }
                }
                out
            }
            Inputs::Circle { points } => {
                let (u, v) = direction_pair(0);
                (0..*points)
                    .map(|m| {
                        let th = 2.0 * std::f64::consts::PI * m as f64 / *points as f64;
                        let (s, c) = th.sin_cos();
                        u.iter()
                            .zip(&v)
                            .map(|(x, y)| scale * (c * x + s * y))
                            .collect()
                    })
                    .collect()
            }
        }
    }
}

fn normalize(v: &mut [f64]) {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
}
