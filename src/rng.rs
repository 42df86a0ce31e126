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

/// Four standard normals from four 32-bit words (Box–Muller, f32).
#[inline(always)]
pub fn box_muller(x: [u32; 4]) -> [f32; 4] {
    const SCALE: f32 = 1.0 / 16_777_216.0; // 2⁻²⁴
    const TWO_PI: f32 = std::f32::consts::TAU;
    let u0 = ((x[0] >> 8) + 1) as f32 * SCALE;
    let t0 = (x[1] >> 8) as f32 * SCALE * TWO_PI;
    let u1 = ((x[2] >> 8) + 1) as f32 * SCALE;
    let t1 = (x[3] >> 8) as f32 * SCALE * TWO_PI;
    let r0 = (-2.0 * u0.ln()).sqrt();
    let r1 = (-2.0 * u1.ln()).sqrt();
    [r0 * t0.cos(), r0 * t0.sin(), r1 * t1.cos(), r1 * t1.sin()]
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

    /// Fills `out` (a row of length ≥ 1) with the standard normals of
    /// W[row][0..out.len()] of `layer`.
    pub fn fill_row(&self, layer: u32, row: u32, out: &mut [f32]) {
        let mut chunks = out.chunks_exact_mut(4);
        let mut j = 0u32;
        for c in &mut chunks {
            c.copy_from_slice(&self.normals(layer, row, j));
            j += 1;
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let z = self.normals(layer, row, j);
            rest.copy_from_slice(&z[..rest.len()]);
        }
    }
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
    fn fill_row_handles_widths_not_multiple_of_four() {
        let s = Stream::new(7, 3);
        let mut a = vec![0.0; 10];
        let mut b = vec![0.0; 12];
        s.fill_row(2, 5, &mut a);
        s.fill_row(2, 5, &mut b);
        assert_eq!(a[..], b[..10]);
    }
}
