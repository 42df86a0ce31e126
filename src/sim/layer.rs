//! The layer stage on the CPU: twin of `shaders/layer.wgsl` (GPU driver
//! `src/sim/gpu/layer.rs`), plain loops and a packed product on all cores.
//!
//! Activations are stored feature-major, H[i·B + b] for unit i and input b,
//! so a block of rows of the next layer is one contiguous slice. The
//! activations are packed once per layer into the column panels of
//! [`crate::sim::gemm`]; rows are split across threads, each thread
//! generates its block of rows of W (never more than ~1 MiB at a time)
//! straight into the product's row panels and multiplies them into the
//! batch, each output a fixed-order f32 sum over the input dimension.
//! Statistics are summed per block in f64 and combined in block order, so a
//! seed gives bitwise the same result whatever the thread count. Rademacher
//! weights take the same path with panels of ±1 unpacked from the sign bits
//! (or, for B ≤ 32, sign flips straight from the bits); the Hadamard
//! ensemble is [`crate::sim::hadamard`]. [`LayerWeights::layer_reference`]
//! keeps the earlier product (row-major weight rows through
//! `matrixmultiply::sgemm`) for benchmarks and tests.

use crate::rng::{Stream, BIAS_ROW};
use crate::sim::gemm::{self, Kernel, PackedActs, MR};
use crate::sim::spec::{rows_per_block, Measurements, SimSpec, Weights};
use crate::sim::stats::{block_stats, combine_blocks};
use rayon::prelude::*;

/// Sums of squares per input and dot products per measured pair.
pub type LayerStats = (Vec<f64>, Vec<f64>);

/// The generated weights of one layer of one network: W = scale·Z with Z
/// standardized (Gaussian normals, Rademacher signs, or the Hadamard
/// product's signs) from `stream` and `layer`, and the biases σ_b·ζ.
#[derive(Debug, Clone, Copy)]
pub struct LayerWeights<'a> {
    /// The ensemble.
    pub ensemble: Weights,
    /// The network's random stream.
    pub stream: &'a Stream,
    /// The layer index (RNG counter).
    pub layer: u32,
    /// Width n.
    pub n: usize,
    /// σ_w.
    pub sigma_w: f64,
    /// σ_b.
    pub sigma_b: f64,
}

impl<'a> LayerWeights<'a> {
    /// Layer `layer` of the network of `stream` under `spec`.
    pub fn of(spec: &SimSpec, stream: &'a Stream, layer: u32) -> Self {
        LayerWeights {
            ensemble: spec.weights,
            stream,
            layer,
            n: spec.width,
            sigma_w: spec.sigma_w,
            sigma_b: spec.sigma_b,
        }
    }

    /// The layer: `out[i·B + b] = Σⱼ W_ij·act[j·B + b] + σ_b·ζᵢ`, `act` φ(H)
    /// of the previous layer (n × B), with the statistics of the result
    /// when `meas` is given.
    pub fn layer(
        &self,
        act: &[f32],
        batch: usize,
        out: &mut [f32],
        meas: Option<&Measurements>,
    ) -> Option<LayerStats> {
        match self.ensemble {
            Weights::Gaussian => self.dense(Stream::fill_panel::<MR>, act, batch, out, meas),
            Weights::Rademacher if batch <= 32 => self.signs(act, batch, out, meas),
            Weights::Rademacher => {
                self.dense(Stream::fill_panel_signs::<MR>, act, batch, out, meas)
            }
            Weights::Hadamard => self.hadamard(act, batch, out, meas),
        }
    }

    /// [`LayerWeights::layer`] with the dense product as it was before the
    /// packed one: each block's weight rows generated row-major by
    /// [`Stream::fill_row`] / [`Stream::fill_row_signs`], then
    /// `matrixmultiply::sgemm`, which packs both operands again on every
    /// call. The same layer to f32 rounding (the sums run in another
    /// order); kept so a benchmark can time old and new in one run
    /// (`benches/sim.rs`). The sign path (Rademacher, B ≤ 32) and the
    /// Hadamard layer are [`LayerWeights::layer`]'s.
    #[doc(hidden)]
    pub fn layer_reference(
        &self,
        act: &[f32],
        batch: usize,
        out: &mut [f32],
        meas: Option<&Measurements>,
    ) -> Option<LayerStats> {
        match self.ensemble {
            Weights::Gaussian => self.dense_sgemm(Stream::fill_row, act, batch, out, meas),
            Weights::Rademacher if batch > 32 => {
                self.dense_sgemm(Stream::fill_row_signs, act, batch, out, meas)
            }
            _ => self.layer(act, batch, out, meas),
        }
    }

    /// The Hadamard-ensemble layer, with [`crate::sim::hadamard`] the CPU
    /// twin of `shaders/hadamard.wgsl`: `out = σ_w·S·act + σ_b ζ`, ζ the
    /// layer's bias normals (as the Gaussian layer draws them), statistics
    /// summed per block of 256 rows and combined in block order.
    pub fn hadamard(
        &self,
        act: &[f32],
        batch: usize,
        out: &mut [f32],
        meas: Option<&Measurements>,
    ) -> Option<LayerStats> {
        let n = self.n;
        out.copy_from_slice(act);
        crate::sim::hadamard::apply_unscaled(out, n, batch, self.stream, self.layer);
        let bs = self.sigma_b as f32;
        let biases: Vec<f32> = if bs != 0.0 {
            let mut z = vec![0f32; n];
            self.stream.fill_row(self.layer, BIAS_ROW, &mut z);
            z
        } else {
            Vec::new()
        };
        let bias = |row: usize| if bs != 0.0 { bs * biases[row] } else { 0.0 };
        // The transform is done; the blocks only scale, bias and measure.
        self.finish_blocks(|_, _, _| {}, 256, batch, out, meas, &bias)
    }

    /// The dense layer whose standardized rows `row0 .. row0 + rows` (at
    /// most [`MR`]), columns `col0 ..`, are written as one row panel of the
    /// packed product by `fill(stream, layer, row0, rows, col0, panel)`.
    fn dense(
        &self,
        fill: impl Fn(&Stream, u32, u32, usize, usize, &mut [f32]) + Sync,
        act: &[f32],
        batch: usize,
        out: &mut [f32],
        meas: Option<&Measurements>,
    ) -> Option<LayerStats> {
        let (n, stream, layer) = (self.n, self.stream, self.layer);
        let acts = PackedActs::pack(act, n, batch);
        let kernel = Kernel::detect();
        let product = |scratch: &mut Vec<f32>, r0: usize, out_blk: &mut [f32]| {
            let fill_panel = |i: usize, rows: usize, col0: usize, panel: &mut [f32]| {
                fill(stream, layer, (r0 + i) as u32, rows, col0, panel)
            };
            // out_blk (r × B) = W_blk (r × n) · act (n × B)
            gemm::product(kernel, &acts, fill_panel, scratch, out_blk);
        };
        let bias = self.bias_of_row();
        self.finish_blocks(product, gemm::block_rows(n), batch, out, meas, &bias)
    }

    /// The dense layer of [`LayerWeights::layer_reference`], whose
    /// standardized row `row` is written by `fill(stream, layer, row, out)`.
    fn dense_sgemm(
        &self,
        fill: impl Fn(&Stream, u32, u32, &mut [f32]) + Sync,
        act: &[f32],
        batch: usize,
        out: &mut [f32],
        meas: Option<&Measurements>,
    ) -> Option<LayerStats> {
        let n = self.n;
        let rows = rows_per_block(n, batch);
        let product = |w: &mut Vec<f32>, r0: usize, out_blk: &mut [f32]| {
            let r = out_blk.len() / batch;
            w.resize(rows * n, 0.0);
            self.fill_rows(&fill, r0, r, w);
            // out_blk (r × B) = W_blk (r × n) · act (n × B)
            sgemm(r, n, batch, w, (n, 1), act, (batch, 1), 0.0, out_blk);
        };
        let bias = self.bias_of_row();
        self.finish_blocks(product, rows, batch, out, meas, &bias)
    }

    /// The Rademacher layer for small batches (B ≤ 32), straight from the
    /// sign bits: out_i = (σ_w/√n)·Σⱼ ±act_j, the sign applied by flipping
    /// the f32 sign bit (exact), accumulated over j in order for 4 rows at a
    /// time in registers. No weight row is materialized and nothing is
    /// packed; the batch is padded with zeros to 8, 16 or 32 columns.
    fn signs(
        &self,
        act: &[f32],
        batch: usize,
        out: &mut [f32],
        meas: Option<&Measurements>,
    ) -> Option<LayerStats> {
        let n = self.n;
        let pad = match batch {
            0..=8 => 8,
            9..=16 => 16,
            _ => 32,
        };
        let mut padded = vec![0f32; n * pad];
        for (dst, src) in padded.chunks_exact_mut(pad).zip(act.chunks_exact(batch)) {
            dst[..batch].copy_from_slice(src);
        }
        let (s, l) = (self.stream, self.layer);
        let product = |_: &mut Vec<f32>, r0: usize, out_blk: &mut [f32]| match pad {
            8 => sign_rows::<8>(s, l, r0, n, batch, &padded, out_blk),
            16 => sign_rows::<16>(s, l, r0, n, batch, &padded, out_blk),
            _ => sign_rows::<32>(s, l, r0, n, batch, &padded, out_blk),
        };
        let bias = self.bias_of_row();
        self.finish_blocks(product, 64, batch, out, meas, &bias)
    }

    /// Rows r0..r0 + r of the standardized weights, written by `fill`, into
    /// the first r·n entries of `w`.
    pub(crate) fn fill_rows(
        &self,
        fill: &(impl Fn(&Stream, u32, u32, &mut [f32]) + Sync),
        r0: usize,
        r: usize,
        w: &mut [f32],
    ) {
        for (i, row) in w[..r * self.n].chunks_exact_mut(self.n).enumerate() {
            fill(self.stream, self.layer, (r0 + i) as u32, row);
        }
    }

    /// σ_b·ζ_row with ζ the layer's bias normals (lane row mod 4 of Philox
    /// block (row/4, BIAS_ROW, layer)), or 0 when σ_b = 0.
    fn bias_of_row(&self) -> impl Fn(usize) -> f32 + Sync + '_ {
        let bs = self.sigma_b as f32;
        move |row| {
            if bs != 0.0 {
                let row = row as u32;
                bs * self.stream.normals(self.layer, BIAS_ROW, row / 4)[(row % 4) as usize]
            } else {
                0.0
            }
        }
    }

    /// Blocks of `rows` rows of `out`, each filled by `product(scratch,
    /// first row, block)` with the unscaled product (`scratch` a per-thread
    /// buffer), then scaled by the ensemble's scale, biased by `bias(row)`,
    /// and reduced to statistics per block (combined in block order).
    fn finish_blocks(
        &self,
        product: impl Fn(&mut Vec<f32>, usize, &mut [f32]) + Sync,
        rows: usize,
        batch: usize,
        out: &mut [f32],
        meas: Option<&Measurements>,
        bias: &(dyn Fn(usize) -> f32 + Sync),
    ) -> Option<LayerStats> {
        let ws = self.ensemble.scale(self.sigma_w, self.n);
        let partials: Vec<Option<LayerStats>> = out
            .par_chunks_mut(rows * batch)
            .enumerate()
            .map_init(Vec::new, |scratch, (blk, out_blk)| {
                let r0 = blk * rows;
                product(scratch, r0, out_blk);
                for (i, row) in out_blk.chunks_exact_mut(batch).enumerate() {
                    let b = bias(r0 + i);
                    for v in row {
                        *v = ws * *v + b;
                    }
                }
                meas.map(|m| block_stats(out_blk, batch, m))
            })
            .collect();
        meas.map(|m| combine_blocks(partials.into_iter().flatten(), batch, m))
    }
}

/// One Gaussian layer: `out[i·B + b] = (σ_w/√n)·Σⱼ z_ij·act[j·B + b] +
/// σ_b·ζᵢ`, with z and ζ the generated standard normals of `layer` in
/// `stream`. `act` is φ(H) of the previous layer, feature-major, n × B.
pub fn layer(
    act: &[f32],
    n: usize,
    batch: usize,
    stream: &Stream,
    layer: u32,
    sigma_w: f64,
    sigma_b: f64,
    out: &mut [f32],
) {
    ensemble_layer_with_stats(
        Weights::Gaussian,
        act,
        n,
        batch,
        stream,
        layer,
        sigma_w,
        sigma_b,
        out,
        None,
    );
}

/// One layer of the weight ensemble `weights` ([`LayerWeights::layer`]),
/// with the statistics of the result when `meas` is given.
pub fn ensemble_layer_with_stats(
    weights: Weights,
    act: &[f32],
    n: usize,
    batch: usize,
    stream: &Stream,
    layer: u32,
    sigma_w: f64,
    sigma_b: f64,
    out: &mut [f32],
    meas: Option<&Measurements>,
) -> Option<LayerStats> {
    let w = LayerWeights {
        ensemble: weights,
        stream,
        layer,
        n,
        sigma_w,
        sigma_b,
    };
    w.layer(act, batch, out, meas)
}

/// C (m × n, row stride `ldc` = n) = A (m × k, strides `sa`) · B (k × n,
/// strides `sb`) + beta·C in f32, by `matrixmultiply::sgemm`.
pub(crate) fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: (usize, usize),
    b: &[f32],
    sb: (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k == 0 || (m - 1) * sa.0 + (k - 1) * sa.1 < a.len());
    assert!(k == 0 || (k - 1) * sb.0 + (n - 1) * sb.1 < b.len());
    assert!(m * n <= c.len());
    // SAFETY: every element of A, B and C the product reads or writes lies
    // inside its slice (asserted above).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            sa.0 as isize,
            sa.1 as isize,
            b.as_ptr(),
            sb.0 as isize,
            sb.1 as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// out_blk (rows r0.. × B) = S_blk · act for the sign matrix S of `layer`;
/// `act` is n × P (zero-padded).
fn sign_rows<const P: usize>(
    stream: &Stream,
    layer: u32,
    r0: usize,
    n: usize,
    batch: usize,
    act: &[f32],
    out_blk: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        unsafe { sign_rows_avx2::<P>(stream, layer, r0, n, batch, act, out_blk) };
        return;
    }
    sign_rows_body::<P>(stream, layer, r0, n, batch, act, out_blk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sign_rows_avx2<const P: usize>(
    stream: &Stream,
    layer: u32,
    r0: usize,
    n: usize,
    batch: usize,
    act: &[f32],
    out_blk: &mut [f32],
) {
    sign_rows_body::<P>(stream, layer, r0, n, batch, act, out_blk)
}

#[inline(always)]
fn sign_rows_body<const P: usize>(
    stream: &Stream,
    layer: u32,
    r0: usize,
    n: usize,
    batch: usize,
    act: &[f32],
    out_blk: &mut [f32],
) {
    const R: usize = 4;
    let rows = out_blk.len() / batch;
    let mut i0 = 0;
    while i0 < rows {
        let r = R.min(rows - i0);
        let bits: Vec<Vec<u32>> = (0..R)
            .map(|k| {
                if k < r {
                    stream.sign_words(layer, (r0 + i0 + k) as u32, n)
                } else {
                    vec![0; n.div_ceil(32)]
                }
            })
            .collect();
        let mut acc = [[0f32; P]; R];
        for (j, a) in act.chunks_exact(P).enumerate() {
            let a: &[f32; P] = a.try_into().expect("P columns");
            for k in 0..R {
                let m = ((bits[k][j / 32] >> (j % 32)) & 1) << 31;
                for b in 0..P {
                    acc[k][b] += f32::from_bits(a[b].to_bits() ^ m);
                }
            }
        }
        for k in 0..r {
            out_blk[(i0 + k) * batch..(i0 + k + 1) * batch].copy_from_slice(&acc[k][..batch]);
        }
        i0 += R;
    }
}
