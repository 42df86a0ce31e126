//! `quantdepth init` and [`recommend`]: the published σ_w for 4-bit
//! activations, consistency with the theory it is built from, bits ↔ states,
//! and messages that name what was wrong.

use quantdepth::activation::{Activation, Quantizer};
use quantdepth::theory::backward::{backward_factor, Ste};
use quantdepth::theory::init::{recommend, states_from_bits, MAX_STATES};
use quantdepth::theory::maps::Network;
use quantdepth::theory::optimal::{optimal_sigma_w, uniform_optimum};
use std::process::Command;

fn quantdepth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quantdepth"))
        .args(args)
        .output()
        .expect("the quantdepth binary runs")
}

#[test]
fn four_bits_give_sigma_w_2_5286408548_with_its_levels_and_thresholds() {
    // σ_w^opt for N = 16, A = 1, σ_b = 0: the value `theory curve --states 16`
    // prints in its header (2.528640855), to 10 digits.
    let r = recommend(16, 1.0, 0.0, 6.0, 1.0).unwrap();
    assert!(
        (r.sigma_w - 2.5286408548).abs() < 5e-11,
        "sigma_w = {:.12}",
        r.sigma_w
    );
    assert_eq!(r.bits, Some(4));
    // q* = 1, so Δ = D̃_opt(16) = 0.335201 (README table) and the input scale is 1.
    assert!((r.q_star - 1.0).abs() < 1e-12, "q* = {}", r.q_star);
    assert!((r.input_scale - 1.0).abs() < 1e-12);
    let d = r.spacing.unwrap();
    assert!((d - 0.335201).abs() < 5e-7, "spacing {d}");
    // Levels −1, −13/15, …, 1; thresholds Δ·(k − 8), k = 1..15, centred on 0.
    assert_eq!(r.levels.len(), 16);
    assert_eq!(r.thresholds.len(), 15);
    for (k, y) in r.levels.iter().enumerate() {
        assert!(
            (y - (-1.0 + 2.0 * k as f64 / 15.0)).abs() < 1e-15,
            "level {k}: {y}"
        );
    }
    for (i, g) in r.thresholds.iter().enumerate() {
        assert!(
            (g - d * (i as f64 + 1.0 - 8.0)).abs() < 1e-15,
            "threshold {i}: {g}"
        );
    }
    assert_eq!(r.thresholds[7], 0.0);
    // σ_b = 0: χ, ξ, L_max are those of the optimum table (ξ_max(16) = 86.13249).
    let opt = uniform_optimum(16, 6.0).unwrap();
    assert_eq!((r.chi, r.xi, r.l_max), (opt.chi_max, opt.xi_max, opt.l_max));
    assert!((r.xi - 86.13249).abs() < 1e-4, "xi = {}", r.xi);
    assert_eq!(r.c_star, 0.0);
}

#[test]
fn init_json_matches_the_library_and_the_theory_curve_header() {
    let out = quantdepth(&["init", "--states", "16", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = recommend(16, 1.0, 0.0, 6.0, 1.0).unwrap();
    // serde_json prints the shortest round-trip decimal but parses it with up
    // to 1 ulp of error (without its float_roundtrip feature): compare to 2e-16.
    let near = |a: f64, b: f64| (a - b).abs() <= 2e-16 * b.abs().max(1.0);
    assert!(near(v["sigma_w"].as_f64().unwrap(), r.sigma_w));
    assert!((v["sigma_w"].as_f64().unwrap() - 2.5286408548).abs() < 5e-11);
    assert_eq!(v["sigma_b"].as_f64().unwrap(), 0.0);
    for (key, want) in [("levels", &r.levels), ("thresholds", &r.thresholds)] {
        let got: Vec<f64> = serde_json::from_value(v[key].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{key}");
        for (g, w) in got.iter().zip(want) {
            assert!(near(*g, *w), "{key}: {g} vs {w}");
        }
    }
    // The same σ_w as the theory curve's defaulted network (sigma_w^opt).
    let curve = quantdepth(&[
        "theory", "curve", "--states", "16", "--depth", "1", "--json",
    ]);
    let c: serde_json::Value = serde_json::from_slice(&curve.stdout).unwrap();
    assert!(near(c["network"]["sigma_w"].as_f64().unwrap(), r.sigma_w));
    // The text output carries the same number, to 10 decimals.
    let text = quantdepth(&["init", "--bits", "4"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("sigma_w = 2.5286408548"), "{text}");
}

#[test]
fn ste_slope_makes_the_gradient_factor_one_and_sigma_w_scales_with_amplitude() {
    for (n, a, t) in [(4, 0.5, 1.0), (16, 3.0, 0.7), (2, 1.0, f64::INFINITY)] {
        let r = recommend(n, a, 0.0, 6.0, t).unwrap();
        // σ_w^opt ∝ 1/A (E[φ²] ∝ A²), q* unchanged.
        let (sw1, q1) = optimal_sigma_w(n, r.spacing.unwrap_or(1.0), 1.0).unwrap();
        assert!(
            (r.sigma_w * a - sw1).abs() < 1e-12 * sw1,
            "N = {n}, A = {a}"
        );
        assert!((r.q_star - q1).abs() < 1e-12);
        let net = Network::new(
            Activation::Quantized(Quantizer::new(r.levels.clone(), r.thresholds.clone()).unwrap()),
            r.sigma_w,
            0.0,
        )
        .unwrap();
        let m = backward_factor(&net, r.q_star, &Ste::new(r.ste_slope, t).unwrap());
        assert!((m - 1.0).abs() < 1e-13, "N = {n}: M = {m}");
        // The levels and thresholds really have q* as the variance fixed point.
        let q = net.q_star().unwrap();
        assert!(
            (q - r.q_star).abs() < 1e-10,
            "N = {n}: q* = {q} vs {}",
            r.q_star
        );
    }
}

#[test]
fn a_bias_lowers_sigma_w_to_keep_q_star_and_gives_a_positive_c_star() {
    let r0 = recommend(8, 1.0, 0.0, 6.0, 1.0).unwrap();
    let r = recommend(8, 1.0, 0.3, 6.0, 1.0).unwrap();
    // σ_w² E[φ²] + σ_b² = q* = 1: σ_w = σ_w^opt·√(1 − 0.09).
    assert!((r.sigma_w - r0.sigma_w * 0.91f64.sqrt()).abs() < 1e-14);
    let net = Network::new(
        Activation::Quantized(Quantizer::new(r.levels.clone(), r.thresholds.clone()).unwrap()),
        r.sigma_w,
        0.3,
    )
    .unwrap();
    assert!((net.q_star().unwrap() - 1.0).abs() < 1e-10);
    // With a bias, c* > 0 is the fixed point of the correlation map and
    // χ(c*) < χ_max: the bias shortens the depth scale.
    assert!(r.c_star > 0.0);
    assert!((net.correlation_map(1.0, r.c_star) - r.c_star).abs() < 1e-12);
    assert!(r.xi < r0.xi, "xi with bias {} vs {}", r.xi, r0.xi);
}

#[test]
fn bits_and_states_agree() {
    for b in 1..=10u32 {
        let n = states_from_bits(b).unwrap();
        assert_eq!(n, 1usize << b);
        let r = recommend(n, 1.0, 0.0, 6.0, 1.0).unwrap();
        assert_eq!(r.bits, Some(b));
    }
    assert_eq!(states_from_bits(20).unwrap(), MAX_STATES);
    assert_eq!(recommend(5, 1.0, 0.0, 6.0, 1.0).unwrap().bits, None);
    // The CLI: --bits 3 is --states 8, byte for byte.
    let a = quantdepth(&["init", "--bits", "3", "--json"]);
    let b = quantdepth(&["init", "--states", "8", "--json"]);
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn bad_inputs_are_named_with_what_would_be_right() {
    let err = |r: quantdepth::Result<_>| r.map(|_: ()| ()).unwrap_err().to_string();
    let rec = |n, a, b, k, t| recommend(n, a, b, k, t).map(|_| ());
    for (msg, want) in [
        (err(rec(1, 1.0, 0.0, 6.0, 1.0)), "invalid states N = 1"),
        (err(rec(1 << 21, 1.0, 0.0, 6.0, 1.0)), "2 to 1048576"),
        (err(rec(4, 0.0, 0.0, 6.0, 1.0)), "invalid amplitude = 0"),
        (
            err(rec(4, f64::NAN, 0.0, 6.0, 1.0)),
            "invalid amplitude = NaN",
        ),
        (err(rec(4, 1.0, -0.1, 6.0, 1.0)), "invalid sigma_b = -0.1"),
        (err(rec(4, 1.0, 1.0, 6.0, 1.0)), "below sqrt(q*) = 1"),
        (err(rec(4, 1.0, 0.0, -1.0, 1.0)), "invalid kappa = -1"),
        (err(rec(4, 1.0, 0.0, 6.0, 0.0)), "invalid ste threshold = 0"),
        (
            err(rec(512, 1.0, 0.1, 6.0, 1.0)),
            "with sigma_b > 0, N is limited to 256",
        ),
        (err(states_from_bits(0).map(|_| ())), "invalid bits = 0"),
        (
            err(states_from_bits(21).map(|_| ())),
            "from 1 (N = 2, sign) to 20",
        ),
    ] {
        assert!(msg.contains(want), "expected '{want}' in: {msg}");
    }
    // The CLI passes the library's message through, and names a missing size.
    for (args, want) in [
        (
            &["init", "--states", "16", "--amplitude", "-1"][..],
            "invalid amplitude = -1",
        ),
        (&["init", "--bits", "0"][..], "invalid bits = 0"),
        (
            &["init", "--states", "4", "--sigma-b", "2"][..],
            "invalid sigma_b = 2",
        ),
        (&["init"][..], "required"),
        (
            &["init", "--states", "4", "--bits", "2"][..],
            "cannot be used with",
        ),
    ] {
        let out = quantdepth(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(want), "{args:?}: expected '{want}' in: {e}");
    }
}
