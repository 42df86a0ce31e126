//! The mean-field theory against identities, finite differences, Monte Carlo
//! and published reference values (THEORY.md).

use quantdepth::activation::{Activation, Quantizer};
use quantdepth::gauss::{bvn_upper, cdf, cdf2, pdf, sf};
use quantdepth::theory::maps::Network;
use quantdepth::theory::optimal::{
    chi_uniform, chi_uniform_parts, optimal_spacing, uniform_optimum,
};
use quantdepth::theory::scaling::scaling;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::f64::consts::PI;

fn uniform_net(n: usize, spacing: f64, sigma_w: f64, sigma_b: f64) -> Network {
    Network::new(
        Activation::Quantized(Quantizer::uniform(n, spacing, 1.0).unwrap()),
        sigma_w,
        sigma_b,
    )
    .unwrap()
}

#[test]
fn sign_activation_has_chi_two_over_pi_and_arcsine_map() {
    // THEORY.md §5: N = 2, σ_b = 0 → f(c) = (2/π) arcsin c, χ(0) = 2/π, ξ = 2.2144.
    let net = Network::new(
        Activation::Quantized(Quantizer::sign(1.0).unwrap()),
        1.3,
        0.0,
    )
    .unwrap();
    let q = net.q_star().unwrap();
    assert!((q - 1.69).abs() < 1e-14, "q* = σ_w² A² = 1.69, got {q}");
    assert!((net.chi(q, 0.0) - 2.0 / PI).abs() < 1e-15);
    for c in [-0.9, -0.3, 0.2, 0.7, 0.99] {
        let want = 2.0 / PI * f64::asin(c);
        assert!((net.correlation_map(q, c) - want).abs() < 1e-14, "c = {c}");
    }
    let xi = net.depth_scale(q, net.c_star(q).unwrap());
    assert!((xi - 2.2144).abs() < 5e-5, "ξ = {xi}");
}

#[test]
fn optimum_matches_published_one_minus_chi_max() {
    // The authors' numerical scan (THEORY.md §6), to the 6 decimals published
    // (half a unit in the last place), and D̃_opt within their grid error (~1e-3).
    for (n, one_minus, d) in [
        (3, 0.190174, 1.2236),
        (4, 0.118846, 0.9955),
        (16, 0.011543, 0.3352),
    ] {
        let o = uniform_optimum(n, 6.0).unwrap();
        let tol = 5e-7;
        assert!(
            (o.one_minus_chi_max - one_minus).abs() <= tol,
            "N = {n}: 1 − χ_max = {} vs {one_minus}",
            o.one_minus_chi_max
        );
        assert!(
            (o.d_opt.unwrap() - d).abs() < 1e-3,
            "N = {n}: D_opt = {:?} vs {d}",
            o.d_opt
        );
        assert!((o.chi_max + o.one_minus_chi_max - 1.0).abs() < 1e-15);
        assert!((o.l_max - 6.0 * o.xi_max).abs() < 1e-9 * o.l_max);
    }
}

#[test]
fn optimal_spacing_is_a_maximum_of_chi() {
    for n in [3, 5, 16, 100] {
        let d = optimal_spacing(n).unwrap().unwrap();
        let c0 = chi_uniform(n, d);
        for h in [1e-3, 1e-2] {
            assert!(
                chi_uniform(n, d * (1.0 + h)) < c0 && chi_uniform(n, d * (1.0 - h)) < c0,
                "N = {n}"
            );
        }
    }
    assert_eq!(optimal_spacing(2).unwrap(), None);
}

#[test]
fn paper_fit_of_the_trade_off_is_reproduced() {
    // THEORY.md §6: over N ∈ {3..64, 125, 128, 255, 256, 512, 515, 1024, 1025},
    // ln(1 − χ_max) vs ln(N + 1): slope −1.817, intercept 0.71;
    // ln D̃_opt: slope −0.879, intercept 1.40.
    let mut ns: Vec<usize> = (3..=64).collect();
    ns.extend([125, 128, 255, 256, 512, 515, 1024, 1025]);
    let optima: Vec<_> = ns
        .iter()
        .map(|&n| uniform_optimum(n, 6.0).unwrap())
        .collect();
    let s = scaling(&optima).unwrap();
    let f = s.one_minus_chi_max;
    assert!((f.slope + 1.817).abs() <= 0.003, "slope {}", f.slope);
    assert!(
        (f.intercept - 0.71).abs() <= 0.01,
        "intercept {}",
        f.intercept
    );
    // The published D̃_opt fit comes from a 2000-point grid (error ~1e-3, which is
    // 10 % of D̃_opt at N = 1024), so its slope is only checked to 0.01.
    assert!(
        (s.d_opt.slope + 0.879).abs() <= 0.01,
        "D slope {}",
        s.d_opt.slope
    );
    assert!(
        (s.d_opt.intercept - 1.40).abs() <= 0.03,
        "D intercept {}",
        s.d_opt.intercept
    );
    assert!(
        (s.xi_max.slope - 1.817).abs() <= 0.01,
        "ξ slope {}",
        s.xi_max.slope
    );
}

#[test]
fn one_minus_chi_is_accurate_at_a_million_states() {
    // Reference: scripts/reference_values.py, (V − S²)/V in 40-digit mpmath
    // arithmetic at the same D̃. Required relative accuracy 1e-6.
    for (n, d, want) in [
        (
            100_000,
            0.000_121_374_679_715_237_19,
            1.289_711_074_405_257_4e-9,
        ),
        (
            1_000_000,
            1.348_109_830_363_94e-5,
            1.577_351_760_205_967_6e-11,
        ),
    ] {
        let got = chi_uniform_parts(n, d).one_minus_chi;
        assert!(
            ((got - want) / want).abs() < 1e-6,
            "N = {n}: {got:e} vs {want:e}"
        );
    }
}

#[test]
fn chi_equals_finite_difference_of_the_correlation_map() {
    for (n, sigma_b) in [(3, 0.0), (4, 0.3), (16, 0.1), (7, 0.05)] {
        let d = optimal_spacing(n).unwrap().unwrap();
        let net = uniform_net(n, d, 1.1, sigma_b);
        let q = net.q_star().unwrap();
        for c in [-0.5, 0.0, 0.3, 0.8, 0.95] {
            let h = 1e-5;
            let fd = (net.correlation_map(q, c + h) - net.correlation_map(q, c - h)) / (2.0 * h);
            let chi = net.chi(q, c);
            assert!(
                (fd - chi).abs() < 1e-6,
                "N = {n}, σ_b = {sigma_b}, c = {c}: fd {fd} vs χ {chi}"
            );
        }
    }
}

#[test]
fn correlation_map_agrees_with_monte_carlo() {
    // 2·10⁶ samples per point, fixed seed; the bound is 5 standard errors.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20191208);
    for (n, sigma_w, sigma_b, c) in [
        (2, 1.0, 0.2, 0.5),
        (4, 1.2, 0.3, 0.7),
        (16, 1.05, 0.5, -0.4),
    ] {
        let d = optimal_spacing(n).unwrap().unwrap_or(1.0);
        let net = uniform_net(n, d, sigma_w, sigma_b);
        let q = net.q_star().unwrap();
        let s = q.sqrt();
        let m = 2_000_000;
        let (mut sum, mut sum2) = (0.0, 0.0);
        for _ in 0..m {
            let z1: f64 = StandardNormal.sample(&mut rng);
            let z2: f64 = StandardNormal.sample(&mut rng);
            let ua = s * z1;
            let ub = s * (c * z1 + (1.0 - c * c).sqrt() * z2);
            let x = net.activation.eval(ua) * net.activation.eval(ub);
            sum += x;
            sum2 += x * x;
        }
        let mean = sum / m as f64;
        let se = ((sum2 / m as f64 - mean * mean) / m as f64).sqrt();
        let f_mc = (sigma_w * sigma_w * mean + sigma_b * sigma_b) / q;
        let f_se = sigma_w * sigma_w * se / q;
        let f = net.correlation_map(q, c);
        assert!(
            (f - f_mc).abs() < 5.0 * f_se,
            "N = {n}: f = {f}, MC {f_mc} ± {f_se}"
        );
    }
}

#[test]
fn stable_fixed_point_with_bias_is_attracting_and_below_one() {
    for n in [2, 4, 16] {
        let net = uniform_net(n, optimal_spacing(n).unwrap().unwrap_or(1.0), 1.0, 0.3);
        let q = net.q_star().unwrap();
        let cs = net.c_star(q).unwrap();
        assert!(cs > 0.0 && cs < 1.0, "c* = {cs}");
        assert!((net.correlation_map(q, cs) - cs).abs() < 1e-13);
        assert!(net.chi(q, cs) < 1.0, "χ(c*) = {}", net.chi(q, cs));
        // χ diverges at c → 1 for every quantizer.
        assert!(net.chi(q, 1.0 - 1e-12) > 1e3);
    }
}

#[test]
fn depth_curve_from_off_fixed_point_inputs_converges_to_q_star() {
    let net = uniform_net(4, 0.9956, 1.2, 0.1);
    let q = net.q_star().unwrap();
    let curve = net.depth_curve(5.0 * q, 0.2 * q, 0.6, 60).unwrap();
    let last = curve.last().unwrap();
    assert!((last.q_a - q).abs() < 1e-10 * q && (last.q_b - q).abs() < 1e-10 * q);
    let cs = net.c_star(q).unwrap();
    assert!((last.c - cs).abs() < 1e-6, "c^60 = {} vs c* = {cs}", last.c);
}

#[test]
fn continuous_references_match_known_closed_forms() {
    // Linear: q* = σ_b²/(1 − σ_w²), χ = σ_w².
    let lin = Network::new(Activation::Linear, 0.8, 0.6).unwrap();
    let q = lin.q_star().unwrap();
    assert!((q - 0.36 / 0.36).abs() < 1e-15);
    assert!((lin.chi(q, 0.3) - 0.64).abs() < 1e-15);
    // tanh: E[tanh(z)²] = 0.39429449... (quadrature to 1e-12 is what we need; the value
    // below is ∫ tanh² ϕ by 40-digit mpmath).
    let m2 = Activation::Tanh.second_moment(1.0);
    assert!((m2 - 0.394_294_490_397_841_17).abs() < 1e-12, "{m2}");
    // Hard-tanh χ(c) = σ_w² P(|u_a| < 1, |u_b| < 1): check against Φ₂.
    let ht = Network::new(Activation::HardTanh, 1.5, 0.0).unwrap();
    let q = ht.q_star().unwrap();
    let c = 0.4;
    let s = q.sqrt();
    let h = 1.0 / s;
    let rect = cdf2(h, h, c) - cdf2(h, -h, c) - cdf2(-h, h, c) + cdf2(-h, -h, c);
    assert!(
        (ht.chi(q, c) - 2.25 * rect).abs() < 1e-12,
        "{} vs {}",
        ht.chi(q, c),
        2.25 * rect
    );
}

#[test]
fn bivariate_normal_identities() {
    for &(x, y) in &[(0.3, -1.1), (2.0, 0.5), (-3.0, 4.0)] {
        for &r in &[-0.95, -0.5, 0.0, 0.3, 0.8, 0.93, 0.999] {
            assert!((cdf2(x, y, r) - cdf2(y, x, r)).abs() < 1e-15, "symmetry");
        }
        assert!((cdf2(x, y, 0.0) - cdf(x) * cdf(y)).abs() < 1e-16, "ρ = 0");
        assert!((cdf2(x, y, 1.0) - cdf(x.min(y))).abs() < 1e-16, "ρ = 1");
        let want = (cdf(x) - sf(y)).max(0.0);
        assert!((cdf2(x, y, -1.0) - want).abs() < 1e-16, "ρ = −1");
        // Continuity into the endpoints.
        assert!((cdf2(x, y, 1.0 - 1e-13) - cdf(x.min(y))).abs() < 1e-6);
    }
    // Φ₂(0, 0; ρ) = 1/4 + arcsin(ρ)/(2π) (Sheppard 1899).
    for r in [-0.99, -0.7, -0.2, 0.1, 0.5, 0.9, 0.9999] {
        assert!(
            (cdf2(0.0, 0.0, r) - (0.25 + f64::asin(r) / (2.0 * PI))).abs() < 1e-15,
            "ρ = {r}"
        );
    }
    // Upper-tail complement: P(X > h, Y > k) = 1 − Φ(h) − Φ(k) + Φ₂(h, k).
    assert!(
        (bvn_upper(0.4, -0.2, 0.6) - (1.0 - cdf(0.4) - cdf(-0.2) + cdf2(0.4, -0.2, 0.6))).abs()
            < 1e-15
    );
    // ∂Φ₂/∂ρ = ϕ₂ (Plackett).
    let (x, y, r, h) = (0.7, -0.3, 0.45, 1e-5);
    let fd = (cdf2(x, y, r + h) - cdf2(x, y, r - h)) / (2.0 * h);
    assert!((fd - quantdepth::gauss::pdf2(x, y, r)).abs() < 1e-9);
    assert!((quantdepth::gauss::pdf2(x, y, 0.0) - pdf(x) * pdf(y)).abs() < 1e-16);
}

#[test]
fn bivariate_normal_matches_high_precision_reference() {
    // 40-digit mpmath quadrature (scripts/reference_values.py); every |ρ| regime
    // of Genz's algorithm is covered, including |ρ| > 0.925.
    let refs = [
        (0.5, -1.2, 0.3, 0.098_060_031_111_840_623),
        (1.0, 2.0, -0.7, 0.818_598_196_729_420_60),
        (-2.0, -1.5, 0.95, 0.022_100_008_764_184_883),
        (0.3, 0.3, 0.999, 0.611_106_474_089_503_17),
        (-1.0, 1.0, -0.9999, 0.001_365_173_622_801_313_5),
        (2.5, -0.5, 0.5, 0.308_446_590_373_620_37),
        (-3.0, -3.0, 0.99, 0.001_101_519_998_620_622_5),
    ];
    for (x, y, r, want) in refs {
        let got = cdf2(x, y, r);
        assert!(
            (got - want).abs() < 1e-14,
            "Φ₂({x}, {y}; {r}) = {got} vs {want}"
        );
    }
}

#[test]
fn nonuniform_optimum_is_never_below_uniform_and_coincides_where_it_must() {
    use quantdepth::theory::nonuniform::nonuniform_optimum;
    // N = 3 (±g) and N = 4 (−g, 0, g) have one free spacing: the optima coincide.
    for n in [3, 4] {
        let nu = nonuniform_optimum(n).unwrap();
        let u = uniform_optimum(n, 6.0).unwrap();
        assert!(
            ((nu.one_minus_chi_max - u.one_minus_chi_max) / u.one_minus_chi_max).abs() < 1e-9,
            "N = {n}: {} vs {}",
            nu.one_minus_chi_max,
            u.one_minus_chi_max
        );
    }
    for n in [5, 6, 8, 12, 16] {
        let nu = nonuniform_optimum(n).unwrap();
        let u = uniform_optimum(n, 6.0).unwrap();
        assert!(
            nu.one_minus_chi_max <= u.one_minus_chi_max * (1.0 + 1e-12),
            "N = {n}"
        );
        assert!(nu.gain >= 1.0 - 1e-12);
        // Symmetric and increasing thresholds.
        let g = &nu.thresholds;
        assert_eq!(g.len(), n - 1);
        for k in 0..g.len() {
            assert!((g[k] + g[g.len() - 1 - k]).abs() < 1e-12);
            if k > 0 {
                assert!(g[k] > g[k - 1]);
            }
        }
    }
}

#[test]
fn ste_backward_factor_and_ntk_recursion() {
    use quantdepth::theory::backward::{backward_curve, backward_factor, unit_slope, Ste};
    let net = uniform_net(4, 0.9957, 1.591, 0.0);
    let q = net.q_star().unwrap();
    let t = 1.0;
    let s = unit_slope(&net, q, t).unwrap();
    let ste = Ste::new(s, t).unwrap();
    assert!((backward_factor(&net, q, &ste) - 1.0).abs() < 1e-14);
    let curve = backward_curve(&net, &ste, q, 0.5, 20, 1.0).unwrap();
    // M = 1 and q^l = q*: gradient norms neither grow nor shrink.
    for p in &curve {
        assert!(
            (p.grad_norm_ratio - 1.0).abs() < 1e-12,
            "layer {}: {}",
            p.layer,
            p.grad_norm_ratio
        );
    }
    // The NTK recursion with M = 1 adds q* per layer: Θ^l(a, a) = l·q*.
    for p in curve.iter().skip(1) {
        assert!((p.ntk_aa - p.layer as f64 * q).abs() < 1e-10 * p.layer as f64);
    }
    // Gradients entering with correlation 1 decorrelate going down.
    assert!(curve[0].grad_corr < curve[19].grad_corr && curve[20].grad_corr == 1.0);
}

#[test]
fn free_levels_give_the_lloyd_max_quantizer() {
    use quantdepth::theory::nonuniform::lloyd_max;
    // With free levels, 1 − χ_max is the Lloyd–Max mean-square error of a unit
    // Gaussian, published by Max (1960, IRE Trans. Inf. Theory 6, Table I) to four
    // significant digits, within one unit of the last (Max's entries are truncated:
    // N = 8 is 0.034548 to six digits).
    for (n, mse) in [
        (2, 0.3634f64),
        (3, 0.1902),
        (4, 0.1175),
        (5, 0.07994),
        (6, 0.05798),
        (7, 0.04400),
        (8, 0.03454),
    ] {
        let lm = lloyd_max(n).unwrap();
        let tol = 10f64.powi(mse.log10().floor() as i32 - 3);
        assert!(
            (lm.one_minus_chi_max - mse).abs() <= tol,
            "N = {n}: {} vs Max's {mse}",
            lm.one_minus_chi_max
        );
        assert!(
            lm.gradient_norm < 1e-8,
            "N = {n}: not stationary, |∇χ| = {}",
            lm.gradient_norm
        );
        assert!(lm.gain >= 1.0 - 1e-12, "N = {n}: gain {}", lm.gain);
    }
    // N = 3 has a single free parameter either way: Lloyd–Max is the uniform optimum.
    let u3 = uniform_optimum(3, 6.0).unwrap();
    assert!((lloyd_max(3).unwrap().one_minus_chi_max - u3.one_minus_chi_max).abs() < 1e-10);
}
