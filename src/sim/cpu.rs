//! The CPU reference backend: plain loops and a blocked SGEMM, all cores.
//!
//! The CPU twin of `shaders/layer.wgsl` (one layer) and `shaders/stats.wgsl`
//! (sums of squares and dot products). Activations are stored feature-major,
//! H[i·B + b] for unit i and input b, so a block of rows of the next layer
//! is one contiguous slice: rows are split across threads, each thread
//! generates its rows of W (never more than ~256 KiB at a time) and
//! multiplies them into the batch with `matrixmultiply::sgemm`.
//! Statistics are summed per block in f64 and combined in block order, so a
//! seed gives bitwise the same result whatever the thread count.
//! Rademacher weights take the same path with rows of ±1 unpacked from the
//! sign bits; the Hadamard ensemble is [`crate::sim::hadamard`].

use crate::error::Result;
use crate::rng::{Stream, BIAS_ROW};
use crate::sim::spec::{Measurements, SimActivation, SimSpec, Weights};
use crate::sim::{Backend, BackendInfo, LayerSink};
use rayon::prelude::*;

/// Bytes of weights generated per block of rows: small batches are bound by
/// weight generation (keep the block in L2); large ones by the product,
/// where taller blocks amortize SGEMM's packing of the activations.
fn weight_block_bytes(batch: usize) -> usize {
    if batch >= 64 {
        1 << 20
    } else {
        256 << 10
    }
}

/// The CPU backend.
#[derive(Debug, Default, Clone)]
pub struct CpuBackend;

/// Rows of W per block for width n and batch B: a multiple of 8 (the SGEMM
/// kernel's row tile) between 8 and 128.
pub fn rows_per_block(n: usize, batch: usize) -> usize {
    ((weight_block_bytes(batch) / 4 / n.max(1)) / 8 * 8).clamp(8, 128)
}

/// The weight scale σ_w/√n in f32, as both backends use it.
pub fn weight_scale(sigma_w: f64, n: usize) -> f32 {
    (sigma_w / (n as f64).sqrt()) as f32
}

/// One layer: `out[i·B + b] = (σ_w/√n)·Σⱼ z_ij·act[j·B + b] + σ_b·ζᵢ`, with
/// z and ζ the generated standard normals of `layer` in `stream`.
/// `act` is φ(H) of the previous layer, feature-major, n × B.
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
    layer_with_stats(act, n, batch, stream, layer, sigma_w, sigma_b, out, None);
}

/// [`layer`], also returning the sums of squares per input and the dot
/// products of the measured pairs of the new layer (when `meas` is given).
pub fn layer_with_stats(
    act: &[f32],
    n: usize,
    batch: usize,
    stream: &Stream,
    layer: u32,
    sigma_w: f64,
    sigma_b: f64,
    out: &mut [f32],
    meas: Option<&Measurements>,
) -> Option<(Vec<f64>, Vec<f64>)> {
    dense_layer_with_stats(
        Stream::fill_row,
        act,
        n,
        batch,
        stream,
        layer,
        sigma_w,
        sigma_b,
        out,
        meas,
    )
}

/// One layer of the weight ensemble `weights` (see [`Weights`]), with the
/// statistics of the result when `meas` is given: the Gaussian layer
/// ([`layer_with_stats`]), the Rademacher layer (signs unpacked per block
/// of rows into the same blocked product), or the Hadamard layer
/// ([`crate::sim::hadamard::layer_with_stats`]).
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
) -> Option<(Vec<f64>, Vec<f64>)> {
    match weights {
        Weights::Gaussian => {
            layer_with_stats(act, n, batch, stream, layer, sigma_w, sigma_b, out, meas)
        }
        Weights::Rademacher if batch <= 32 => {
            sign_layer_with_stats(act, n, batch, stream, layer, sigma_w, sigma_b, out, meas)
        }
        Weights::Rademacher => dense_layer_with_stats(
            Stream::fill_row_signs,
            act,
            n,
            batch,
            stream,
            layer,
            sigma_w,
            sigma_b,
            out,
            meas,
        ),
        Weights::Hadamard => crate::sim::hadamard::layer_with_stats(
            act, n, batch, stream, layer, sigma_w, sigma_b, out, meas,
        ),
    }
}

/// The Rademacher layer for small batches (B ≤ 32), straight from the sign
/// bits: out_i = (σ_w/√n)·Σⱼ ±act_j, the sign applied by flipping the f32
/// sign bit (exact), accumulated over j in order for 4 rows at a time in
/// registers. No weight row is materialized and nothing is packed; the
/// batch is padded with zeros to 8, 16 or 32 columns.
fn sign_layer_with_stats(
    act: &[f32],
    n: usize,
    batch: usize,
    stream: &Stream,
    layer: u32,
    sigma_w: f64,
    sigma_b: f64,
    out: &mut [f32],
    meas: Option<&Measurements>,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let pad = match batch {
        0..=8 => 8,
        9..=16 => 16,
        _ => 32,
    };
    let mut padded = vec![0f32; n * pad];
    for (dst, src) in padded.chunks_exact_mut(pad).zip(act.chunks_exact(batch)) {
        dst[..batch].copy_from_slice(src);
    }
    let product = |_: &mut Vec<f32>, r0: usize, out_blk: &mut [f32]| match pad {
        8 => sign_rows::<8>(stream, layer, r0, n, batch, &padded, out_blk),
        16 => sign_rows::<16>(stream, layer, r0, n, batch, &padded, out_blk),
        _ => sign_rows::<32>(stream, layer, r0, n, batch, &padded, out_blk),
    };
    layer_from_product(
        product, 64, n, batch, stream, layer, sigma_w, sigma_b, out, meas,
    )
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

/// A dense layer whose standardized weights row `row` of `layer` are
/// written by `fill(stream, layer, row, out)`.
fn dense_layer_with_stats(
    fill: impl Fn(&Stream, u32, u32, &mut [f32]) + Sync,
    act: &[f32],
    n: usize,
    batch: usize,
    stream: &Stream,
    layer: u32,
    sigma_w: f64,
    sigma_b: f64,
    out: &mut [f32],
    meas: Option<&Measurements>,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let rows = rows_per_block(n, batch);
    let product = |w: &mut Vec<f32>, r0: usize, out_blk: &mut [f32]| {
        let r = out_blk.len() / batch;
        w.resize(rows * n, 0.0);
        for i in 0..r {
            fill(stream, layer, (r0 + i) as u32, &mut w[i * n..(i + 1) * n]);
        }
        // out_blk (r × B) = W_blk (r × n) · act (n × B)
        unsafe {
            matrixmultiply::sgemm(
                r,
                n,
                batch,
                1.0,
                w.as_ptr(),
                n as isize,
                1,
                act.as_ptr(),
                batch as isize,
                1,
                0.0,
                out_blk.as_mut_ptr(),
                batch as isize,
                1,
            );
        }
    };
    layer_from_product(
        product, rows, n, batch, stream, layer, sigma_w, sigma_b, out, meas,
    )
}

/// Blocks of `rows` rows of `out`, each filled by `product(scratch, first
/// row, block)` with the unscaled product (`scratch` a per-thread buffer), then scaled by σ_w/√n, biased, and
/// reduced to statistics per block (combined in block order).
fn layer_from_product(
    product: impl Fn(&mut Vec<f32>, usize, &mut [f32]) + Sync,
    rows: usize,
    n: usize,
    batch: usize,
    stream: &Stream,
    layer: u32,
    sigma_w: f64,
    sigma_b: f64,
    out: &mut [f32],
    meas: Option<&Measurements>,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let ws = weight_scale(sigma_w, n);
    let bs = sigma_b as f32;
    let partials: Vec<Option<(Vec<f64>, Vec<f64>)>> = out
        .par_chunks_mut(rows * batch)
        .enumerate()
        .map_init(Vec::new, |scratch, (blk, out_blk)| {
            let r0 = blk * rows;
            let r = out_blk.len() / batch;
            product(scratch, r0, out_blk);
            for i in 0..r {
                let row = (r0 + i) as u32;
                let bias = if bs != 0.0 {
                    bs * stream.normals(layer, BIAS_ROW, row / 4)[(row % 4) as usize]
                } else {
                    0.0
                };
                for v in &mut out_blk[i * batch..(i + 1) * batch] {
                    *v = ws * *v + bias;
                }
            }
            meas.map(|m| block_stats(out_blk, batch, m))
        })
        .collect();
    meas.map(|m| {
        let mut sumsq = vec![0.0; batch];
        let mut dots = vec![0.0; m.pairs.len()];
        for (s, d) in partials.into_iter().flatten() {
            sumsq.iter_mut().zip(s).for_each(|(a, b)| *a += b);
            dots.iter_mut().zip(d).for_each(|(a, b)| *a += b);
        }
        (sumsq, dots)
    })
}

/// Sums of squares per input and dot products per measured pair over a
/// block of rows (feature-major), accumulated in f64.
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

/// The inputs as a feature-major f32 matrix (n × B).
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

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "cpu".into(),
            adapter: format!("{} threads", rayon::current_num_threads()),
            kernel: None,
        }
    }

    fn run_sample(
        &mut self,
        spec: &SimSpec,
        inputs: &[Vec<f64>],
        sample: u32,
        sink: &mut LayerSink<'_>,
    ) -> Result<()> {
        let n = spec.width;
        let meas = spec.measurements();
        let batch = meas.batch;
        let act_fn = SimActivation::from_activation(&spec.activation);
        let stream = Stream::new(spec.seed, sample);
        let mut h = feature_major(inputs, n);
        let (s0, d0) = block_stats(&h, batch, &meas);
        sink(0, &s0, &d0)?;
        let mut a = vec![0f32; n * batch];
        for l in 1..=spec.depth {
            a.par_chunks_mut(4096)
                .zip(h.par_chunks(4096))
                .for_each(|(a, h)| act_fn.apply(h, a));
            let (s, d) = ensemble_layer_with_stats(
                spec.weights,
                &a,
                n,
                batch,
                &stream,
                l as u32,
                spec.sigma_w,
                spec.sigma_b,
                &mut h,
                Some(&meas),
            )
            .expect("statistics requested");
            sink(l, &s, &d)?;
        }
        Ok(())
    }
}
