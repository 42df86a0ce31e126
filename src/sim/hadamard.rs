//! The structured orthogonal layer S = n^{-3/2} H D₃ H D₂ H D₁ on the CPU:
//! the fast Walsh–Hadamard transform over a batch and the signed transforms
//! S and Sᵀ (unscaled). With [`crate::sim::layer::LayerWeights::hadamard`]
//! (scale, bias, statistics), the CPU twin of `shaders/hadamard.wgsl` (GPU
//! driver `src/sim/gpu/hadamard.rs`).
//!
//! H is the ±1 Walsh–Hadamard (Sylvester) matrix of order n = 2^k, applied
//! by the butterfly recursion (x_i, x_{i+h}) ← (x_i + x_{i+h}, x_i − x_{i+h})
//! for h = 1, 2, 4, …, n/2 in that order: n log₂ n additions, exact
//! integer-like structure, no stored matrix. H·H = n·I, so H/√n is
//! orthogonal and S, a product of three such factors and three sign
//! diagonals, is orthogonal (Yu, Suresh, Choromanski, Holtmann-Rice & Kumar,
//! "Orthogonal Random Features", NeurIPS 2016; Choromanski, Rowland &
//! Weller, "The Unreasonable Effectiveness of Structured Random Orthogonal
//! Embeddings", NeurIPS 2017). Its transpose is S⁻¹ = n^{-3/2} D₁ H D₂ H D₃ H.
//!
//! Activations are feature-major (row i holds the B inputs' unit i), so a
//! butterfly adds two contiguous rows. Every element sees the same
//! operations in the same order however the work is split (cache blocks,
//! threads, GPU tiles), so the transform is bitwise reproducible and the GPU
//! twin can equal it bit for bit.

use crate::rng::Stream;
use rayon::prelude::*;

/// Bytes of one cache block of the transform.
const BLOCK_BYTES: usize = 256 << 10;

/// The D_r rounds: D₁, D₂, D₃ are rounds 0, 1, 2 of a layer's sign stream.
pub use crate::sim::spec::HADAMARD_ROUNDS as ROUNDS;

/// (a, b) ← (a + b, a − b) elementwise.
#[inline(always)]
fn butterfly(a: &mut [f32], b: &mut [f32]) {
    for (x, y) in a.iter_mut().zip(b.iter_mut()) {
        let (u, v) = (*x, *y);
        *x = u + v;
        *y = u - v;
    }
}

/// Two stages at once on quarters (a, b, c, d): stage h pairs (a, b) and
/// (c, d), stage 2h pairs the results (a, c) and (b, d). The same
/// additions in the same order as two radix-2 passes, with half the
/// memory traffic.
#[inline(always)]
fn butterfly4(a: &mut [f32], b: &mut [f32], c: &mut [f32], d: &mut [f32]) {
    for (((w, x), y), z) in a
        .iter_mut()
        .zip(b.iter_mut())
        .zip(c.iter_mut())
        .zip(d.iter_mut())
    {
        let (p, q) = (*w + *x, *w - *x);
        let (r, s) = (*y + *z, *y - *z);
        *w = p + r;
        *y = p - r;
        *x = q + s;
        *z = q - s;
    }
}

/// Butterfly stages h = 1, 2, …, m/2 over m contiguous rows of `row`
/// floats (stages paired into radix-4 passes; a last odd stage alone).
#[inline(always)]
fn stages_contiguous_body(x: &mut [f32], row: usize, m: usize) {
    let mut h = 1;
    while 4 * h <= m {
        for quad in x.chunks_exact_mut(4 * h * row) {
            let (ab, cd) = quad.split_at_mut(2 * h * row);
            let (a, b) = ab.split_at_mut(h * row);
            let (c, d) = cd.split_at_mut(h * row);
            butterfly4(a, b, c, d);
        }
        h *= 4;
    }
    if 2 * h == m {
        for pair in x.chunks_exact_mut(2 * h * row) {
            let (a, b) = pair.split_at_mut(h * row);
            butterfly(a, b);
        }
    }
}

/// The same stages over m separate runs of equal length (run k is row k).
#[inline(always)]
fn stages_runs_body(runs: &mut [&mut [f32]]) {
    let m = runs.len();
    let mut h = 1;
    while 4 * h <= m {
        for base in (0..m).step_by(4 * h) {
            for k in base..base + h {
                let (lo, hi) = runs.split_at_mut(k + h);
                let (b, hi) = hi.split_at_mut(h);
                let (c, d) = hi.split_at_mut(h);
                butterfly4(lo[k], b[0], c[0], d[0]);
            }
        }
        h *= 4;
    }
    if 2 * h == m {
        for k in 0..h {
            let (lo, hi) = runs.split_at_mut(k + h);
            butterfly(lo[k], hi[0]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn stages_contiguous_avx2(x: &mut [f32], row: usize, m: usize) {
    stages_contiguous_body(x, row, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn stages_runs_avx2(runs: &mut [&mut [f32]]) {
    stages_runs_body(runs)
}

/// [`stages_contiguous_body`], with AVX2 where the CPU has it (additions
/// are IEEE in any width, so the bits are the same).
fn stages_contiguous(x: &mut [f32], row: usize, m: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        unsafe { stages_contiguous_avx2(x, row, m) };
        return;
    }
    stages_contiguous_body(x, row, m)
}

fn stages_runs(runs: &mut [&mut [f32]]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        unsafe { stages_runs_avx2(runs) };
        return;
    }
    stages_runs_body(runs)
}

/// Negates rows `first..` of the block `x` (rows of `batch` floats) whose
/// sign bit in `signs` is set.
#[inline(always)]
fn negate_rows(x: &mut [f32], batch: usize, first: usize, signs: &[u32]) {
    for (k, row) in x.chunks_exact_mut(batch).enumerate() {
        let i = first + k;
        if (signs[i / 32] >> (i % 32)) & 1 == 1 {
            row.iter_mut().for_each(|v| *v = -*v);
        }
    }
}

/// The largest power of two ≤ x (x ≥ 1).
fn pow2_floor(x: usize) -> usize {
    1 << (usize::BITS - 1 - x.max(1).leading_zeros())
}

/// y ← H y in place for the n × B feature-major matrix `x` (each of its B
/// columns transformed), n a power of two; unnormalized (H² = n·I).
pub fn fwht(x: &mut [f32], n: usize, batch: usize) {
    signed_fwht(x, n, batch, None)
}

/// y ← H D y, D the sign diagonal packed in `signs` (bit i set: row i
/// negated), or y ← H y without signs.
///
/// Stages h < R (R rows fit a cache block) run block by block, after the
/// block's signs; the stages h ≥ R only mix rows with the same index mod
/// R, so they run on groups of residues, each gathered as n/R runs of g·B
/// contiguous floats. Threads take blocks, then groups; the operations on
/// every element are those of the plain loop over h = 1, 2, …, n/2, in
/// that order.
pub fn signed_fwht(x: &mut [f32], n: usize, batch: usize, signs: Option<&[u32]>) {
    assert!(
        n.is_power_of_two(),
        "the Walsh–Hadamard transform needs n = 2^k, got {n}"
    );
    assert_eq!(x.len(), n * batch, "fwht: x must be n × B");
    if batch == 0 {
        return;
    }
    let r = pow2_floor(BLOCK_BYTES / 4 / batch).clamp(1, n);
    x.par_chunks_mut(r * batch)
        .enumerate()
        .for_each(|(k, blk)| {
            if let Some(s) = signs {
                negate_rows(blk, batch, k * r, s);
            }
            stages_contiguous(blk, batch, r);
        });
    if r == n {
        return;
    }
    let m = n / r;
    let g = pow2_floor(BLOCK_BYTES / 4 / batch / m).clamp(1, r);
    // Runs of g rows: run k·(r/g) + j holds rows k·r + j·g .. k·r + (j+1)·g.
    let mut groups: Vec<Vec<&mut [f32]>> = (0..r / g).map(|_| Vec::with_capacity(m)).collect();
    for (idx, run) in x.chunks_mut(g * batch).enumerate() {
        groups[idx % (r / g)].push(run);
    }
    groups.par_iter_mut().for_each(|runs| stages_runs(runs));
}

/// The packed signs of D_{round+1} for `layer`: bit i mod 32 of word i/32,
/// set = −1 (see [`crate::sim::Weights::Hadamard`]).
pub fn diagonal(stream: &Stream, layer: u32, round: u32, n: usize) -> Vec<u32> {
    stream.sign_words(layer, round, n)
}

/// Negates row i of the n × B matrix `x` where sign bit i of `signs` is set.
pub fn apply_signs(x: &mut [f32], batch: usize, signs: &[u32]) {
    x.par_chunks_mut(batch.max(1) * 1024)
        .enumerate()
        .for_each(|(c, blk)| negate_rows(blk, batch, c * 1024, signs));
}

/// x ← S x = n^{-3/2} H D₃ H D₂ H D₁ x without the scale: the three
/// transforms with the signs of `layer` (for tests and the backward pass,
/// which scale afterwards).
pub fn apply_unscaled(x: &mut [f32], n: usize, batch: usize, stream: &Stream, layer: u32) {
    for round in 0..ROUNDS {
        signed_fwht(x, n, batch, Some(&diagonal(stream, layer, round, n)));
    }
}

/// x ← Sᵀ x = n^{-3/2} D₁ H D₂ H D₃ H x without the scale.
pub fn apply_transposed_unscaled(
    x: &mut [f32],
    n: usize,
    batch: usize,
    stream: &Stream,
    layer: u32,
) {
    for round in (0..ROUNDS).rev() {
        fwht(x, n, batch);
        apply_signs(x, batch, &diagonal(stream, layer, round, n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain O(n²) product with Sylvester's H: H_ij = (−1)^{popcount(i & j)}.
    fn dense_h(x: &[f32], n: usize, batch: usize) -> Vec<f64> {
        let mut y = vec![0f64; n * batch];
        for i in 0..n {
            for j in 0..n {
                let s = if (i & j).count_ones() % 2 == 0 {
                    1.0
                } else {
                    -1.0
                };
                for b in 0..batch {
                    y[i * batch + b] += s * f64::from(x[j * batch + b]);
                }
            }
        }
        y
    }

    #[test]
    fn fast_transform_equals_the_dense_sylvester_product() {
        // Integer entries: every partial sum is exact in f32, so equality is exact.
        for (n, batch) in [(1, 3), (2, 1), (8, 5), (64, 3), (256, 2)] {
            let x: Vec<f32> = (0..n * batch)
                .map(|k| ((k * 7919) % 23) as f32 - 11.0)
                .collect();
            let mut y = x.clone();
            fwht(&mut y, n, batch);
            let want = dense_h(&x, n, batch);
            for (k, (a, b)) in y.iter().zip(&want).enumerate() {
                assert_eq!(f64::from(*a), *b, "n {n} B {batch} entry {k}");
            }
        }
    }

    #[test]
    fn blocked_transform_is_bitwise_the_plain_loop() {
        // n·B·4 bytes over the cache block, so the grouped high stages run.
        let (n, batch) = (1 << 15, 4);
        let s = Stream::new(3, 1);
        let mut x = vec![0f32; n * batch];
        for (i, row) in x.chunks_mut(n).enumerate() {
            s.fill_row(1, i as u32, row);
        }
        let mut plain = x.clone();
        let mut h = 1;
        while h < n {
            for pair in plain.chunks_exact_mut(2 * h * batch) {
                let (a, b) = pair.split_at_mut(h * batch);
                butterfly(a, b);
            }
            h *= 2;
        }
        fwht(&mut x, n, batch);
        assert!(
            x.iter()
                .zip(&plain)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "blocked and plain transforms differ"
        );
    }
}
