//! The training step's three products on the CPU, each on its operands where
//! they lie (no copy of a weight matrix is made) and each with what follows
//! it in its epilogue:
//!
//! * [`forward`]: H (fo × B) = W·A + b, then A' = φ(H) — W (fo × fi,
//!   row-major) is read in place, four rows at a time; A (fi × B) is packed
//!   once into column panels (fi·B floats, a small fraction of fo·fi).
//! * [`input_grad`]: G_A = Wᵀ·G computed as its transpose Gᵀ·W, so that W
//!   is read in place as the micro-kernel's vector operand (16 contiguous
//!   floats of a row per k, each fetched line used whole); the epilogue
//!   writes the tile transposed and applies the straight-through mask
//!   s·1{|h| ≤ t} of the layer below.
//! * [`weight_update`]: ΔW = G·Aᵀ never reaches memory: each MR × NR tile
//!   of it, summed over the batch in registers, goes straight into the
//!   momentum update v ← μv + ΔW, w ← w − ηv of the same tile.
//!
//! All three use the simulator's MR × NR = 4 × 16 register tile
//! ([`crate::sim::gemm`]; AVX2 + FMA where the CPU has them, plain loops
//! elsewhere) with strided operands: a(r, k) = a[r·rs + k·ks] is broadcast,
//! b(k, c) = b[k·ks + c] (c < NR) is loaded as vectors. Every output element
//! is one sum over k in k order, in whatever block or thread it is computed,
//! so a step gives the same bits at any thread count. Rows and columns past
//! the edges are handled by zero-padded copies of the (small) operands.

use crate::sim::gemm::{Kernel, MR, NR};
use rayon::prelude::*;
use std::cell::RefCell;

/// Reduction slice of one pass over a tile: a column panel's slice of the
/// packed activations is KC·NR floats (16 KiB), half an L1 cache.
pub const KC: usize = 256;

/// Output rows of W per task of [`forward`] and [`weight_update`].
const BLOCK_ROWS: usize = 32;

thread_local! {
    /// Per-thread scratch of the edge cases (padded operand strips and tiles),
    /// reused across steps.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// tile (MR × NR, row-major) = [tile if `load`] + Σ_{k < len} a(r, k)·b(k, c),
/// a(r, k) = a[r·a_rs + k·a_ks], b(k, c) = b[k·b_ks + c].
#[allow(clippy::too_many_arguments)]
fn micro(
    kernel: Kernel,
    len: usize,
    a: &[f32],
    (a_rs, a_ks): (usize, usize),
    b: &[f32],
    b_ks: usize,
    tile: &mut [f32; MR * NR],
    load: bool,
) {
    if len > 0 {
        assert!((MR - 1) * a_rs + (len - 1) * a_ks < a.len(), "operand A");
        assert!((len - 1) * b_ks + NR - 1 < b.len(), "operand B");
    }
    match kernel {
        Kernel::Portable => {
            let mut acc = [[0f32; NR]; MR];
            if load {
                for (row, src) in acc.iter_mut().zip(tile.chunks_exact(NR)) {
                    row.copy_from_slice(src);
                }
            }
            for k in 0..len {
                let bv = &b[k * b_ks..k * b_ks + NR];
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = a[r * a_rs + k * a_ks];
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
        // SAFETY: `kernel` is one this CPU runs (the public entry points
        // check it against Kernel::detect), and every index read is inside
        // a and b (asserted above).
        Kernel::Avx2Fma => unsafe {
            avx2::micro(len, a.as_ptr(), a_rs, a_ks, b.as_ptr(), b_ks, tile, load)
        },
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// 256-bit vectors per tile row.
    const NV: usize = NR / 8;

    /// The strided micro-kernel: the tile in MR × NR/8 ymm registers; per k,
    /// NR/8 vector loads of b, MR broadcasts of a, MR·NR/8 FMAs.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; a(r, k) and b(k, c) are readable for
    /// r < MR, k < len, c < NR.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn micro(
        len: usize,
        a: *const f32,
        a_rs: usize,
        a_ks: usize,
        b: *const f32,
        b_ks: usize,
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
        for k in 0..len {
            let bp = b.add(k * b_ks);
            let ap = a.add(k * a_ks);
            let bv: [__m256; NV] = std::array::from_fn(|v| _mm256_loadu_ps(bp.add(8 * v)));
            for (i, row) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*ap.add(i * a_rs));
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

fn check(kernel: Kernel) {
    assert!(
        kernel == Kernel::Portable || kernel == Kernel::detect(),
        "the {kernel:?} kernel does not run on this CPU"
    );
}

/// Packs the columns of `src` (k × n, row-major, row stride n) into ⌈n/NR⌉
/// panels, k-major: `dst[(p·k + i)·NR + c] = src[i·n + p·NR + c]`, zero past n.
pub fn pack_columns(src: &[f32], k: usize, n: usize, dst: &mut Vec<f32>) {
    assert_eq!(src.len(), k * n, "k × n");
    let panels = n.div_ceil(NR);
    dst.clear();
    dst.resize(panels * k * NR, 0.0);
    for (p, panel) in dst.chunks_exact_mut(k * NR).enumerate() {
        let (c0, w) = (p * NR, NR.min(n - p * NR));
        for (run, row) in panel.chunks_exact_mut(NR).zip(src.chunks_exact(n)) {
            run[..w].copy_from_slice(&row[c0..c0 + w]);
        }
    }
}

/// Packs the rows of `src` (n × k, row-major) as the columns of its
/// transpose: `dst[(p·k + i)·NR + c] = src[(p·NR + c)·k + i]`, zero past n.
pub fn pack_transposed(src: &[f32], n: usize, k: usize, dst: &mut Vec<f32>) {
    assert_eq!(src.len(), n * k, "n × k");
    let panels = n.div_ceil(NR);
    dst.clear();
    dst.resize(panels * k * NR, 0.0);
    for (p, panel) in dst.chunks_exact_mut(k * NR).enumerate() {
        for c in 0..NR.min(n - p * NR) {
            let row = &src[(p * NR + c) * k..][..k];
            for (i, &v) in row.iter().enumerate() {
                panel[i * NR + c] = v;
            }
        }
    }
}

/// Copies `src` (rows × cols) into `dst` as rows_p × cols_p with zeros
/// past the edges (rows_p, cols_p: the next multiples of MR).
pub fn pad_rows_cols(src: &[f32], rows: usize, cols: usize, dst: &mut Vec<f32>) -> usize {
    assert_eq!(src.len(), rows * cols, "rows × cols");
    let (rp, cp) = (rows.next_multiple_of(MR), cols.next_multiple_of(MR));
    dst.clear();
    dst.resize(rp * cp, 0.0);
    for (d, s) in dst.chunks_exact_mut(cp).zip(src.chunks_exact(cols)) {
        d[..cols].copy_from_slice(s);
    }
    cp
}

/// `h` (fo × B) = W (fo × fi, row-major) · A + `bias`, with A packed by
/// [`pack_columns`] into `acts` (fi × B); then, where `phi` is given,
/// `out` = φ(H) (fo × B), each row on the thread that made it.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    kernel: Kernel,
    w: &[f32],
    (fo, fi): (usize, usize),
    acts: &[f32],
    batch: usize,
    bias: &[f32],
    h: &mut [f32],
    out: &mut [f32],
    phi: Option<&(impl Fn(f32) -> f32 + Sync)>,
) {
    check(kernel);
    assert_eq!(w.len(), fo * fi, "W is fo × fi");
    assert_eq!(h.len(), fo * batch, "H is fo × B");
    assert_eq!(out.len(), fo * batch, "φ(H) is fo × B");
    assert_eq!(bias.len(), fo, "one bias per row");
    let panels = batch.div_ceil(NR);
    assert_eq!(acts.len(), panels * fi * NR, "A packed by pack_columns");
    if batch == 0 {
        return;
    }
    h.par_chunks_mut(BLOCK_ROWS * batch)
        .zip(out.par_chunks_mut(BLOCK_ROWS * batch))
        .enumerate()
        .for_each(|(blk, (hb, ob))| {
            let o0 = blk * BLOCK_ROWS;
            let rows = hb.len() / batch;
            SCRATCH.with_borrow_mut(|pad| {
                let mut tile = [0f32; MR * NR];
                for k0 in (0..fi.max(1)).step_by(KC) {
                    let len = KC.min(fi - k0);
                    for m in (0..rows).step_by(MR) {
                        let mr = MR.min(rows - m);
                        // Rows of W for this panel: in place, or zero-padded.
                        let (a, a_rs): (&[f32], usize) = if mr == MR {
                            (&w[(o0 + m) * fi + k0..], fi)
                        } else {
                            pad.clear();
                            pad.resize(MR * len.max(1), 0.0);
                            for r in 0..mr {
                                pad[r * len..(r + 1) * len]
                                    .copy_from_slice(&w[(o0 + m + r) * fi + k0..][..len]);
                            }
                            (&pad[..], len)
                        };
                        for p in 0..panels {
                            let nc = NR.min(batch - p * NR);
                            if k0 > 0 {
                                for r in 0..mr {
                                    tile[r * NR..r * NR + nc]
                                        .copy_from_slice(&hb[(m + r) * batch + p * NR..][..nc]);
                                }
                            }
                            let b = &acts[(p * fi + k0) * NR..];
                            micro(kernel, len, a, (a_rs, 1), b, NR, &mut tile, k0 > 0);
                            for r in 0..mr {
                                hb[(m + r) * batch + p * NR..][..nc]
                                    .copy_from_slice(&tile[r * NR..r * NR + nc]);
                            }
                        }
                    }
                }
            });
            for (r, (row, orow)) in hb
                .chunks_exact_mut(batch)
                .zip(ob.chunks_exact_mut(batch))
                .enumerate()
            {
                let b = bias[o0 + r];
                row.iter_mut().for_each(|v| *v += b);
                if let Some(phi) = phi {
                    for (o, &v) in orow.iter_mut().zip(row.iter()) {
                        *o = phi(v);
                    }
                }
            }
        });
}

/// Column strips of W (NR columns each) per task of [`input_grad`]: one
/// k-slice of them is copied row by row (STRIPS·NR contiguous floats of each
/// row of W: whole cache lines, in the order the prefetcher follows) into
/// KC × NR panels that every row panel of G then reads from cache.
const STRIPS: usize = 8;

/// Reduction slice of [`input_grad`]: G's slice (KC_IN × B floats, 16 KiB at
/// B = 32), read by every strip, and one strip's panel of W (8 KiB) stay in
/// a 32 KiB L1 together.
const KC_IN: usize = 128;

/// `out` (fi × B) = (Wᵀ·G) ⊙ mask: W is fo × fi (row-major), G is given
/// padded by [`pad_rows_cols`] (fo × `g_stride`, g_stride ≥ B a multiple of
/// MR), and `mask(i, b)` multiplies element (i, b) (the STE derivative of the
/// layer below). Computed as (Gᵀ·W)ᵀ: W is the micro-kernel's vector operand.
#[allow(clippy::too_many_arguments)]
pub fn input_grad(
    kernel: Kernel,
    w: &[f32],
    (fo, fi): (usize, usize),
    g: &[f32],
    g_stride: usize,
    batch: usize,
    out: &mut [f32],
    mask: &(impl Fn(usize, usize) -> f32 + Sync),
) {
    check(kernel);
    assert_eq!(w.len(), fo * fi, "W is fo × fi");
    assert_eq!(out.len(), fi * batch, "the output is fi × B");
    assert!(g_stride >= batch && g_stride.is_multiple_of(MR) && g.len() >= fo * g_stride);
    if batch == 0 || fi == 0 {
        return;
    }
    let row_panels = g_stride / MR;
    out.par_chunks_mut(STRIPS * NR * batch)
        .enumerate()
        .for_each(|(task, cols)| {
            let i0 = task * STRIPS * NR;
            let ncols = cols.len() / batch;
            let strips = ncols.div_ceil(NR);
            SCRATCH.with_borrow_mut(|scratch| {
                let tiles_len = strips * row_panels * MR * NR;
                let wlen = strips * KC_IN.min(fo.max(1)) * NR;
                scratch.clear();
                scratch.resize(tiles_len + wlen, 0.0);
                let (tiles, wpack) = scratch.split_at_mut(tiles_len);
                for k0 in (0..fo).step_by(KC_IN) {
                    let len = KC_IN.min(fo - k0);
                    // W[k0 + k][i0 + s·NR + c] → wpack[(s·len + k)·NR + c].
                    for k in 0..len {
                        let row = &w[(k0 + k) * fi + i0..][..ncols];
                        let mut runs = row.chunks_exact(NR);
                        for (s, run) in runs.by_ref().enumerate() {
                            let dst: &mut [f32; NR] = (&mut wpack[(s * len + k) * NR..][..NR])
                                .try_into()
                                .expect("one run");
                            *dst = run.try_into().expect("one run");
                        }
                        let rest = runs.remainder();
                        if !rest.is_empty() {
                            let s = ncols / NR;
                            wpack[(s * len + k) * NR..][..rest.len()].copy_from_slice(rest);
                        }
                    }
                    for s in 0..strips {
                        let b = &wpack[s * len * NR..(s + 1) * len * NR];
                        for m in 0..row_panels {
                            let tile: &mut [f32; MR * NR] = (&mut tiles
                                [(s * row_panels + m) * MR * NR..][..MR * NR])
                                .try_into()
                                .expect("one tile");
                            let a = &g[k0 * g_stride + m * MR..];
                            micro(kernel, len, a, (1, g_stride), b, NR, tile, k0 > 0);
                        }
                    }
                }
                for (c, row) in cols.chunks_exact_mut(batch).enumerate() {
                    let (s, cc) = (c / NR, c % NR);
                    for (bi, v) in row.iter_mut().enumerate() {
                        let (m, r) = (bi / MR, bi % MR);
                        *v = tiles[(s * row_panels + m) * MR * NR + r * NR + cc] * mask(i0 + c, bi);
                    }
                }
            });
        });
}

/// The momentum step of W (fo × fi) with its gradient G·Aᵀ made tile by tile
/// and never stored: v ← μv + Σ_b G[o, b]·A[i, b], w ← w − ηv. G is padded
/// by [`pad_rows_cols`] (g_stride columns), A (fi × B) packed by
/// [`pack_transposed`] into `acts_t`.
#[allow(clippy::too_many_arguments)]
pub fn weight_update(
    kernel: Kernel,
    w: &mut [f32],
    v: &mut [f32],
    (fo, fi): (usize, usize),
    g: &[f32],
    g_stride: usize,
    acts_t: &[f32],
    batch: usize,
    (lr, momentum): (f32, f32),
) {
    check(kernel);
    assert!(
        w.len() == fo * fi && v.len() == fo * fi,
        "W and V are fo × fi"
    );
    assert!(g_stride >= batch && g.len() >= fo.next_multiple_of(MR) * g_stride);
    let panels = fi.div_ceil(NR);
    assert_eq!(
        acts_t.len(),
        panels * batch * NR,
        "A packed by pack_transposed"
    );
    if fi == 0 {
        return;
    }
    w.par_chunks_mut(BLOCK_ROWS * fi)
        .zip(v.par_chunks_mut(BLOCK_ROWS * fi))
        .enumerate()
        .for_each(|(blk, (wb, vb))| {
            let o0 = blk * BLOCK_ROWS;
            let rows = wb.len() / fi;
            let mut tile = [0f32; MR * NR];
            for m in (0..rows).step_by(MR) {
                let mr = MR.min(rows - m);
                let a = &g[(o0 + m) * g_stride..];
                for p in 0..panels {
                    let nc = NR.min(fi - p * NR);
                    micro(
                        kernel,
                        batch,
                        a,
                        (g_stride, 1),
                        &acts_t[p * batch * NR..],
                        NR,
                        &mut tile,
                        false,
                    );
                    for r in 0..mr {
                        let at = (m + r) * fi + p * NR;
                        for ((wv, vv), &d) in wb[at..at + nc]
                            .iter_mut()
                            .zip(&mut vb[at..at + nc])
                            .zip(&tile[r * NR..r * NR + nc])
                        {
                            *vv = momentum * *vv + d;
                            *wv -= lr * *vv;
                        }
                    }
                }
            }
        });
}
