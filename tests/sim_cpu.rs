//! The CPU simulator: determinism, independence of random streams, and
//! agreement with the mean-field theory at finite width.

use quantdepth::analysis::{fit_depth_scale, CurveSample};
use quantdepth::rng::Stream;
use quantdepth::setup::NetworkChoice;
use quantdepth::sim::{self, cpu::CpuBackend, Control, Inputs, SimOutcome, SimSpec};
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
