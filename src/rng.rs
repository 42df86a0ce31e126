//! The counter-based generator behind every weight and bias, bit-identical
//! to `shaders/rng.wgsl`.
//!
//! Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as
//! easy as 1, 2, 3", SC'11), integer arithmetic only, so a WGSL twin can
//! reproduce it bit for bit. A weight is a pure function of
//! (seed, network sample, layer, row, column):
//!
//! * key = the 64-bit seed, as two 32-bit words (lo, hi);
//! * counter = (column / 4, row, layer, sample): one call yields the four
//!   weights W[row][4j..4j+4]. Biases use the reserved row [`BIAS_ROW`].
//!
//! Signs (Rademacher weights, the Hadamard ensemble's diagonals) take one
//! bit each: 32 per word, 128 per call. Sign k of a stream row comes from
//! bit k mod 32 of word (k/32) mod 4 of the call with counter
//! (k/128, row, layer, sample); a set bit is −1. Rademacher weights use
//! row = the weight's row; the Hadamard diagonals D₁, D₂, D₃ use
//! row = round 0, 1, 2 (see [`crate::sim::Weights`]).
//!
//! Normals come from Box–Muller in f32 on 24-bit uniforms (exact in f32):
//! u₁ = (x₀ ≫ 8 + 1)·2⁻²⁴ ∈ (0, 1], θ = 2π·(x₁ ≫ 8)·2⁻²⁴; z₀ = r cos θ,
//! z₁ = r sin θ with r = √(−2 ln u₁), and likewise for (x₂, x₃). The largest
//! |z| is √(2·24·ln 2) ≈ 5.77: the mass beyond it, 8e-9, is below anything a
//! simulation here can resolve.

/// Philox4x32 multipliers and Weyl key increments (Random123).
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The counter row reserved for biases (widths stay below it).
pub const BIAS_ROW: u32 = u32::MAX;

/// Philox4x32 with `R` rounds on counter `ctr` and key `key`.
#[inline(always)]
pub fn philox4x32<const R: usize>(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for r in 0..R {
        if r > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Philox4x32-10, the generator quantdepth uses.
#[inline(always)]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    philox4x32::<10>(ctr, key)
}

/// The key for a 64-bit seed.
#[inline]
pub fn key_for(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// ln x for x = m·2⁻²⁴, m an integer in [1, 2²⁴] (the Box–Muller radius).
///
/// Cephes `logf` (Moshier 1984): x = 2^e·f with f ∈ [√½, √2), then
/// ln(1 + t) = t − t²/2 + t³·P(t) with a degree-8 minimax P; relative error
/// about 1e-7. Branch-free and the same f32 operations, in the same order,
/// as `ln_unit` in `shaders/rng.wgsl`, so both backends agree to rounding.
#[inline(always)]
pub fn ln_unit(m: u32) -> f32 {
    let x = m as f32; // exact: m ≤ 2²⁴
    let bits = x.to_bits();
    let mut e = ((bits >> 23) as i32) - 127 - 24;
    let mut f = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    // Branch-free: halve f and bump e where f > √2.
    let big = (f > std::f32::consts::SQRT_2) as i32;
    f *= 1.0 - 0.5 * big as f32;
    e += big;
    let t = f - 1.0;
    let z = t * t;
    let mut p = 7.037_683_6e-2_f32;
    p = p * t - 1.151_461_1e-1;
    p = p * t + 1.167_699_9e-1;
    p = p * t - 1.242_014_1e-1;
    p = p * t + 1.424_932_3e-1;
    p = p * t - 1.666_805_8e-1;
    p = p * t + 2.000_071_4e-1;
    p = p * t - 2.499_999_4e-1;
    p = p * t + 3.333_333_1e-1;
    let ef = e as f32;
    let mut y = t * z * p;
    y += ef * -2.121_944_4e-4;
    y += -0.5 * z;
    let r = t + y;
    r + ef * 0.693_359_4
}

/// (sin 2πθ, cos 2πθ) for θ = m·2⁻²⁴, m a 24-bit integer.
///
/// The quadrant comes from m's top bits (exact integer reduction); the
/// remainder, in [−π/4, π/4), goes through Cephes' `sinf`/`cosf` minimax
/// polynomials (absolute error about 1e-7). Twin of `sincos_turn` in
/// `shaders/rng.wgsl`.
#[inline(always)]
pub fn sincos_turn(m: u32) -> (f32, f32) {
    let q = ((m + (1 << 21)) >> 22) & 3;
    let r = (m as i32) - (((m + (1 << 21)) >> 22) << 22) as i32;
    let x = r as f32 * (std::f32::consts::TAU / 16_777_216.0);
    let z = x * x;
    let s = ((-1.951_529_6e-4_f32 * z + 8.332_161e-3) * z - 1.666_665_5e-1) * z * x + x;
    let c =
        ((2.443_315_7e-5_f32 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2) * z * z - 0.5 * z + 1.0;
    // Rotate by q quarter turns, branch-free: q odd swaps sin and cos;
    // sin changes sign for q ∈ {2, 3}, cos for q ∈ {1, 2}.
    let swap = (q & 1).wrapping_neg();
    let (sb, cb) = (s.to_bits(), c.to_bits());
    let a = (sb & !swap) | (cb & swap);
    let b = (cb & !swap) | (sb & swap);
    let sin = f32::from_bits(a ^ ((q & 2) << 30));
    let cos = f32::from_bits(b ^ (((q ^ (q >> 1)) & 1) << 31));
    (sin, cos)
}

/// Four standard normals from four 32-bit words (Box–Muller, f32):
/// [r₀ cos θ₀, r₀ sin θ₀, r₁ cos θ₁, r₁ sin θ₁] with rₖ = √(−2 ln u), u from
/// the top 24 bits of x₀ (x₂) plus one, and θ from the top 24 bits of x₁ (x₃).
#[inline(always)]
pub fn box_muller(x: [u32; 4]) -> [f32; 4] {
    let r0 = (-2.0 * ln_unit((x[0] >> 8) + 1)).sqrt();
    let r1 = (-2.0 * ln_unit((x[2] >> 8) + 1)).sqrt();
    let (s0, c0) = sincos_turn(x[1] >> 8);
    let (s1, c1) = sincos_turn(x[3] >> 8);
    [r0 * c0, r0 * s0, r1 * c1, r1 * s1]
}

/// Where a network's random numbers come from: seed and sample index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// The key (from the seed).
    pub key: [u32; 2],
    /// The network sample index.
    pub sample: u32,
}

impl Stream {
    /// The stream of network sample `sample` under `seed`.
    pub fn new(seed: u64, sample: u32) -> Self {
        Stream {
            key: key_for(seed),
            sample,
        }
    }

    /// The raw words for (layer, row, column block j).
    #[inline(always)]
    pub fn words(&self, layer: u32, row: u32, block: u32) -> [u32; 4] {
        philox4x32_10([block, row, layer, self.sample], self.key)
    }

    /// Standard normals z for weights W[row][4j..4j+4] of `layer`.
    #[inline(always)]
    pub fn normals(&self, layer: u32, row: u32, block: u32) -> [f32; 4] {
        box_muller(self.words(layer, row, block))
    }

    /// Fills `out` with the standard normals of W[row][0..out.len()] of
    /// `layer` (bitwise the same as calling [`Stream::normals`] block by block).
    pub fn fill_row(&self, layer: u32, row: u32, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked above).
            unsafe { self.fill_row_avx2(layer, row, out) };
            return;
        }
        self.fill_row_portable(layer, row, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn fill_row_avx2(&self, layer: u32, row: u32, out: &mut [f32]) {
        self.fill_row_portable(layer, row, out);
    }

    /// Lanes of Philox blocks generated together: struct-of-arrays loops
    /// over fixed-size arrays that the compiler turns into SIMD.
    #[inline(always)]
    fn fill_row_portable(&self, layer: u32, row: u32, out: &mut [f32]) {
        const LANES: usize = 16;
        let mut chunks = out.chunks_exact_mut(4 * LANES);
        let mut j0 = 0u32;
        for chunk in &mut chunks {
            let mut w = [[0u32; LANES]; 4];
            for (l, ctr) in w[0].iter_mut().enumerate() {
                *ctr = j0 + l as u32;
            }
            w[1] = [row; LANES];
            w[2] = [layer; LANES];
            w[3] = [self.sample; LANES];
            let z = normals_lanes(w, self.key);
            for l in 0..LANES {
                chunk[4 * l..4 * l + 4].copy_from_slice(&[z[0][l], z[1][l], z[2][l], z[3][l]]);
            }
            j0 += LANES as u32;
        }
        let rest = chunks.into_remainder();
        for (b, c) in rest.chunks_mut(4).enumerate() {
            let z = self.normals(layer, row, j0 + b as u32);
            c.copy_from_slice(&z[..c.len()]);
        }
    }
}

/// ±1.0 for bit `bit` of `word`: +1 when clear, −1 when set (the bit
/// becomes the f32 sign bit, so the value is exact).
#[inline(always)]
pub fn sign_of_bit(word: u32, bit: u32) -> f32 {
    f32::from_bits(0x3F80_0000 | (((word >> bit) & 1) << 31))
}

impl Stream {
    /// The 128 sign bits of counter (block, row, layer): sign k of the row
    /// is bit k mod 32 of word (k/32) mod 4 of block k/128.
    #[inline(always)]
    pub fn sign_bits(&self, layer: u32, row: u32, block: u32) -> [u32; 4] {
        self.words(layer, row, block)
    }

    /// Fills `out` with the ±1 signs 0..out.len() of `row` of `layer`:
    /// Rademacher weights W[row][·] (before the σ_w/√n scale).
    pub fn fill_row_signs(&self, layer: u32, row: u32, out: &mut [f32]) {
        for (blk, chunk) in out.chunks_mut(128).enumerate() {
            let w = self.sign_bits(layer, row, blk as u32);
            for (word, run) in w.iter().zip(chunk.chunks_mut(32)) {
                if run.len() == 32 {
                    // A fixed-length loop the compiler unrolls and vectorizes.
                    let run: &mut [f32; 32] = run.try_into().expect("32 signs");
                    for (bit, o) in run.iter_mut().enumerate() {
                        *o = sign_of_bit(*word, bit as u32);
                    }
                } else {
                    for (bit, o) in run.iter_mut().enumerate() {
                        *o = sign_of_bit(*word, bit as u32);
                    }
                }
            }
        }
    }

    /// The packed sign bits 0..n of `row` of `layer`, one u32 per 32 signs
    /// (word k/32 holds sign k in bit k mod 32; set = −1).
    pub fn sign_words(&self, layer: u32, row: u32, n: usize) -> Vec<u32> {
        let words = n.div_ceil(32);
        let mut out = Vec::with_capacity(words.div_ceil(4) * 4);
        for blk in 0..words.div_ceil(4) {
            out.extend_from_slice(&self.sign_bits(layer, row, blk as u32));
        }
        out.truncate(words);
        out
    }
}

/// Philox lanes generated together by [`Stream::fill_panel`].
const PANEL_LANES: usize = 16;

impl Stream {
    /// The standard normals of rows `row0 .. row0 + rows` of `layer`,
    /// columns `col0 .. col0 + len` (len = `out.len() / MR`, `col0` a
    /// multiple of 4), written k-major into one MR-row panel of a packed
    /// matrix product: `out[k·MR + m]` is the value that [`Stream::fill_row`]
    /// writes at column `col0 + k` of row `row0 + m` (bit for bit), and 0 for
    /// m ≥ `rows` (the padding of a panel at the end of a block).
    ///
    /// Philox lanes run over MR rows × 16/MR column blocks at once, so one
    /// lane's four normals land in four consecutive k, each an MR-wide run
    /// of the panel: the values are written where the product reads them,
    /// with no row-major copy and no second pass. `MR` divides 16.
    pub fn fill_panel<const MR: usize>(
        &self,
        layer: u32,
        row0: u32,
        rows: usize,
        col0: usize,
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked above).
            unsafe { self.fill_panel_avx2::<MR>(layer, row0, rows, col0, out) };
            return;
        }
        self.fill_panel_portable::<MR>(layer, row0, rows, col0, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn fill_panel_avx2<const MR: usize>(
        &self,
        layer: u32,
        row0: u32,
        rows: usize,
        col0: usize,
        out: &mut [f32],
    ) {
        self.fill_panel_portable::<MR>(layer, row0, rows, col0, out);
    }

    #[inline(always)]
    fn fill_panel_portable<const MR: usize>(
        &self,
        layer: u32,
        row0: u32,
        rows: usize,
        col0: usize,
        out: &mut [f32],
    ) {
        const { assert!(MR > 0 && PANEL_LANES.is_multiple_of(MR), "MR divides 16") };
        assert!(
            rows <= MR && out.len().is_multiple_of(MR),
            "{rows} rows in a panel of {MR}"
        );
        assert!(
            col0.is_multiple_of(4),
            "column {col0} does not start a block of 4"
        );
        let len = out.len() / MR;
        let first = (col0 / 4) as u32;
        // Column blocks (of 4) per step.
        let cb = PANEL_LANES / MR;
        let steps = len / (4 * cb);
        for s in 0..steps {
            let j0 = first + (s * cb) as u32;
            let mut w = [[0u32; PANEL_LANES]; 4];
            for l in 0..PANEL_LANES {
                w[0][l] = j0 + (l / MR) as u32;
                w[1][l] = row0.wrapping_add((l % MR) as u32);
            }
            w[2] = [layer; PANEL_LANES];
            w[3] = [self.sample; PANEL_LANES];
            let z = normals_lanes(w, self.key);
            let dst = &mut out[4 * s * cb * MR..4 * (s + 1) * cb * MR];
            for b in 0..cb {
                for q in 0..4 {
                    let k = 4 * b + q;
                    dst[k * MR..(k + 1) * MR].copy_from_slice(&z[q][b * MR..(b + 1) * MR]);
                }
            }
        }
        // The columns after the last full step, block by block.
        let k0 = 4 * steps * cb;
        for m in 0..rows {
            let row = row0.wrapping_add(m as u32);
            for k in (k0..len).step_by(4) {
                let z = self.normals(layer, row, first + (k / 4) as u32);
                for (q, &v) in z.iter().enumerate().take(len - k) {
                    out[(k + q) * MR + m] = v;
                }
            }
        }
        if rows < MR {
            for run in out.chunks_exact_mut(MR) {
                run[rows..].fill(0.0);
            }
        }
    }

    /// The ±1 signs of rows `row0 .. row0 + rows` of `layer` (Rademacher
    /// weights before the σ_w/√n scale), columns `col0 .. col0 + len`
    /// (len = `out.len() / MR`), written k-major into one MR-row panel:
    /// `out[k·MR + m]` is the value [`Stream::fill_row_signs`] writes at
    /// column `col0 + k` of row `row0 + m`, and 0 for m ≥ `rows`.
    pub fn fill_panel_signs<const MR: usize>(
        &self,
        layer: u32,
        row0: u32,
        rows: usize,
        col0: usize,
        out: &mut [f32],
    ) {
        assert!(
            rows <= MR && out.len().is_multiple_of(MR),
            "{rows} rows in a panel of {MR}"
        );
        // All ones for a row of the panel, zero for padding: masks the bits
        // of 1.0 with the sign bit set or clear.
        let valid: [u32; MR] = std::array::from_fn(|m| if m < rows { !0 } else { 0 });
        let len = out.len() / MR;
        let mut k = 0;
        while k < len {
            // Columns col0 + k .. up to the end of their 128-sign call.
            let (c, blk) = (col0 + k, ((col0 + k) / 128) as u32);
            let run = (128 - c % 128).min(len - k);
            let words: [[u32; 4]; MR] = std::array::from_fn(|m| {
                if m < rows {
                    self.sign_bits(layer, row0.wrapping_add(m as u32), blk)
                } else {
                    [0; 4]
                }
            });
            for (i, dst) in out[k * MR..(k + run) * MR].chunks_exact_mut(MR).enumerate() {
                let (word, bit) = (((c + i) / 32) % 4, ((c + i) % 32) as u32);
                for m in 0..MR {
                    let sign = ((words[m][word] >> bit) & 1) << 31;
                    dst[m] = f32::from_bits(valid[m] & (0x3F80_0000 | sign));
                }
            }
            k += run;
        }
    }
}

/// The four standard normals of each of L counters (lane l of `w` holds
/// counter l's four words): ten Philox4x32 rounds on all lanes at once,
/// key schedule as [`philox4x32`], then [`box_muller`] per lane — struct of
/// arrays, so the compiler turns each round into SIMD. Shared by
/// [`Stream::fill_row`] and [`Stream::fill_panel`]; `z[q][l]` is normal q of
/// lane l.
#[inline(always)]
fn normals_lanes<const L: usize>(mut w: [[u32; L]; 4], key: [u32; 2]) -> [[f32; L]; 4] {
    let mut k = key;
    for r in 0..10 {
        if r > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        for l in 0..L {
            let p0 = u64::from(M0) * u64::from(w[0][l]);
            let p1 = u64::from(M1) * u64::from(w[2][l]);
            let n0 = ((p1 >> 32) as u32) ^ w[1][l] ^ k[0];
            let n2 = ((p0 >> 32) as u32) ^ w[3][l] ^ k[1];
            w[0][l] = n0;
            w[1][l] = p1 as u32;
            w[2][l] = n2;
            w[3][l] = p0 as u32;
        }
    }
    let mut z = [[0f32; L]; 4];
    for l in 0..L {
        let v = box_muller([w[0][l], w[1][l], w[2][l], w[3][l]]);
        for q in 0..4 {
            z[q][l] = v[q];
        }
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's kat_vectors for philox4x32 10 (counter, key → output).
    #[test]
    fn philox_matches_random123_known_answers() {
        let cases = [
            (
                [0, 0, 0, 0],
                [0, 0],
                [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
            ),
            (
                [u32::MAX; 4],
                [u32::MAX; 2],
                [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
            ),
            (
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0],
                [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
            ),
        ];
        for (ctr, key, want) in cases {
            assert_eq!(
                philox4x32_10(ctr, key),
                want,
                "ctr {ctr:08x?} key {key:08x?}"
            );
        }
    }

    #[test]
    fn fast_log_and_sincos_are_accurate() {
        let mut worst_ln = 0f64;
        let mut worst_trig = 0f64;
        for m in (1..=1u32 << 24)
            .step_by(997)
            .chain([1, 2, 3, (1 << 24) - 1, 1 << 24])
        {
            let exact = (f64::from(m) / 16_777_216.0).ln();
            let err = (f64::from(ln_unit(m)) - exact).abs() / exact.abs().max(1e-300);
            if m < 1 << 24 {
                worst_ln = worst_ln.max(err);
            } else {
                assert_eq!(ln_unit(m), 0.0);
            }
            let th = 2.0 * std::f64::consts::PI * f64::from(m & 0xFF_FFFF) / 16_777_216.0;
            let (s, c) = sincos_turn(m & 0xFF_FFFF);
            worst_trig = worst_trig
                .max((f64::from(s) - th.sin()).abs())
                .max((f64::from(c) - th.cos()).abs());
        }
        assert!(worst_ln < 3e-7, "ln relative error {worst_ln:e}");
        assert!(worst_trig < 3e-7, "sincos absolute error {worst_trig:e}");
    }

    #[test]
    fn vectorized_rows_equal_blockwise_normals() {
        let s = Stream::new(0xDEAD_BEEF_0123, 9);
        let mut row = vec![0.0; 203];
        s.fill_row(4, 17, &mut row);
        for (j, c) in row.chunks(4).enumerate() {
            let z = s.normals(4, 17, j as u32);
            assert_eq!(c, &z[..c.len()], "block {j}");
        }
    }

    #[test]
    fn fill_row_handles_widths_not_multiple_of_four() {
        let s = Stream::new(7, 3);
        let mut a = vec![0.0; 10];
        let mut b = vec![0.0; 12];
        s.fill_row(2, 5, &mut a);
        s.fill_row(2, 5, &mut b);
        assert_eq!(a[..], b[..10]);
    }

    #[test]
    fn signs_come_from_the_bits_of_one_call_per_128() {
        let s = Stream::new(0x1234_5678_9ABC, 5);
        let mut row = vec![0.0; 300];
        s.fill_row_signs(7, 3, &mut row);
        let words = s.sign_words(7, 3, 300);
        assert_eq!(words.len(), 10);
        for (k, &v) in row.iter().enumerate() {
            let w = s.words(7, 3, (k / 128) as u32)[(k / 32) % 4];
            let want = if (w >> (k % 32)) & 1 == 1 { -1.0 } else { 1.0 };
            assert_eq!(v, want, "sign {k}");
            assert_eq!(
                (words[k / 32] >> (k % 32)) & 1 == 1,
                want < 0.0,
                "packed sign {k}"
            );
        }
        // About half of 300 fair signs are negative (binomial SD ≈ 8.7; 5 SD).
        let neg = row.iter().filter(|v| **v < 0.0).count() as f64;
        assert!(
            (neg - 150.0).abs() < 5.0 * 8.67,
            "{neg} negative signs of 300"
        );
    }
}
