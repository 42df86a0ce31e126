//! The user's path: intervals that cover, and command-line messages that
//! name what was wrong.

use quantdepth::analysis::fit_depth_scale_networks;
use quantdepth::analysis::predicted::{predict_xi_emp, Experiment};
use quantdepth::setup::{ActivationChoice, NetworkChoice};
use quantdepth::sim::{self, cpu::CpuBackend, Control, Inputs, SimSpec};
use quantdepth::theory::finite_width::expand;
use std::sync::atomic::AtomicBool;

/// The 95 % interval of ξ_emp covers ξ_theory in 90–99 % of independent
/// seeds at a setting where the theory holds: N = 3 at σ_w^opt, c⁰ = 0.6,
/// width 512, 12 networks × 16 pairs, depth 24. The window's transient bias
/// (fitting the exact theory curve the same way) is 0.9 % of ξ, against an
/// interval half-width of ≈ 13 %.
///
/// With 100 seeds and true coverage 95 %, the count is Binomial(100, 0.95):
/// mean 95, SD 2.2, so 90..=99 is a −2.3/+1.8 SD band; the seeds are fixed,
/// so the test is deterministic. (Measured when written: 91/100, misses 5
/// above and 4 below; the interval from the layers' own slope error, or a
/// jackknife that keeps the full fit's window, covered in 86 or fewer.)
/// Beside it, the same intervals against the ξ_emp the finite-width theory
/// predicts for this experiment (analysis::predicted, 4.788: transient and
/// fit bias included), with the same band: 93/100 when written. Where the
/// two differ by more than the interval, tests/predicted_xi.rs.
#[test]
fn xi_interval_covers_the_theory_95_percent_of_seeds() {
    let r = NetworkChoice {
        activation: ActivationChoice::Uniform(3),
        spacing: None,
        amplitude: None,
        sigma_w: None,
        sigma_b: Some(0.0),
        q0: None,
    }
    .resolve()
    .unwrap();
    let c_star = r.network.c_star(r.q_star).unwrap();
    let xi = r.network.depth_scale(r.q_star, c_star);
    let cancel = AtomicBool::new(false);
    let ctl = Control {
        progress: &|_| {},
        cancel: &cancel,
    };
    // What the finite-width theory says this experiment measures: the same
    // width, networks, pairs, depth and fit, by a Monte Carlo of the fit.
    let expansion = expand(&r.network, r.q0, 0.6, 24).unwrap();
    let pred = predict_xi_emp(
        &expansion,
        xi,
        &Experiment {
            width: 512,
            pairs: 16,
            networks: 12,
            replicates: 2000,
            seed: 11,
        },
    )
    .unwrap();
    let seeds = 100;
    let (mut covered, mut covered_pred, mut failed) = (0, 0, Vec::new());
    let mut widths = Vec::new();
    for seed in 1..=seeds {
        let spec = SimSpec::of_network(
            &r,
            512,
            24,
            12,
            1000 + seed,
            Inputs::Pairs {
                c0: vec![0.6],
                pairs: 16,
            },
        );
        let out = sim::simulate(&mut CpuBackend, &spec, &ctl).unwrap();
        match fit_depth_scale_networks(&out.stats.pairs[0].c_per_network, c_star) {
            Ok(f) => {
                widths.push((f.ci_high - f.ci_low) / xi);

                if f.ci_low <= xi && xi <= f.ci_high {
                    covered += 1;
                }
                if f.ci_low <= pred.xi_pred && pred.xi_pred <= f.ci_high {
                    covered_pred += 1;
                }
            }
            Err(e) => failed.push(format!("seed {seed}: {e}")),
        }
    }
    assert!(failed.is_empty(), "fits failed: {failed:?}");
    widths.sort_by(f64::total_cmp);
    let median = widths[widths.len() / 2];
    eprintln!(
        "coverage of xi_theory = {xi:.4} by the 95% interval: {covered}/{seeds}; of the predicted xi_emp = {:.4} \
         (transient {:.4}, + 1/n mean {:.4}): {covered_pred}/{seeds}; Monte Carlo: {:.3} and {:.3}; median width {:.1}% of xi",
        pred.xi_pred,
        pred.xi_transient,
        pred.xi_mean,
        pred.mc_covers_theory,
        pred.mc_covers_pred,
        100.0 * median
    );
    assert!(
        (90..=99).contains(&covered_pred),
        "the 95% interval covered the predicted xi_emp = {:.4} in {covered_pred} of {seeds} seeds; \
         a 95% interval covers in 90..=99 (Binomial(100, 0.95) ± 2.3 SD)",
        pred.xi_pred
    );
    assert!(
        (90..=99).contains(&covered),
        "the 95% interval covered xi_theory = {xi:.4} in {covered} of {seeds} seeds; \
         a 95% interval covers in 90..=99 (Binomial(100, 0.95) ± 2.3 SD)"
    );
}

// ---- Messages: each names what was wrong and what would be right. ----

fn quantdepth(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quantdepth"))
        .args(args)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("the quantdepth binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_argument_is_named() {
    let (rc, _, err) = quantdepth(&[
        "simulate",
        "--c0",
        "0.3",
        "--width",
        "64",
        "--depth",
        "5",
        "--samples",
        "4",
    ]);
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("required arguments were not provided") && err.contains("--states <N>"),
        "{err}"
    );
}

#[test]
fn misspelt_subcommand_gets_a_suggestion() {
    let (rc, _, err) = quantdepth(&["simualte"]);
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("similar subcommand exists: 'simulate'"),
        "{err}"
    );
}

#[test]
fn unknown_backend_lists_the_allowed_values() {
    let (rc, _, err) = quantdepth(&[
        "simulate",
        "--backend",
        "cuda",
        "--states",
        "4",
        "--c0",
        "0.3",
        "--width",
        "64",
        "--depth",
        "5",
        "--samples",
        "4",
    ]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("[possible values: auto, cpu, gpu]"), "{err}");
}

#[test]
fn negative_kappa_is_explained() {
    let (rc, _, err) = quantdepth(&["theory", "optimal", "--states", "4", "--kappa", "-1"]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("--kappa -1") && err.contains("must be a finite number > 0"),
        "{err}"
    );
}

#[test]
fn negative_depth_is_explained_both_ways_of_writing_it() {
    for args in [
        &["theory", "curve", "--states", "4", "--depth=-5"][..],
        &["theory", "curve", "--states", "4", "--depth", "-5"][..],
    ] {
        let (rc, _, err) = quantdepth(args);
        assert_eq!(rc, 2, "{err}");
        assert!(
            err.contains("-5 is negative: give a whole number"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn negative_numbers_are_accepted_where_valid() {
    // c0 = −0.5 is a valid correlation; the curve starts there.
    let (rc, out, err) = quantdepth(&[
        "theory", "curve", "--states", "4", "--c0", "-0.5", "--depth", "1",
    ]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("-0.5000000000"), "{out}");
}

#[test]
fn width_in_scientific_notation_is_a_count() {
    let (rc, out, err) = quantdepth(&[
        "simulate",
        "--backend",
        "cpu",
        "--states",
        "4",
        "--c0",
        "0.5",
        "--width",
        "1e3",
        "--depth",
        "1",
        "--samples",
        "2",
        "--json",
    ]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["meta"]["width"], 1000, "{out}");
    let (rc, _, err) = quantdepth(&[
        "simulate",
        "--backend",
        "cpu",
        "--states",
        "4",
        "--c0",
        "0.5",
        "--width",
        "64.5",
        "--depth",
        "1",
        "--samples",
        "2",
    ]);
    assert_eq!(rc, 2);
    assert!(err.contains("64.5 is not a whole number"), "{err}");
}

/// The weight ensemble changes the results, so `simulate` records it: in
/// `--json`'s meta (default "gaussian") and in the text header.
#[test]
fn simulate_records_the_weight_ensemble() {
    let args = |w: Option<&'static str>, json: bool| {
        let mut a = vec![
            "simulate",
            "--backend",
            "cpu",
            "--states",
            "4",
            "--c0",
            "0.5",
            "--width",
            "64",
            "--depth",
            "1",
            "--samples",
            "2",
        ];
        if let Some(w) = w {
            a.extend(["--weights", w]);
        }
        if json {
            a.push("--json");
        }
        a
    };
    for (w, name) in [(None, "gaussian"), (Some("rademacher"), "rademacher")] {
        let (rc, out, err) = quantdepth(&args(w, true));
        assert_eq!(rc, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["meta"]["weights"], name, "{out}");
    }
    let (rc, out, err) = quantdepth(&args(Some("hadamard"), false));
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("hadamard weights"), "{out}");
}

#[test]
fn gpu_probe_keeps_the_wayland_noise_off_the_terminal() {
    // libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set" when
    // the drivers probe for a display without that variable (CI, servers).
    let (_, _, err) = quantdepth(&[
        "simulate",
        "--backend",
        "gpu",
        "--states",
        "4",
        "--c0",
        "0.5",
        "--width",
        "32",
        "--depth",
        "1",
        "--samples",
        "2",
    ]);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
}

#[test]
fn network_states_overridden_by_the_sweep_is_warned_about() {
    let dir = std::env::temp_dir().join(format!("quantdepth-userpath-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "name = \"w\"\nbackend = \"cpu\"\n[network]\nactivation = \"uniform\"\nstates = 4\nsigma_w = \"opt\"\n\
         width = 16\ndepth = 2\nsamples = 2\n[inputs]\nkind = \"pairs\"\nc0 = [0.5]\n[sweep]\nstates = [3]\n\
         [outputs]\nplots = false\n",
    )
    .unwrap();
    let (rc, _, err) = quantdepth(&["run", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(rc, 0, "{err}");
    assert!(
        err.contains("warning: network.states = 4 is overridden by sweep.states"),
        "{err}"
    );
}

#[test]
fn n2_note_only_when_n2_was_asked() {
    let (_, out, _) = quantdepth(&["theory", "optimal", "--states", "3..5"]);
    assert!(!out.contains("N = 2"), "{out}");
    let (_, out, _) = quantdepth(&["theory", "optimal", "--states", "2..3"]);
    assert!(out.contains("N = 2 (sign)"), "{out}");
}

#[test]
fn optimal_spacing_keeps_seven_significant_figures() {
    // D̃_opt(1024) = 0.008784…: the table printed "0.008785" (4 figures)
    // and at N = 10⁶ two; now 7 significant figures at any size.
    let (rc, out, err) = quantdepth(&["theory", "optimal", "--states", "1024"]);
    assert_eq!(rc, 0, "{err}");
    let row = out.lines().nth(1).unwrap();
    let d = row.split_whitespace().nth(1).unwrap();
    let digits = d
        .trim_start_matches("0.")
        .trim_start_matches('0')
        .split('e')
        .next()
        .unwrap()
        .replace('.', "");
    assert_eq!(digits.len(), 7, "D_opt printed as {d}");
}

#[test]
fn theory_optimal_gives_sigma_w_and_q_star() {
    // σ_w^opt = 2.5286408548 at amplitude 1, spacing D̃_opt (q* = 1), N = 16
    // (the value `theory curve --states 16` prints); with the paper's
    // Figure 1 quantizer (Δ = 2/15, A = 1) σ_w^opt ≈ 1.0058, q* = (Δ/D̃_opt)².
    let (rc, out, err) = quantdepth(&["theory", "optimal", "--states", "16", "--json"]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        (v[0]["sigma_w"].as_f64().unwrap() - 2.5286408548).abs() < 1e-9,
        "{out}"
    );
    assert!(
        (v[0]["q_star"].as_f64().unwrap() - 1.0).abs() < 1e-12,
        "{out}"
    );
    let (_, out, _) = quantdepth(&[
        "theory",
        "optimal",
        "--states",
        "16",
        "--spacing",
        "even",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let d_opt = v[0]["d_opt"].as_f64().unwrap();
    assert!((v[0]["q_star"].as_f64().unwrap() - (2.0 / 15.0 / d_opt).powi(2)).abs() < 1e-12);
    assert!(
        (v[0]["sigma_w"].as_f64().unwrap() - 1.0058).abs() < 1e-4,
        "{out}"
    );
}
