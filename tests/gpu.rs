//! The WGSL kernels against their CPU twins, on whatever adapter wgpu finds
//! (lavapipe in CI). Without an adapter these tests skip with a message,
//! unless QUANTDEPTH_REQUIRE_GPU=1 (set by .ci/run), where they fail.

use quantdepth::rng::{philox4x32_10, Stream};
use quantdepth::setup::NetworkChoice;
use quantdepth::sim::cpu::{self, CpuBackend};
use quantdepth::sim::gpu::{shaders, AdapterPolicy, GpuBackend, GpuContext};
use quantdepth::sim::{Inputs, SimActivation, SimOutcome, SimSpec};
use std::sync::atomic::AtomicBool;

mod common;

fn backend() -> Option<GpuBackend> {
    let b = common::or_skip(GpuBackend::new(AdapterPolicy::PreferHardware), "GPU test")?;
    eprintln!("GPU tests on {}", b.context().describe());
    Some(b)
}

fn uniform_spec(
    n_states: usize,
    sigma_b: f64,
    width: usize,
    depth: usize,
    samples: usize,
    c0: Vec<f64>,
    pairs: usize,
) -> (SimSpec, quantdepth::setup::ResolvedNetwork) {
    let mut ch = NetworkChoice::uniform(n_states);
    ch.sigma_b = Some(sigma_b);
    let r = ch.resolve().unwrap();
    let spec = SimSpec::of_network(&r, width, depth, samples, 11, Inputs::Pairs { c0, pairs });
    (spec, r)
}

#[test]
fn every_wgsl_file_validates_with_naga() {
    let modules = [
        ("rng.wgsl", shaders::RNG.to_string()),
        ("params.wgsl", shaders::PARAMS.to_string()),
        ("layer.wgsl (TB=16)", shaders::layer(16)),
        ("layer.wgsl (TB=32)", shaders::layer(32)),
        ("layer.wgsl (TB=64)", shaders::layer(64)),
        ("stats.wgsl", shaders::stats()),
        ("rng_check.wgsl", shaders::rng_check()),
        ("backward.wgsl (TB=16)", shaders::backward(16)),
        ("backward.wgsl (TB=32)", shaders::backward(32)),
        ("backward.wgsl (TB=64)", shaders::backward(64)),
    ];
    for (name, src) in modules {
        common::validate(name, &src);
    }
}

/// 2^20 Philox outputs (2^18 counters × 4 words) equal src/rng.rs bit for
/// bit; the Box–Muller normals agree to f32 rounding of the same
/// polynomial evaluations (FMA contraction may move the last bits).
#[test]
fn rng_check_gpu_equals_cpu() {
    let Some(b) = backend() else { return };
    let ctx: &GpuContext = b.context();
    let count: u32 = 1 << 18;
    let (key, row, layer, sample) = ([0x1234_5678u32, 0x9abc_def0u32], 77u32, 5u32, 3u32);
    let (w, z) = common::rng_check(
        ctx,
        "rng_check",
        shaders::rng_check(),
        key,
        (row, layer, sample),
        count,
    );
    let stream = Stream { key, sample };
    let mut worst = 0f32;
    for i in 0..count as usize {
        let want = philox4x32_10([i as u32, row, layer, sample], key);
        assert_eq!(&w[4 * i..4 * i + 4], &want, "counter {i}");
        let zc = stream.normals(layer, row, i as u32);
        for k in 0..4 {
            worst = worst.max((z[4 * i + k] - zc[k]).abs() / (1.0 + zc[k].abs()));
        }
    }
    assert!(worst < 4e-6, "normals differ by up to {worst:e} (relative)");
}

/// One layer: every pre-activation equals the CPU's to f32 rounding of a
/// differently ordered sum: |Δ| ≤ 1e-5·‖row contribution‖ (the root-mean-
/// square output), for widths and batches off the 64 × TB × 32 tiles.
#[test]
fn layer_gpu_equals_cpu() {
    let Some(b) = backend() else { return };
    for (width, pairs, states) in [(64, 3, 4), (100, 8, 2), (257, 13, 16), (1030, 40, 5)] {
        let (spec, _) = uniform_spec(states, 0.2, width, 1, 1, vec![0.4, -0.3], pairs);
        let inputs = spec.input_vectors(0);
        let gpu = b.propagate(&spec, &inputs, 0).unwrap();
        let batch = inputs.len();
        let act = SimActivation::from_activation(&spec.activation);
        let a: Vec<f32> = cpu::feature_major(&inputs, width)
            .iter()
            .map(|&x| act.eval(x))
            .collect();
        let mut out = vec![0f32; width * batch];
        cpu::layer(
            &a,
            width,
            batch,
            &Stream::new(spec.seed, 0),
            1,
            spec.sigma_w,
            spec.sigma_b,
            &mut out,
        );
        common::assert_within_rounding(&format!("width {width}, batch {batch}"), &gpu, &out);
    }
}

/// Multi-layer statistics: GPU vs CPU within 5 combined SE, and GPU vs the
/// theory within 5 SE plus a 4/n allowance for the O(1/n) bias.
#[test]
fn multilayer_statistics_agree_with_cpu_and_theory() {
    let Some(mut b) = backend() else { return };
    for (states, sigma_b) in [(4, 0.0), (16, 0.1)] {
        let width = 384;
        let c0 = vec![0.3, 0.9];
        let (spec, r) = uniform_spec(states, sigma_b, width, 20, 24, c0.clone(), 2);
        let g = common::run(&mut b, &spec);
        let c = common::run(&mut CpuBackend, &spec);
        for ((pg, pc), &c0v) in g.stats.pairs.iter().zip(&c.stats.pairs).zip(&c0) {
            let theory = r.network.depth_curve(r.q0, r.q0, c0v, 20).unwrap();
            for ((eg, ec), t) in pg.layers.iter().zip(&pc.layers).zip(&theory).skip(1) {
                common::assert_layer_within_5se(&format!("N={states}"), eg, ec);
                let allowance = 4.0 / width as f64;
                assert!(
                    (eg.c.mean - t.c).abs() <= 5.0 * eg.c.se.unwrap() + allowance,
                    "N={states} layer {}: ĉ {} vs theory {}",
                    eg.layer,
                    eg.c.mean,
                    t.c
                );
                assert!(
                    (eg.q.mean - t.q_a).abs() <= 5.0 * eg.q.se.unwrap() + allowance,
                    "N={states} layer {}: q̂ {} vs theory {}",
                    eg.layer,
                    eg.q.mean,
                    t.q_a
                );
            }
        }
    }
}

#[test]
fn same_seed_gives_identical_bits_and_split_batches_change_nothing() {
    let Some(mut b) = backend() else { return };
    let (spec, _) = uniform_spec(8, 0.05, 200, 6, 2, vec![0.2, 0.7, 0.95], 3);
    let bits = |o: &SimOutcome| -> Vec<u64> {
        o.stats
            .pairs
            .iter()
            .flat_map(|p| {
                p.layers
                    .iter()
                    .flat_map(|l| [l.q.mean.to_bits(), l.c.mean.to_bits()])
            })
            .collect()
    };
    let first = bits(&common::run(&mut b, &spec));
    assert_eq!(
        first,
        bits(&common::run(&mut b, &spec)),
        "same seed, same adapter: same bits"
    );
    // 18 inputs in passes of at most 4: each column is computed alone, so the
    // split run must give the same bits.
    b.set_batch_limit(Some(4));
    assert_eq!(
        first,
        bits(&common::run(&mut b, &spec)),
        "splitting the batch changed the result"
    );
    b.set_batch_limit(None);
}

#[test]
fn circle_statistics_run_on_gpu() {
    let Some(mut b) = backend() else { return };
    let (mut spec, _) = uniform_spec(16, 0.0, 128, 3, 2, vec![0.0], 1);
    spec.inputs = Inputs::Circle { points: 12 };
    let g = common::run(&mut b, &spec);
    let c = common::run(&mut CpuBackend, &spec);
    let (gc, cc) = (g.stats.circle.unwrap(), c.stats.circle.unwrap());
    // Layer 1 is one layer from identical inputs: covariances agree to f32 rounding.
    for (x, y) in gc.layers[1].cov.iter().zip(&cc.layers[1].cov) {
        assert!((x.mean - y.mean).abs() < 1e-4, "{} vs {}", x.mean, y.mean);
    }
}

/// The STE backward pass on the GPU (shaders/backward.wgsl) against the CPU:
/// per-layer gradient-norm ratios, gradient correlations and the empirical
/// NTK within 5 combined SE, at a width off the 64-unit tiles.
#[test]
fn backward_statistics_agree_with_cpu() {
    use quantdepth::sim::backward::simulate_backward;
    use quantdepth::theory::backward::{unit_slope, Ste};
    let Some(b) = backend() else { return };
    let (spec, r) = uniform_spec(4, 0.1, 300, 5, 8, vec![0.5, 0.9], 3);
    let ste = Ste::new(1.05 * unit_slope(&r.network, r.q_star, 1.0).unwrap(), 1.0).unwrap();
    let cancel = AtomicBool::new(false);
    let g = simulate_backward(&spec, &ste, &cancel, Some(&b)).unwrap();
    let c = simulate_backward(&spec, &ste, &cancel, None).unwrap();
    common::assert_backward_within_5se("backward", &g, &c, spec.depth);
}

/// stats.wgsl against its CPU twin `block_stats` on one random matrix of
/// 5000 rows (two row groups of 4096) and 12 inputs in 6 pairs. The GPU sums
/// in f32 (16 terms per thread, then an 8-level tree: about 24 roundings of
/// 6e-8), the CPU in f64, so each sum of squares agrees to 1e-5 relative
/// and each dot product to 1e-5·√(|a|²·|b|²) (the sum of its terms' sizes
/// is at most that); a wrong row, column or pair would be off by O(1).
#[test]
fn stats_gpu_equals_cpu() {
    let Some(b) = backend() else { return };
    let width = 5000;
    let (spec, _) = uniform_spec(4, 0.0, width, 1, 1, vec![0.4, -0.3, 0.9], 2);
    let meas = spec.measurements();
    let batch = meas.batch;
    let mut h = vec![0f32; width * batch];
    Stream::new(7, 1).fill_row(3, 0, &mut h);
    let (gs, gd) = b.stats(&spec, &h, &meas).unwrap();
    let (cs, cd) = quantdepth::sim::stats::block_stats(&h, batch, &meas);
    assert_eq!((gs.len(), gd.len()), (batch, meas.pairs.len()));
    for (k, (g, c)) in gs.iter().zip(&cs).enumerate() {
        assert!((g - c).abs() <= 1e-5 * c, "input {k}: Σh² gpu {g} cpu {c}");
    }
    for (k, ((g, c), &(x, y))) in gd.iter().zip(&cd).zip(&meas.pairs).enumerate() {
        let scale = (cs[x as usize] * cs[y as usize]).sqrt();
        assert!(
            (g - c).abs() <= 1e-5 * scale,
            "pair {k}: dot gpu {g} cpu {c} (scale {scale})"
        );
    }
}

/// backward.wgsl against its CPU twin: one network's forward and STE
/// backward pass on the GPU (`GradientPass::sample_gradients`) and on the
/// CPU (`backward::cpu_sample`), from the same output gradient, through 3
/// layers at a width off the 64-unit tiles. The two products sum in
/// different orders, so each δ^l agrees to rounding: its sums of squares
/// to 1e-4 relative and its pair dot products to 1e-4·√(|a|²·|b|²), far
/// above f32 rounding compounded over 3 layers (~1e-6) and far below a
/// wrong transpose, mask or weight (O(1)). A pre-activation within rounding
/// of the STE threshold or a quantizer step would flip between the two; the
/// fixed seed has none (a change of seed could, in about one run of 50).
#[test]
fn backward_gpu_equals_cpu() {
    use quantdepth::sim::backward::{cpu_sample, output_gradient};
    use quantdepth::sim::GradientPass;
    use quantdepth::theory::backward::{unit_slope, Ste};
    let Some(b) = backend() else { return };
    let (spec, r) = uniform_spec(4, 0.1, 300, 3, 1, vec![0.5, 0.9], 3);
    let ste = Ste::new(1.05 * unit_slope(&r.network, r.q_star, 1.0).unwrap(), 1.0).unwrap();
    let meas = spec.measurements();
    let out = output_gradient(&Stream::new(spec.seed, 0), spec.width, meas.batch);
    let g = b
        .sample_gradients(&spec, &ste, &spec.input_vectors(0), &out, 0)
        .unwrap();
    let c = cpu_sample(&spec, &ste, 0);
    assert_eq!(g.delta.len(), spec.depth + 1);
    for (l, ((gs, gd), (cs, cd))) in g.delta.iter().zip(&c.delta).enumerate() {
        for (k, (x, y)) in gs.iter().zip(cs).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * y,
                "layer {l} input {k}: |δ|² gpu {x} cpu {y}"
            );
        }
        for (k, ((x, y), &(i, j))) in gd.iter().zip(cd).zip(&meas.pairs).enumerate() {
            let scale = (cs[i as usize] * cs[j as usize]).sqrt();
            assert!(
                (x - y).abs() <= 1e-4 * scale,
                "layer {l} pair {k}: δ·δ gpu {x} cpu {y} (scale {scale})"
            );
        }
    }
}
