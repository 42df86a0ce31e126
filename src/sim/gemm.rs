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
//!   row), one slice of [`KC`] columns at a time, by
//!   [`crate::rng::Stream::fill_panel`] or
//!   [`crate::rng::Stream::fill_panel_signs`]: no row-major copy is made,
//!   nothing is packed a second time, and a slice is multiplied while it is
//!   still in cache (the block's r × KC floats).
//! - An MR × NR micro-kernel keeps the output tile in registers and adds
//!   one rank-1 update per k, in k order, in f32. Each output element is
//!   therefore the same fixed-order sum Σₖ w_k·a_k whichever block, thread
//!   or k-slice computed it: a seed gives the same bits at any thread count.
//!   The input dimension is cut into slices of [`KC`] (the activation
//!   panel's slice stays in L1, the weight block's slice in L2); the tile
//!   goes back to memory between slices, which does not change the sum.
//!
//! [`Kernel::detect`] picks an AVX2 + FMA kernel (std::arch intrinsics,
//! enabled per function with `#[target_feature]`) where the CPU has them, a
//! portable one (plain loops; a multiply then an add, two roundings)
//! elsewhere; the two agree to f32 rounding.

/// Rows of W per panel (and of the output tile). A 4 × 16 tile is 8 ymm
/// accumulators: per k, 2 vector loads and 4 broadcasts feed 8 FMAs, and 4
/// and 16 divide the blocks' rows and the usual batches (16, 64, 256), so
/// little of the tile is padding. Measured at 42–52 GMAC/s per thread on a
/// Zen 4 EPYC (about its FMA peak); other shapes were not tried.
pub const MR: usize = 4;

/// Columns of the activations per panel (and of the output tile).
pub const NR: usize = 16;

/// Input-dimension slice of one pass over a block: an activation panel's
/// slice is 16 KiB (half a 32 KiB L1), a 128-row block's weight slice
/// 128 KiB. Measured at n = 4096, B = 256 (one thread): 42 GMAC/s at 128,
/// 52 at 256; at n = 16384 the unsliced product ran at 28–34.
pub const KC: usize = 256;

/// Rows of the layer's output per block of work (one [`product`] call,
/// one thread): 128, fewer where n/16 is smaller (at least 8, a multiple of
/// 8), so a layer has at least 16 blocks to share out where n ≥ 128. The
/// weights a block holds at once are its rows × [`KC`], whatever n; each
/// activation read from memory serves all the block's rows.
pub fn block_rows(n: usize) -> usize {
    (n / 16 / 8 * 8).clamp(8, 128)
}

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
    /// Packs `act` (n × `batch`, `act.len() == n·batch`), on all threads.
    pub fn pack(act: &[f32], n: usize, batch: usize) -> PackedActs {
        use rayon::prelude::*;
        assert_eq!(act.len(), n * batch, "activations are n × B");
        /// Rows of the input dimension per parallel task.
        const ROWS: usize = 512;
        let panels = batch.div_ceil(NR);
        let mut data = vec![0f32; panels * n * NR];
        if n > 0 {
            data.par_chunks_mut(n * NR)
                .enumerate()
                .for_each(|(p, panel)| {
                    let c0 = p * NR;
                    let w = NR.min(batch - c0);
                    panel
                        .par_chunks_mut(ROWS * NR)
                        .zip(act.par_chunks(ROWS * batch))
                        .for_each(|(dst, src)| {
                            for (run, row) in dst.chunks_exact_mut(NR).zip(src.chunks_exact(batch))
                            {
                                run[..w].copy_from_slice(&row[c0..c0 + w]);
                            }
                        });
                });
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

/// `out` (r × B, row-major, `out.len() == r·B`) = W · act, with act packed
/// in `acts` and W generated slice by slice: for each slice k0 .. k0 + len
/// of the input dimension ([`KC`] wide, the last one shorter) and each row
/// panel, `fill(i, rows, k0, panel)` writes W[i + m][k0 + k] at
/// `panel[k·MR + m]` for m < rows (= min(MR, r − i)) and zeros for
/// rows ≤ m < MR. The slice's panels (r × KC floats) are used while they
/// are in cache and then overwritten by the next slice's. Each element is
/// Σₖ W_ik·act_kb added in k order in f32 by `kernel`; `scratch` is the
/// caller's buffer (reused across calls).
pub fn product(
    kernel: Kernel,
    acts: &PackedActs,
    fill: impl Fn(usize, usize, usize, &mut [f32]),
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    assert!(
        kernel == Kernel::Portable || kernel == Kernel::detect(),
        "the {kernel:?} kernel does not run on this CPU"
    );
    let (n, batch) = (acts.n, acts.batch);
    if batch == 0 {
        return;
    }
    assert_eq!(out.len() % batch, 0, "the output is r × B");
    let r = out.len() / batch;
    let (mp, np) = (r.div_ceil(MR), acts.panels());
    let wl = mp * KC.min(n) * MR;
    scratch.resize(wl + mp * np * MR * NR, 0.0);
    let (w, tiles) = scratch.split_at_mut(wl);
    if n == 0 {
        tiles.fill(0.0);
    }
    for k0 in (0..n).step_by(KC) {
        let len = KC.min(n - k0);
        let w = &mut w[..mp * len * MR];
        for (m, panel) in w.chunks_exact_mut(len * MR).enumerate() {
            fill(m * MR, MR.min(r - m * MR), k0, panel);
        }
        for p in 0..np {
            let b = acts.slice(p, k0, len);
            for (m, a) in w.chunks_exact(len * MR).enumerate() {
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
        // SAFETY: the callers (`product`, which checks, and the tests,
        // which take `Kernel::available`) pass a kernel the CPU runs (AVX2
        // and FMA); a and b hold k panel rows (asserted above).
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
        const { assert!(NR.is_multiple_of(8)) };
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

    /// The product of W (r × n, row-major) with `acts`, W's panels
    /// copied from it as `fill_panel` writes them.
    fn run(kernel: Kernel, w: &[f32], r: usize, acts: &PackedActs) -> Vec<f32> {
        let n = acts.n();
        let fill = |i: usize, rows: usize, k0: usize, panel: &mut [f32]| {
            for (k, run) in panel.chunks_exact_mut(MR).enumerate() {
                for (m, x) in run.iter_mut().enumerate() {
                    *x = if m < rows {
                        w[(i + m) * n + k0 + k]
                    } else {
                        0.0
                    };
                }
            }
        };
        let mut out = vec![f32::NAN; r * acts.batch()];
        product(kernel, acts, fill, &mut vec![f32::NAN; 7], &mut out);
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
                let act: Vec<f32> = (0..n * batch)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
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
                for kernel in Kernel::available() {
                    let out = run(kernel, &w, r, &acts);
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
        let act: Vec<f32> = (0..n * batch)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let acts = PackedActs::pack(&act, n, batch);
        let run = |kernel| run(kernel, &w, r, &acts);
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
                let abs: f32 = (0..n)
                    .map(|k| (w[i * n + k] * act[k * batch + c]).abs())
                    .sum();
                assert!(
                    (a - b).abs() <= n as f32 * f32::EPSILON * abs,
                    "{kernel:?} element {e}: {a} vs portable {b}"
                );
            }
        }
        // One k-slice by hand: the tile accumulated over 0..k at once.
        let k = n.min(KC);
        let a: Vec<f32> = (0..k * MR).map(|e| w[(e % MR) * n + e / MR]).collect();
        let (mut one, mut two) = ([0f32; MR * NR], [0f32; MR * NR]);
        let b = acts.slice(0, 0, k);
        for kernel in Kernel::available() {
            micro(kernel, &a, b, &mut one, false);
            micro(
                kernel,
                &a[..(k / 2) * MR],
                &b[..(k / 2) * NR],
                &mut two,
                false,
            );
            micro(
                kernel,
                &a[(k / 2) * MR..],
                &b[(k / 2) * NR..],
                &mut two,
                true,
            );
            assert_eq!(one.map(f32::to_bits), two.map(f32::to_bits), "{kernel:?}");
        }
    }

    /// The panel fills of `rng` that feed the product (`Stream::fill_panel`,
    /// `fill_panel_signs`) against the row fills, at every panel width the
    /// product may use, every padding, column ranges off the 4-column
    /// blocks' steps and off the 128-sign calls.
    #[test]
    fn panels_hold_the_rows_of_fill_row_bit_for_bit() {
        use crate::rng::Stream;
        fn check<const MR: usize>(s: &Stream) {
            let n = 700;
            let mut row = vec![0f32; n];
            let mut row_signs = vec![0f32; n];
            for (col0, len) in [
                (0, 1),
                (0, 3),
                (0, 17),
                (0, 203),
                (4, 64),
                (96, 97),
                (256, 444),
            ] {
                for rows in [1, MR / 2 + 1, MR] {
                    let mut panel = vec![f32::NAN; len * MR];
                    let mut signs = vec![f32::NAN; len * MR];
                    s.fill_panel::<MR>(4, 17, rows, col0, &mut panel);
                    s.fill_panel_signs::<MR>(4, 17, rows, col0, &mut signs);
                    for m in 0..MR {
                        if m < rows {
                            s.fill_row(4, 17 + m as u32, &mut row);
                            s.fill_row_signs(4, 17 + m as u32, &mut row_signs);
                        } else {
                            row.fill(0.0);
                            row_signs.fill(0.0);
                        }
                        for k in 0..len {
                            let at = format!("MR {MR}, rows {rows}, row {m}, column {}", col0 + k);
                            let (z, sign) = (row[col0 + k], row_signs[col0 + k]);
                            assert_eq!(panel[k * MR + m].to_bits(), z.to_bits(), "{at}");
                            assert_eq!(signs[k * MR + m].to_bits(), sign.to_bits(), "{at}");
                        }
                    }
                }
            }
        }
        let s = Stream::new(0xDEAD_BEEF_0123, 9);
        check::<1>(&s);
        check::<4>(&s);
        check::<8>(&s);
        check::<16>(&s);
    }
}
