//! The CPU backend's fused training products (src/train/gemm.rs) against
//! plain loops, and the fused step (src/train/fused.rs) against the plain
//! twin `Trainer::step`, with every micro-kernel this CPU runs, at sizes off
//! the register tile (rows not multiples of 4, columns not multiples of 16)
//! and off the reduction slice (k > 256).

use quantdepth::rng::Stream;
use quantdepth::sim::gemm::Kernel;
use quantdepth::train::cpu::Trainer;
use quantdepth::train::gemm::{
    forward, input_grad, pack_columns, pack_transposed, pad_rows_cols, weight_update,
};
use quantdepth::train::model::{ModelSpec, Params, Phi};

fn uniform(seed: u32, len: usize) -> Vec<f32> {
    let mut v = vec![0f32; len];
    Stream::new(77, seed).fill_row(0, 0, &mut v);
    v
}

/// f32 sums of k terms of mixed sign carry ≈ √k·2⁻²⁴ relative error against
/// the f64 sum; 1e-5 of the output's rms is ≥ 10× that for k ≤ 1000.
fn assert_close(got: &[f32], exact: &[f64], what: &str) {
    let rms = (exact.iter().map(|v| v * v).sum::<f64>() / exact.len() as f64).sqrt();
    for (i, (&g, &e)) in got.iter().zip(exact).enumerate() {
        assert!(
            (g as f64 - e).abs() <= 1e-5 * rms,
            "{what}: element {i}: {g} against {e} (rms {rms})"
        );
    }
}

const SHAPES: [(usize, usize, usize); 5] = [
    (10, 37, 5),
    (33, 300, 17),
    (64, 784, 32),
    (7, 513, 1),
    (48, 16, 4),
];

#[test]
fn forward_product_with_bias_and_phi_equals_plain_loops() {
    for kernel in Kernel::available() {
        for (fo, fi, b) in SHAPES {
            let (w, x, bias) = (uniform(1, fo * fi), uniform(2, fi * b), uniform(3, fo));
            let mut pack = Vec::new();
            pack_columns(&x, fi, b, &mut pack);
            let (mut h, mut a) = (vec![f32::NAN; fo * b], vec![f32::NAN; fo * b]);
            let phi = |v: f32| if v > 0.1 { 1.0 } else { -1.0 };
            forward(
                kernel,
                &w,
                (fo, fi),
                &pack,
                b,
                &bias,
                &mut h,
                &mut a,
                Some(&phi),
            );
            let exact: Vec<f64> = (0..fo * b)
                .map(|e| {
                    let (o, j) = (e / b, e % b);
                    bias[o] as f64
                        + (0..fi)
                            .map(|i| w[o * fi + i] as f64 * x[i * b + j] as f64)
                            .sum::<f64>()
                })
                .collect();
            assert_close(&h, &exact, &format!("{kernel:?} H {fo}×{fi}, B = {b}"));
            for (&av, &hv) in a.iter().zip(&h) {
                assert_eq!(av, phi(hv), "φ applied to the stored H");
            }
        }
    }
}

#[test]
fn input_gradient_with_mask_equals_plain_loops() {
    for kernel in Kernel::available() {
        for (fo, fi, b) in SHAPES {
            let (w, g) = (uniform(4, fo * fi), uniform(5, fo * b));
            let mut gpad = Vec::new();
            let stride = pad_rows_cols(&g, fo, b, &mut gpad);
            let mut out = vec![f32::NAN; fi * b];
            // A mask that zeroes about a third of the elements.
            let mask = |i: usize, j: usize| {
                if (i * 7 + j).is_multiple_of(3) {
                    0.0
                } else {
                    1.5
                }
            };
            input_grad(kernel, &w, (fo, fi), &gpad, stride, b, &mut out, &mask);
            let exact: Vec<f64> = (0..fi * b)
                .map(|e| {
                    let (i, j) = (e / b, e % b);
                    mask(i, j) as f64
                        * (0..fo)
                            .map(|o| w[o * fi + i] as f64 * g[o * b + j] as f64)
                            .sum::<f64>()
                })
                .collect();
            assert_close(&out, &exact, &format!("{kernel:?} G_A {fo}×{fi}, B = {b}"));
        }
    }
}

#[test]
fn weight_update_equals_the_momentum_step_of_the_plain_gradient() {
    let (lr, mu) = (0.03f32, 0.5f32);
    for kernel in Kernel::available() {
        for (fo, fi, b) in SHAPES {
            let (w0, v0) = (uniform(6, fo * fi), uniform(7, fo * fi));
            let (g, x) = (uniform(8, fo * b), uniform(9, fi * b));
            let (mut w, mut v) = (w0.clone(), v0.clone());
            let (mut gpad, mut pack) = (Vec::new(), Vec::new());
            let stride = pad_rows_cols(&g, fo, b, &mut gpad);
            pack_transposed(&x, fi, b, &mut pack);
            weight_update(
                kernel,
                &mut w,
                &mut v,
                (fo, fi),
                &gpad,
                stride,
                &pack,
                b,
                (lr, mu),
            );
            let dw: Vec<f64> = (0..fo * fi)
                .map(|e| {
                    let (o, i) = (e / fi, e % fi);
                    (0..b)
                        .map(|j| g[o * b + j] as f64 * x[i * b + j] as f64)
                        .sum::<f64>()
                })
                .collect();
            let v_exact: Vec<f64> = v0
                .iter()
                .zip(&dw)
                .map(|(&v, &d)| mu as f64 * v as f64 + d)
                .collect();
            let w_exact: Vec<f64> = w0
                .iter()
                .zip(&v_exact)
                .map(|(&w, &v)| w as f64 - lr as f64 * v)
                .collect();
            let what = format!("{kernel:?} {fo}×{fi}, B = {b}");
            assert_close(&v, &v_exact, &format!("{what} v"));
            assert_close(&w, &w_exact, &format!("{what} w"));
        }
    }
}

fn spec(quantize_logits: bool) -> ModelSpec {
    ModelSpec {
        input_dim: 50,
        width: 37,
        depth: 4,
        classes: 10,
        phi: Phi::Uniform {
            states: 4,
            spacing: 0.6,
            amplitude: 1.0,
        },
        ste_slope: 1.2,
        ste_threshold: 1.0,
        sigma_w: 1.6,
        sigma_b: 0.1,
        quantize_logits,
    }
}

fn batch(spec: &ModelSpec, step: u32, b: usize) -> (Vec<f32>, Vec<u8>) {
    let x = uniform(100 + step, spec.input_dim * b);
    (
        x,
        (0..b).map(|j| ((j as u32 * 7 + step) % 10) as u8).collect(),
    )
}

/// Three fused steps against three steps of the plain twin from the same
/// start: losses and parameters agree to f32 rounding (the products differ
/// only in summation order: ≈ 1e-7 relative per product; 1e-4 of each
/// layer's rms leaves room for a few steps of compounding, while one wrong
/// product, mask or update would be off by O(1) of the rms).
#[test]
fn fused_step_equals_the_plain_twin() {
    for kernel in Kernel::available() {
        for ql in [false, true] {
            let s = spec(ql);
            let p0 = Params::init(&s, 3);
            let (mut fused, mut plain) = (Trainer::new(&s, p0.clone()), Trainer::new(&s, p0));
            for step in 0..3 {
                let (x, y) = batch(&s, step, 19);
                let lf = fused.step_fused(kernel, &x, &y, 0.05, 0.5);
                let lp = plain.step(&x, &y, 0.05, 0.5);
                assert!(
                    (lf.loss_sum - lp.loss_sum).abs() <= 1e-4 * lp.loss_sum.abs(),
                    "{kernel:?} step {step}: loss {lf:?} vs {lp:?}"
                );
                assert_eq!(lf.correct, lp.correct);
            }
            for (l, (wf, wp)) in fused
                .params
                .weights
                .iter()
                .zip(&plain.params.weights)
                .enumerate()
            {
                let exact: Vec<f64> = wp.iter().map(|&v| v as f64).collect();
                let rms = (exact.iter().map(|v| v * v).sum::<f64>() / exact.len() as f64).sqrt();
                for (&a, &b) in wf.iter().zip(wp) {
                    assert!(
                        (a - b).abs() as f64 <= 1e-4 * rms,
                        "{kernel:?} ql {ql} layer {l}: {a} vs {b}"
                    );
                }
                // The update moved the weights (a test of a no-op would pass too).
                let moved = wf
                    .iter()
                    .zip(&Params::init(&s, 3).weights[l])
                    .filter(|(a, b)| a != b)
                    .count();
                assert!(
                    moved * 2 > wf.len(),
                    "layer {l}: {moved} of {} weights moved",
                    wf.len()
                );
            }
        }
    }
}

/// Each output element is one k-ordered sum whichever thread computes it, so
/// the step's bits do not depend on the thread count.
#[test]
fn fused_step_is_bit_identical_at_one_and_three_threads() {
    let s = ModelSpec {
        width: 130,
        ..spec(false)
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut t = Trainer::new(&s, Params::init(&s, 9));
            for step in 0..3 {
                let (x, y) = batch(&s, step, 32);
                t.step_fused(Kernel::detect(), &x, &y, 0.05, 0.5);
            }
            t.params
        })
    };
    assert_eq!(run(1), run(3));
}
