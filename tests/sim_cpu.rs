//! The CPU simulator: determinism, independence of random streams, and
//! agreement with the mean-field theory at finite width.

use quantdepth::analysis::{fit_depth_scale, CurveSample};
use quantdepth::rng::{Stream, BIAS_ROW};
use quantdepth::setup::NetworkChoice;
use quantdepth::sim::layer::LayerWeights;
use quantdepth::sim::spec::Measurements;
use quantdepth::sim::{self, cpu::CpuBackend, Control, Inputs, SimOutcome, SimSpec, Weights};
use std::sync::atomic::AtomicBool;

fn run(spec: &SimSpec) -> SimOutcome {
    let cancel = AtomicBool::new(false);
    sim::simulate(
        &mut CpuBackend,
        spec,
        &Control {
            progress: &|_| {},
            cancel: &cancel,
        },
    )
    .unwrap()
}

fn spec_for(
    n: usize,
    sigma_b: f64,
    c0: Vec<f64>,
    width: usize,
    depth: usize,
    samples: usize,
    seed: u64,
) -> (SimSpec, quantdepth::setup::ResolvedNetwork) {
    let mut ch = NetworkChoice::uniform(n);
    ch.sigma_b = Some(sigma_b);
    let r = ch.resolve().unwrap();
    let spec = SimSpec::of_network(
        &r,
        width,
        depth,
        samples,
        seed,
        Inputs::Pairs { c0, pairs: 1 },
    );
    (spec, r)
}

#[test]
fn same_seed_gives_bitwise_identical_statistics() {
    let (spec, _) = spec_for(4, 0.1, vec![0.5, 0.95], 300, 12, 3, 42);
    let a = run(&spec);
    let b = run(&spec);
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
    assert_eq!(bits(&a), bits(&b));
    let (other, _) = spec_for(4, 0.1, vec![0.5, 0.95], 300, 12, 3, 43);
    assert_ne!(
        bits(&a),
        bits(&run(&other)),
        "a different seed must give different networks"
    );
}

#[test]
fn streams_of_different_samples_and_layers_are_uncorrelated() {
    // 2^20 normals per stream: mean 0 ± 5/√N, variance 1 ± 5√(2/N), and the
    // correlation between streams 0 ± 5/√N.
    let n = 1 << 20;
    let draw = |seed: u64, sample: u32, layer: u32| -> Vec<f64> {
        let s = Stream::new(seed, sample);
        let mut out = vec![0f32; n];
        for (r, chunk) in out.chunks_mut(1024).enumerate() {
            s.fill_row(layer, r as u32, chunk);
        }
        out.into_iter().map(f64::from).collect()
    };
    let base = draw(1, 0, 1);
    let bound = 5.0 / (n as f64).sqrt();
    let mean = base.iter().sum::<f64>() / n as f64;
    let var = base.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(mean.abs() < bound, "mean {mean}");
    assert!(
        (var - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt(),
        "variance {var}"
    );
    for (what, other) in [
        ("sample", draw(1, 1, 1)),
        ("layer", draw(1, 0, 2)),
        ("seed", draw(2, 0, 1)),
    ] {
        let corr = base.iter().zip(&other).map(|(a, b)| a * b).sum::<f64>() / n as f64;
        assert!(
            corr.abs() < bound,
            "streams differing in {what}: correlation {corr}"
        );
    }
    // Neighbouring weights in one row are uncorrelated too (lag 1 and lag 4).
    for lag in [1, 4] {
        let corr = base
            .iter()
            .zip(&base[lag..])
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / (n - lag) as f64;
        assert!(corr.abs() < bound, "lag {lag}: correlation {corr}");
    }
}

/// Width 2048, 50 layers, 32 networks with one pair per c⁰: every layer's
/// q̂ and ĉ within 5 standard errors of the theory, plus an allowance of 4/n
/// for the O(1/n) finite-width bias.
#[test]
fn empirical_curves_match_theory_at_width_2048() {
    let width = 2048;
    let allowance = 4.0 / width as f64;
    for n in [2, 4, 16] {
        for sigma_b in [0.0, 0.1] {
            let c0 = vec![0.3, 0.9, 0.99];
            let (spec, r) = spec_for(n, sigma_b, c0.clone(), width, 50, 32, 1000 + n as u64);
            let out = run(&spec);
            for (pc, &c) in out.stats.pairs.iter().zip(&c0) {
                let theory = r.network.depth_curve(r.q0, r.q0, c, 50).unwrap();
                for (e, t) in pc.layers.iter().zip(&theory).skip(1) {
                    let (qse, cse) = (e.q.se.unwrap(), e.c.se.unwrap());
                    assert!(
                        (e.q.mean - t.q_a).abs() <= 5.0 * qse + allowance,
                        "N={n} σ_b={sigma_b} c0={c} layer {}: q̂ {} ± {qse} vs theory {}",
                        e.layer,
                        e.q.mean,
                        t.q_a
                    );
                    assert!(
                        (e.c.mean - t.c).abs() <= 5.0 * cse + allowance,
                        "N={n} σ_b={sigma_b} c0={c} layer {}: ĉ {} ± {cse} vs theory {}",
                        e.layer,
                        e.c.mean,
                        t.c
                    );
                }
            }
        }
    }
}

#[test]
fn fitted_depth_scale_matches_xi_max_for_four_states() {
    // N = 4 at σ_w^opt, σ_b = 0: c* = 0 and ξ_max = 7.9037.
    let (mut spec, r) = spec_for(4, 0.0, vec![0.6], 2048, 40, 24, 7);
    spec.inputs = Inputs::Pairs {
        c0: vec![0.6],
        pairs: 8,
    };
    let out = run(&spec);
    let curve: Vec<_> = out.stats.pairs[0]
        .layers
        .iter()
        .map(|l| CurveSample {
            layer: l.layer,
            mean: l.c.mean,
            se: l.c.se,
        })
        .collect();
    let fit = fit_depth_scale(&curve, 0.0).unwrap();
    let q = r.q_star;
    let xi = r.network.depth_scale(q, 0.0);
    assert!((xi - 7.9037).abs() < 1e-3);
    assert!(
        (fit.xi - xi).abs() < 0.1 * xi,
        "ξ_emp = {} (layers {}..{}) vs ξ_max = {xi}",
        fit.xi,
        fit.first_layer,
        fit.last_layer
    );
}

#[test]
fn bad_specs_are_refused_with_a_reason() {
    let (good, _) = spec_for(4, 0.0, vec![0.5], 64, 3, 2, 1);
    let cases: Vec<(SimSpec, &str)> = vec![
        (
            SimSpec {
                width: 0,
                ..good.clone()
            },
            "width",
        ),
        (
            SimSpec {
                depth: 0,
                ..good.clone()
            },
            "depth",
        ),
        (
            SimSpec {
                samples: 0,
                ..good.clone()
            },
            "samples",
        ),
        (
            SimSpec {
                q0: -1.0,
                ..good.clone()
            },
            "q0",
        ),
        (
            SimSpec {
                inputs: Inputs::Pairs {
                    c0: vec![1.5],
                    pairs: 1,
                },
                ..good.clone()
            },
            "c0",
        ),
        (
            SimSpec {
                inputs: Inputs::Pairs {
                    c0: vec![0.5],
                    pairs: 0,
                },
                ..good.clone()
            },
            "pairs",
        ),
        (
            SimSpec {
                depth: 1 << 40,
                ..good.clone()
            },
            "fit in",
        ),
    ];
    for (spec, want) in cases {
        let cancel = AtomicBool::new(false);
        let err = sim::simulate(
            &mut CpuBackend,
            &spec,
            &Control {
                progress: &|_| {},
                cancel: &cancel,
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(want),
            "expected '{want}' in: {err}"
        );
    }
}

#[test]
fn circle_inputs_have_exact_geometry_and_covariance_curves() {
    let (mut spec, _) = spec_for(16, 0.0, vec![0.5], 256, 4, 2, 3);
    spec.inputs = Inputs::Circle { points: 8 };
    let x = spec.input_vectors(0);
    let n = 256.0;
    for m in 0..8 {
        let q: f64 = x[m].iter().map(|v| v * v).sum::<f64>() / n;
        assert!((q - spec.q0).abs() < 1e-12);
        let c: f64 = x[0].iter().zip(&x[m]).map(|(a, b)| a * b).sum::<f64>() / n / spec.q0;
        assert!((c - (2.0 * std::f64::consts::PI * m as f64 / 8.0).cos()).abs() < 1e-12);
    }
    let out = run(&spec);
    let circle = out.stats.circle.unwrap();
    assert_eq!(circle.angles.len(), 5);
    // Layer 0: the covariance at offset d is q0·cos(2πd/8) up to f32 rounding.
    for (d, e) in circle.layers[0].cov.iter().enumerate() {
        assert!(
            (e.mean - spec.q0 * circle.angles[d].cos()).abs() < 1e-5,
            "d = {d}"
        );
    }
}

/// Backward pass with an STE at width 2048 for N ∈ {4, 16}: the per-layer
/// gradient-norm ratio equals M within 5 SE, for the slope that makes M = 1
/// and for 1.1 times it (M = 1.21); the gradient correlation follows the
/// theory's backward map within 5 SE plus 4/n; the empirical NTK of the
/// pair matches the recursion Θ^{l+1} = Σ^{l+1} + σ_w² E[φ'φ']Θ^l at the top layer.
#[test]
fn ste_gradients_match_the_backward_theory() {
    use quantdepth::sim::backward::simulate_backward;
    use quantdepth::theory::backward::{backward_curve, backward_factor, unit_slope, Ste};
    for n in [4, 16] {
        for slope_factor in [1.0, 1.1] {
            let (mut spec, r) = spec_for(n, 0.0, vec![0.5], 2048, 8, 16, 77 + n as u64);
            spec.inputs = Inputs::Pairs {
                c0: vec![0.5],
                pairs: 4,
            };
            let t = 1.0;
            let s = slope_factor * unit_slope(&r.network, r.q_star, t).unwrap();
            let ste = Ste::new(s, t).unwrap();
            let m = backward_factor(&r.network, r.q_star, &ste);
            let cancel = AtomicBool::new(false);
            let curves = simulate_backward(&spec, &ste, &cancel, None).unwrap();
            let theory = backward_curve(&r.network, &ste, r.q0, 0.5, 8, 1.0).unwrap();
            for (e, th) in curves[0].layers.iter().zip(&theory) {
                if let Some(ratio) = e.norm_ratio {
                    let se = ratio.se.unwrap();
                    assert!(
                        (ratio.mean - m).abs() <= 5.0 * se,
                        "N={n} s×{slope_factor} layer {}: ratio {} ± {se} vs M = {m}",
                        e.layer,
                        ratio.mean
                    );
                }
                let se = e.grad_corr.se.unwrap();
                assert!(
                    (e.grad_corr.mean - th.grad_corr).abs() <= 5.0 * se + 4.0 / 2048.0,
                    "N={n} layer {}: gradient correlation {} ± {se} vs theory {}",
                    e.layer,
                    e.grad_corr.mean,
                    th.grad_corr
                );
            }
            // The empirical NTK of f = v·h^L/√n against Θ^L from the recursion.
            let top = &theory[8];
            for (name, e, t) in [
                ("Θ(a,a)", curves[0].ntk_aa, top.ntk_aa),
                ("Θ(a,b)", curves[0].ntk_ab, top.ntk_ab),
            ] {
                let se = e.se.unwrap();
                assert!(
                    (e.mean - t).abs() <= 5.0 * se + 4.0 / 2048.0 * t.abs(),
                    "N={n} s×{slope_factor}: {name} {} ± {se} vs theory {t}",
                    e.mean
                );
            }
        }
    }
}

/// The NTK curve: Θ^L(a, b) and Θ^L(a, a) of networks of depth L = 2, 4, 7
/// (N = 16, σ_b = 0.1, width 2048) against the recursion's Θ^L.
#[test]
fn empirical_ntk_follows_the_recursion_with_depth() {
    use quantdepth::sim::backward::simulate_backward;
    use quantdepth::theory::backward::{backward_curve, unit_slope, Ste};
    for depth in [2, 4, 7] {
        let (mut spec, r) = spec_for(16, 0.1, vec![0.6], 2048, depth, 12, 900 + depth as u64);
        spec.inputs = Inputs::Pairs {
            c0: vec![0.6],
            pairs: 3,
        };
        let ste = Ste::new(unit_slope(&r.network, r.q_star, 1.0).unwrap(), 1.0).unwrap();
        let cancel = AtomicBool::new(false);
        let curves = simulate_backward(&spec, &ste, &cancel, None).unwrap();
        let top = backward_curve(&r.network, &ste, r.q0, 0.6, depth, 1.0).unwrap()[depth];
        for (name, e, t) in [
            ("Θ(a,a)", curves[0].ntk_aa, top.ntk_aa),
            ("Θ(a,b)", curves[0].ntk_ab, top.ntk_ab),
        ] {
            let se = e.se.unwrap();
            assert!(
                (e.mean - t).abs() <= 5.0 * se + 4.0 / 2048.0 * t.abs(),
                "L = {depth}: {name} {} ± {se} vs theory {t}",
                e.mean
            );
        }
    }
}

/// One layer by the definition, in f64: out_ib = scale·Σⱼ z_ij·act_jb +
/// σ_b·ζᵢ with z the rows `fill_row` (normals) or `fill_row_signs` (±1)
/// writes and ζ the bias normals.
fn layer_in_f64(w: &LayerWeights, act: &[f32], batch: usize) -> Vec<f64> {
    let n = w.n;
    let scale = f64::from(w.ensemble.scale(w.sigma_w, n));
    let mut z = vec![0f32; n];
    let mut out = vec![0f64; n * batch];
    for i in 0..n {
        match w.ensemble {
            Weights::Rademacher => w.stream.fill_row_signs(w.layer, i as u32, &mut z),
            _ => w.stream.fill_row(w.layer, i as u32, &mut z),
        }
        let bias = w.stream.normals(w.layer, BIAS_ROW, i as u32 / 4)[i % 4];
        for b in 0..batch {
            let dot: f64 = (0..n)
                .map(|j| f64::from(z[j]) * f64::from(act[j * batch + b]))
                .sum();
            out[i * batch + b] = scale * dot + w.sigma_b * f64::from(bias);
        }
    }
    out
}

/// The CPU layer (packed product) and the matrixmultiply path it replaced
/// (`layer_reference`) against the definition in f64, at widths off the
/// row panels, the k-slices and the blocks (97, 333) and batches off the
/// column panels (1, 5, 17, 130, 257; Rademacher takes the packed product
/// for B > 32): every element within 1e-5 of the output's rms (f32 sums of
/// n terms: ~√n·6e-8 relative).
#[test]
fn packed_layer_equals_the_definition_in_f64() {
    let stream = Stream::new(0x5EED_0014, 3);
    let cases = [
        (Weights::Gaussian, 97, 1),
        (Weights::Gaussian, 97, 17),
        (Weights::Gaussian, 333, 5),
        (Weights::Gaussian, 333, 130),
        (Weights::Gaussian, 97, 257),
        (Weights::Rademacher, 97, 130),
        (Weights::Rademacher, 333, 257),
    ];
    for (ensemble, n, batch) in cases {
        let w = LayerWeights {
            ensemble,
            stream: &stream,
            layer: 7,
            n,
            sigma_w: 1.3,
            sigma_b: 0.2,
        };
        let act: Vec<f32> = (0..n * batch)
            .map(|e| (((e * 7919) % 13) as f32 - 6.0) / 4.0)
            .collect();
        let want = layer_in_f64(&w, &act, batch);
        let rms = (want.iter().map(|x| x * x).sum::<f64>() / want.len() as f64).sqrt();
        let mut out = vec![f32::NAN; n * batch];
        let mut old = vec![f32::NAN; n * batch];
        w.layer(&act, batch, &mut out, None);
        w.layer_reference(&act, batch, &mut old, None);
        for (name, got) in [("packed", &out), ("matrixmultiply", &old)] {
            for (e, (&g, &x)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(g) - x).abs() <= 1e-5 * rms,
                    "{name} {ensemble:?} n {n} B {batch}, unit {} input {}: {g} vs {x} (rms {rms})",
                    e / batch,
                    e % batch
                );
            }
        }
    }
}

/// Each output is a fixed-order sum, and statistics are combined in block
/// order: one thread and two give the same bits, for the layer and its
/// statistics, in every ensemble and path (n = 333: 21 blocks, the last
/// short; B = 130 packed, B = 20 Rademacher sign flips).
#[test]
fn layer_bits_do_not_depend_on_the_thread_count() {
    let stream = Stream::new(99, 1);
    let meas = Measurements {
        batch: 130,
        pairs: vec![(0, 1), (5, 129)],
    };
    let pool = |t| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap()
    };
    let (one, two) = (pool(1), pool(2));
    for (ensemble, n, batch) in [
        (Weights::Gaussian, 333, 130),
        (Weights::Rademacher, 333, 130),
        (Weights::Rademacher, 333, 20),
        (Weights::Hadamard, 256, 130),
    ] {
        let w = LayerWeights {
            ensemble,
            stream: &stream,
            layer: 2,
            n,
            sigma_w: 1.1,
            sigma_b: 0.3,
        };
        let meas = Measurements {
            batch,
            pairs: meas
                .pairs
                .iter()
                .copied()
                .filter(|p| (p.1 as usize) < batch)
                .collect(),
        };
        let act: Vec<f32> = (0..n * batch)
            .map(|e| ((e % 11) as f32 - 5.0) / 3.0)
            .collect();
        let run = |p: &rayon::ThreadPool| {
            let mut out = vec![0f32; n * batch];
            let stats = p
                .install(|| w.layer(&act, batch, &mut out, Some(&meas)))
                .unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (
                out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                bits(&stats.0),
                bits(&stats.1),
            )
        };
        assert!(run(&one) == run(&two), "{ensemble:?} n {n} B {batch}");
    }
}
