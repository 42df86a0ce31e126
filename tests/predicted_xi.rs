//! The predicted ξ_emp of an experiment (analysis::predicted): what the
//! finite-width theory says a width-n run's fit measures, against the CPU
//! simulator's own fits.

use quantdepth::analysis::fit_depth_scale_networks;
use quantdepth::analysis::predicted::{predict_xi_emp, Experiment, XiPrediction};
use quantdepth::setup::{NetworkChoice, ResolvedNetwork};
use quantdepth::sim::{self, cpu::CpuBackend, Control, Inputs, SimSpec};
use quantdepth::theory::finite_width::expand;
use std::sync::atomic::AtomicBool;

fn network(states: usize) -> (ResolvedNetwork, f64) {
    let r = NetworkChoice::uniform(states).resolve().unwrap();
    let c_star = r.network.c_star(r.q_star).unwrap();
    let xi = r.network.depth_scale(r.q_star, c_star);
    (r, xi)
}

fn predict(r: &ResolvedNetwork, xi: f64, c0: f64, depth: usize, exp: Experiment) -> XiPrediction {
    predict_xi_emp(&expand(&r.network, r.q0, c0, depth).unwrap(), xi, &exp).unwrap()
}

/// Where the infinite-width ξ is NOT what the fit measures, the prediction
/// is: N = 4 at σ_w^opt, c⁰ = 0.95 (the quickstart's curve), width 256,
/// 128 networks × 16 pairs, depth 32 (4ξ). The window starts in the
/// transient (+2.2 % on ξ) while the interval's half-width is ≈ 3 %, so
/// the 95 % interval should cover ξ only ≈ 78 % of the time (the Monte
/// Carlo of the fit says 77.5 %) and the predicted ξ_emp ≈ 95 % of the time
/// (94.8 %).
///
/// 100 fixed seeds: a 95 % coverage gives Binomial(100, 0.95), SD 2.2, so
/// 90..=99 is a −2.3/+1.8 SD band; 78 % coverage gives SD 4.2, and ≤ 88
/// covers of ξ is its +2.4 SD bound — a prediction no better than ξ itself
/// (covering ≈ 78 %) fails the first, and an infinite-width theory that
/// needed no correction fails the second. (Measured when written: ξ 76/100,
/// predicted 96/100; the experiments' mean slope as a depth scale 8.077
/// against the predicted 8.065.)
#[test]
fn interval_covers_the_predicted_xi_emp_where_it_misses_xi() {
    let (r, xi) = network(4);
    let (width, networks, pairs, depth, c0) = (256, 128, 16, 32, 0.95);
    let pred = predict(
        &r,
        xi,
        c0,
        depth,
        Experiment {
            width,
            pairs,
            networks,
            replicates: 1000,
            seed: 5,
        },
    );
    let c_star = r.network.c_star(r.q_star).unwrap();
    let cancel = AtomicBool::new(false);
    let ctl = Control {
        progress: &|_| {},
        cancel: &cancel,
    };
    let seeds = 100;
    let (mut covers_xi, mut covers_pred) = (0, 0);
    let mut mean_fit = 0.0;
    for seed in 1..=seeds {
        let spec = SimSpec::of_network(
            &r,
            width,
            depth,
            networks,
            5000 + seed,
            Inputs::Pairs {
                c0: vec![c0],
                pairs,
            },
        );
        let out = sim::simulate(&mut CpuBackend, &spec, &ctl).unwrap();
        let f = fit_depth_scale_networks(&out.stats.pairs[0].c_per_network, c_star).unwrap();
        mean_fit += -1.0 / f.xi / seeds as f64;
        covers_xi += usize::from(f.ci_low <= xi && xi <= f.ci_high);
        covers_pred += usize::from(f.ci_low <= pred.xi_pred && pred.xi_pred <= f.ci_high);
    }
    eprintln!(
        "xi {xi:.4}: covered {covers_xi}/{seeds} (Monte Carlo {:.3}); predicted xi_emp {:.4} \
         (transient {:.4}, + 1/n mean {:.4}): covered {covers_pred}/{seeds} (Monte Carlo {:.3}); \
         -1/mean slope of the {seeds} simulated experiments {:.4}",
        pred.mc_covers_theory,
        pred.xi_pred,
        pred.xi_transient,
        pred.xi_mean,
        pred.mc_covers_pred,
        -1.0 / mean_fit
    );
    assert!(
        (90..=99).contains(&covers_pred),
        "the 95% interval covered the predicted xi_emp {:.4} in {covers_pred}/{seeds} seeds: expected 90..=99",
        pred.xi_pred
    );
    assert!(
        covers_xi <= 88,
        "the 95% interval covered xi = {xi:.4} in {covers_xi}/{seeds} seeds: the transient \
         predicts about 78 (<= 88 at +2.4 SD)"
    );
    // The experiments' own mean slope, as a depth scale, against the
    // prediction: the slope's SD over experiments is ≈ xi_sd/ξ² in slope
    // units, so the mean of 100 has SE ≈ xi_sd/10 in ξ; 4.5 SE (with the
    // prediction's own Monte Carlo SE added).
    let se = (pred.xi_sd.powi(2) / seeds as f64 + pred.xi_pred_se.powi(2)).sqrt();
    let z = (-1.0 / mean_fit - pred.xi_pred) / se;
    assert!(
        z.abs() < 4.5,
        "mean fitted xi off the prediction by {z:.2} SE"
    );
}

/// The parts of the prediction and its refusals: at a huge width the 1/n
/// mean vanishes (ξ_mean equals ξ_transient to 1e-4 of ξ) while the
/// transient stays (ξ_transient > ξ: at c⁰ = 0.95 for N = 4 the window
/// starts where |c^l − c*| still shrinks more slowly than χ^l, the
/// quickstart's +2.2 %); one seed gives the same bits twice; fewer than 3
/// networks (no jackknife) and a Monte Carlo of more than 1500 layers are
/// refused.
#[test]
fn parts_and_refusals() {
    let (r, xi) = network(4);
    let exp = |width, networks| Experiment {
        width,
        pairs: 16,
        networks,
        replicates: 50,
        seed: 9,
    };
    let huge = predict(&r, xi, 0.95, 32, exp(100_000_000, 64));
    assert!(
        ((huge.xi_mean - huge.xi_transient) / xi).abs() < 1e-4,
        "{huge:?}"
    );
    assert!(huge.xi_transient > xi, "{huge:?}");
    let a = predict(&r, xi, 0.95, 32, exp(256, 32));
    let b = predict(&r, xi, 0.95, 32, exp(256, 32));
    assert_eq!(a, b);
    let e = predict_xi_emp(
        &expand(&r.network, r.q0, 0.95, 32).unwrap(),
        xi,
        &exp(256, 2),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("at least 3 networks"), "{e}");
    // A window of thousands of layers (N = 32 at a width where the noise
    // floor is far away) is refused, not drawn as an L × L covariance.
    let (r32, xi32) = network(32);
    let deep = expand(&r32.network, r32.q0, 0.6, 3000).unwrap();
    let e = predict_xi_emp(&deep, xi32, &exp(100_000_000, 8))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 1500"), "{e} (xi = {xi32})");
}

/// A run beside the 1/n theory (experiment::finite_width): N = 16 at
/// σ_w^opt, c⁰ = 0.9, widths 256 and 512, 256 networks × 8 pairs, 24
/// layers — a setting where the infinite-width means miss (the 1/n shift
/// of ĉ is several SE of a 256-network mean). Per layer z = (mean ĉ −
/// E ĉ)/SE over the layers where the expansion is not flagged: the mean z²
/// against the corrected means is ≤ 2.5 at both widths (χ²₁ has mean 1;
/// the layers are correlated, so a mean of 10–24 of them is bounded
/// loosely), while against the infinite-width means it is ≥ 5 at n = 512,
/// where no layer is flagged. (Measured when written: corrected 1.93 over
/// the 10 unflagged layers at n = 256 and 0.40 over 24 at n = 512;
/// infinite width 3.4 and 14.9.) The plots of the group are drawn.
#[test]
fn a_run_compares_each_curve_with_the_one_over_n_theory() {
    use quantdepth::experiment::{run_experiment, Config, Hooks};
    let root = std::env::temp_dir().join(format!("quantdepth-fw-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let cfg = Config::from_toml(
        r#"name = "fw"
seed = 1
backend = "cpu"
[network]
activation = "uniform"
sigma_w = "opt"
sigma_b = 0.0
depth = 24
samples = 256
[inputs]
kind = "pairs"
c0 = [0.9]
pairs = 8
[sweep]
states = [16]
width = [256, 512]
[outputs]
png = false
"#,
    )
    .unwrap();
    let cancel = AtomicBool::new(false);
    let hooks = Hooks {
        point_started: &|_, _, _, _| {},
        layers: &|_| {},
        point_finished: &|_| {},
        cancel: &cancel,
    };
    let r = run_experiment(&cfg, &root, &mut CpuBackend, "", &hooks).unwrap();
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.folder.join("summary.json")).unwrap())
            .unwrap();
    let curve = |i: usize| s["points"][i]["finite_width"][0].clone();
    for i in 0..2 {
        let c = curve(i);
        let (zc, zi) = (
            c["mean_z2_corrected"].as_f64().unwrap(),
            c["mean_z2_infinite"].as_f64().unwrap(),
        );
        eprintln!(
            "point {i}: mean z² corrected {zc:.3}, infinite width {zi:.3}, over {} layers",
            c["layers_scored"]
        );
        assert!(c["layers_scored"].as_u64().unwrap() >= 8, "{c}");
        assert!(
            zc <= 2.5,
            "point {i}: mean z² against the corrected means {zc}"
        );
    }
    let zi = curve(1)["mean_z2_infinite"].as_f64().unwrap();
    assert!(
        zi >= 5.0,
        "n = 512: mean z² against infinite width only {zi}"
    );
    assert!(r.table.contains("finite width: mean z²"), "{}", r.table);
    for f in ["finite-width-mean-0.svg", "finite-width-var-0.svg"] {
        assert!(r.folder.join("plots").join(f).is_file(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// `theory finite-width --networks E` prints the predicted ξ_emp of that
/// experiment: at the setting of the coverage test above, 8.065 (the
/// Monte Carlo's own SE is 0.004, so ±0.02 is 5 SE) with the 76 % coverage
/// of ξ; JSON carries the same under `xi_emp_predicted`; 2 networks are
/// refused with the reason.
#[test]
fn command_line_predicts_the_xi_emp_of_an_experiment() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "theory",
            "finite-width",
            "--states",
            "4",
            "--c0",
            "0.95",
            "--depth",
            "32",
            "--width",
            "256",
            "--pairs",
            "16",
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_quantdepth"))
            .args(&args)
            .output()
            .unwrap()
    };
    let out = run(&["--networks", "128"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("# predicted xi_emp of 128 networks x 16 pair(s)"))
        .unwrap_or_else(|| panic!("{text}"));
    let value: f64 = line
        .split("): ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((value - 8.065).abs() < 0.02, "{line}");
    let out = run(&["--networks", "128", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["widths"][0]["xi_emp_predicted"];
    assert!((p["xi_pred"].as_f64().unwrap() - value).abs() < 1e-3, "{p}");
    let out = run(&["--networks", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--networks") && err.contains("needs at least 3"),
        "{err}"
    );
}
