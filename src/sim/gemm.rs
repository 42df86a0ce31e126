//! The CPU layer's matrix product, out (r × B) = W (r × n) · act (n × B),
//! on operands packed once, where they are made, for a register-blocked
//! micro-kernel (the GotoBLAS/BLIS scheme: Goto & van de Geijn, "Anatomy of
//! high-performance matrix multiplication", ACM TOMS 34(3), 2008).
//!
//! - The activations are packed once per layer ([`PackedActs`]) into
//!   column panels of [`NR`] columns, k-major (NR contiguous floats per k,
//!   zero-padded past B), and shared read-only by every thread.
//! - The weights are generated straight into row panels of [`MR`] rows,
//!   k-major (MR contiguous floats per k, zero-padded past the block's last
//!   row), by [`crate::rng::Stream::fill_panel`] or
//!   [`crate::rng::Stream::fill_panel_signs`]: no row-major copy is made
//!   and nothing is packed a second time.
//! - An MR × NR micro-kernel keeps the output tile in registers and adds
//!   one rank-1 update per k, in k order, in f32. Each output element is
//!   therefore the same fixed-order sum Σₖ w_k·a_k whichever block, thread
//!   or k-slice computed it: a seed gives the same bits at any thread count.
//!   The input dimension is cut into slices of [`KC`] (the activation panel
//!   slice stays in L1, the weight block's slice in L2); the tile goes back
//!   to memory between slices, which does not change the sum.
//!
//! [`Kernel::detect`] picks an AVX2 + FMA kernel (std::arch intrinsics,
//! enabled per function with `#[target_feature]`) where the CPU has them, a
//! portable one (plain loops; a multiply then an add, two roundings)
//! elsewhere; the two agree to f32 rounding.

/// Rows of W per panel (and of the output tile).
pub const MR: usize = 4;

/// Columns of the activations per panel (and of the output tile).
pub const NR: usize = 16;

/// Input-dimension slice of one pass over a block.
pub const KC: usize = 512;

/// Which micro-kernel runs the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Plain loops the compiler may vectorize; any CPU.
    Portable,
    /// AVX2 + FMA intrinsics (x86_64 CPUs that have both).
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Kernel::Avx2Fma;
        }
        Kernel::Portable
    }

    /// Every kernel this CPU runs, portable first.
    pub fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::Portable];
        if Kernel::detect() != Kernel::Portable {
            all.push(Kernel::detect());
        }
        all
    }
}

/// The activations (n × B, feature-major: `act[k·B + b]`) packed into
/// ⌈B/NR⌉ column panels: panel p holds `act[k·B + p·NR + c]` at
/// `k·NR + c`, zero for columns past B.
#[derive(Debug, Clone)]
pub struct PackedActs {
    data: Vec<f32>,
    n: usize,
    batch: usize,
}

impl PackedActs {
    /// Packs `act` (n × `batch`, `act.len() == n·batch`).
    pub fn pack(act: &[f32], n: usize, batch: usize) -> PackedActs {
        assert_eq!(act.len(), n * batch, "activations are n × B");
        let panels = batch.div_ceil(NR);
        let mut data = vec![0f32; panels * n * NR];
        if n > 0 {
            for (p, panel) in data.chunks_exact_mut(n * NR).enumerate() {
                let c0 = p * NR;
                let w = NR.min(batch - c0);
                for (run, src) in panel.chunks_exact_mut(NR).zip(act.chunks_exact(batch)) {
                    run[..w].copy_from_slice(&src[c0..c0 + w]);
                }
            }
        }
        PackedActs { data, n, batch }
    }

    /// The input dimension n.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The batch B (columns before padding).
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Number of column panels, ⌈B/NR⌉.
    pub fn panels(&self) -> usize {
        self.batch.div_ceil(NR)
    }

    /// Rows k0 .. k0 + len of column panel p (len·NR floats).
    fn slice(&self, p: usize, k0: usize, len: usize) -> &[f32] {
        &self.data[(p * self.n + k0) * NR..(p * self.n + k0 + len) * NR]
    }
}

/// Floats of weight panels holding `rows` rows of width n: ⌈rows/MR⌉
/// panels of n·MR.
pub fn panels_len(rows: usize, n: usize) -> usize {
    rows.div_ceil(MR) * n * MR
}

/// Floats of the output tiles of an r-row product with `acts`.
pub fn tiles_len(rows: usize, acts: &PackedActs) -> usize {
    rows.div_ceil(MR) * acts.panels() * MR * NR
}

/// `out` (r × B, row-major, `out.len() == r·B`) = W · act, with W's r rows
/// in the first ⌈r/MR⌉ panels of `w` (each n·MR floats, k-major, rows past
/// r zero) and act packed in `acts`. `tiles` is scratch of at least
/// [`tiles_len`] floats. Each element is Σₖ W_ik·act_kb added in k order in
/// f32 by `kernel`.
pub fn multiply(
    kernel: Kernel,
    w: &[f32],
    acts: &PackedActs,
    tiles: &mut [f32],
    out: &mut [f32],
) {
    let (n, batch) = (acts.n, acts.batch);
    if batch == 0 {
        return;
    }
    assert_eq!(out.len() % batch, 0, "the output is r × B");
    let r = out.len() / batch;
    let (mp, np) = (r.div_ceil(MR), acts.panels());
    assert!(w.len() >= mp * n * MR, "{mp} weight panels of {n} × {MR}");
    let tiles = &mut tiles[..mp * np * MR * NR];
    if n == 0 {
        tiles.fill(0.0);
    }
    for k0 in (0..n).step_by(KC) {
        let len = KC.min(n - k0);
        for p in 0..np {
            let b = acts.slice(p, k0, len);
            for m in 0..mp {
                let a = &w[(m * n + k0) * MR..(m * n + k0 + len) * MR];
                let tile: &mut [f32; MR * NR] = (&mut tiles[(p * mp + m) * MR * NR..][..MR * NR])
                    .try_into()
                    .expect("one tile");
                micro(kernel, a, b, tile, k0 > 0);
            }
        }
    }
    for (i, row) in out.chunks_exact_mut(batch).enumerate() {
        let (m, mi) = (i / MR, i % MR);
        for (p, run) in row.chunks_mut(NR).enumerate() {
            let tile = &tiles[(p * mp + m) * MR * NR..][..MR * NR];
            run.copy_from_slice(&tile[mi * NR..mi * NR + run.len()]);
        }
    }
}

/// tile (MR × NR, row-major) = [tile if `load`] + Σₖ a[k·MR + i]·b[k·NR + j]
/// over k = 0..a.len()/MR, in k order.
fn micro(kernel: Kernel, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR], load: bool) {
    let k = a.len() / MR;
    assert!(a.len() == k * MR && b.len() == k * NR, "panels of {k} rows");
    match kernel {
        Kernel::Portable => micro_portable(a, b, tile, load),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2Fma` comes from `Kernel::detect`, or from a caller
        // that checked the CPU the same way (the tests use
        // `Kernel::available`); a and b hold k panel rows (asserted above).
        Kernel::Avx2Fma => unsafe { avx2::micro(k, a.as_ptr(), b.as_ptr(), tile, load) },
    }
}

fn micro_portable(a: &[f32], b: &[f32], tile: &mut [f32; MR * NR], load: bool) {
    let mut acc = [[0f32; NR]; MR];
    if load {
        for (row, src) in acc.iter_mut().zip(tile.chunks_exact(NR)) {
            row.copy_from_slice(src);
        }
    }
    for (av, bv) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (row, &x) in acc.iter_mut().zip(av) {
            for (c, &y) in row.iter_mut().zip(bv) {
                *c += x * y;
            }
        }
    }
    for (row, dst) in acc.iter().zip(tile.chunks_exact_mut(NR)) {
        dst.copy_from_slice(row);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// 256-bit vectors per tile row.
    const NV: usize = NR / 8;

    /// The micro-kernel with the tile in MR × NR/8 ymm registers: per k,
    /// NR/8 vector loads of the activations, MR broadcasts of the weights,
    /// MR·NR/8 fused multiply-adds.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a` points to k·MR and `b` to k·NR
    /// readable floats.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn micro(
        k: usize,
        a: *const f32,
        b: *const f32,
        tile: &mut [f32; MR * NR],
        load: bool,
    ) {
        const { assert!(NR % 8 == 0) };
        let t = tile.as_mut_ptr();
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        if load {
            for (i, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(t.add(i * NR + 8 * v));
                }
            }
        }
        for kk in 0..k {
            let bp = b.add(kk * NR);
            let ap = a.add(kk * MR);
            let bv: [__m256; NV] = std::array::from_fn(|v| _mm256_loadu_ps(bp.add(8 * v)));
            for (i, row) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*ap.add(i));
                for (v, c) in row.iter_mut().enumerate() {
                    *c = _mm256_fmadd_ps(x, bv[v], *c);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                _mm256_storeu_ps(t.add(i * NR + 8 * v), *x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// W (r × n) in MR-row panels, as `fill_panel` writes them.
    fn panels(w: &[f32], r: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; panels_len(r, n)];
        for i in 0..r {
            for k in 0..n {
                out[(i / MR) * n * MR + k * MR + i % MR] = w[i * n + k];
            }
        }
        out
    }

    /// The product with every kernel against an f64 triple loop, at sizes
    /// off the panels (r, B not multiples of MR, NR), off the k-slices
    /// (n = 97, 333 < KC; 1100 > 2·KC) and at B = 1: each element within
    /// 1e-5 of the rms of the output (f32 sums of n terms of mixed sign
    /// carry ~√n·2⁻²⁴ relative error).
    #[test]
    fn packed_product_equals_an_f64_triple_loop() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        for (n, r) in [(97, 13), (333, 8), (1100, 5), (1, 3)] {
            for batch in [1, 5, 17, 130, 257] {
                let w: Vec<f32> = (0..r * n).map(|_| rng.random_range(-1.0..1.0)).collect();
                let act: Vec<f32> = (0..n * batch).map(|_| rng.random_range(-1.0..1.0)).collect();
                let exact: Vec<f64> = (0..r * batch)
                    .map(|e| {
                        let (i, b) = (e / batch, e % batch);
                        (0..n)
                            .map(|k| f64::from(w[i * n + k]) * f64::from(act[k * batch + b]))
                            .sum()
                    })
                    .collect();
                let rms = (exact.iter().map(|x| x * x).sum::<f64>() / exact.len() as f64).sqrt();
                let acts = PackedActs::pack(&act, n, batch);
                let wp = panels(&w, r, n);
                for kernel in Kernel::available() {
                    let mut tiles = vec![f32::NAN; tiles_len(r, &acts)];
                    let mut out = vec![f32::NAN; r * batch];
                    multiply(kernel, &wp, &acts, &mut tiles, &mut out);
                    for (e, (&got, &want)) in out.iter().zip(&exact).enumerate() {
                        let err = (f64::from(got) - want).abs();
                        assert!(
                            err <= 1e-5 * rms,
                            "{kernel:?}, n {n}, r {r}, B {batch}, element {e}: {got} vs {want} \
                             (error {err:e}, rms {rms:e})"
                        );
                    }
                }
            }
        }
    }

    /// The SIMD kernel against the portable one: the same sums in the same
    /// order, one rounding (FMA) against two per term, so they differ by a
    /// few ulps of the partial sums; and the same kernel on the same
    /// operands gives the same bits whether or not the sum is cut into
    /// k-slices (n = 1100 spans three).
    #[test]
    fn kernels_agree_to_rounding_and_slices_do_not_change_the_bits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (n, r, batch) = (1100, 9, 19);
        let w: Vec<f32> = (0..r * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let act: Vec<f32> = (0..n * batch).map(|_| rng.random_range(-1.0..1.0)).collect();
        let acts = PackedActs::pack(&act, n, batch);
        let wp = panels(&w, r, n);
        let run = |kernel| {
            let mut tiles = vec![0f32; tiles_len(r, &acts)];
            let mut out = vec![0f32; r * batch];
            multiply(kernel, &wp, &acts, &mut tiles, &mut out);
            out
        };
        let portable = run(Kernel::Portable);
        // Σ|w·a| bounds the rounding of each partial sum: n·2⁻²⁴·Σ|terms|
        // is a (loose) bound on the difference of two orders of rounding.
        for kernel in Kernel::available() {
            let out = run(kernel);
            assert_eq!(
                out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                run(kernel).iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{kernel:?} repeats"
            );
            for (e, (a, b)) in out.iter().zip(&portable).enumerate() {
                let (i, c) = (e / batch, e % batch);
                let abs: f32 = (0..n).map(|k| (w[i * n + k] * act[k * batch + c]).abs()).sum();
                assert!(
                    (a - b).abs() <= n as f32 * f32::EPSILON * abs,
                    "{kernel:?} element {e}: {a} vs portable {b}"
                );
            }
        }
        // One k-slice by hand: the tile accumulated over 0..n at once.
        let k = n.min(KC);
        let (mut one, mut two) = ([0f32; MR * NR], [0f32; MR * NR]);
        let (a, b) = (&wp[..k * MR], acts.slice(0, 0, k));
        for kernel in Kernel::available() {
            micro(kernel, a, b, &mut one, false);
            micro(kernel, &a[..(k / 2) * MR], &b[..(k / 2) * NR], &mut two, false);
            micro(kernel, &a[(k / 2) * MR..], &b[(k / 2) * NR..], &mut two, true);
            assert_eq!(one.map(f32::to_bits), two.map(f32::to_bits), "{kernel:?}");
        }
    }
}
