//! Training end to end: a tiny `kind = "training"` config on a synthetic
//! MNIST-format folder the test writes itself, and config errors.

mod common;
use common::data::write_dataset;
use quantdepth::experiment::{run_experiment, Config, Hooks};
use quantdepth::sim::cpu::CpuBackend;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("quantdepth-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn hooks_run(cfg: &Config, root: &Path) -> quantdepth::experiment::RunReport {
    let cancel = AtomicBool::new(false);
    let hooks = Hooks {
        point_started: &|_, _, _, _| {},
        layers: &|_| {},
        point_finished: &|_| {},
        cancel: &cancel,
    };
    run_experiment(cfg, root, &mut CpuBackend, "backend cpu", &hooks).unwrap()
}

#[test]
fn tiny_training_config_writes_training_csv_and_summary() {
    let base = temp("e2e");
    let data = base.join("data");
    write_dataset(&data, 640, 200);
    let cfg = Config::from_toml(&format!(
        r#"
name = "tiny-training"
kind = "training"
seed = 3
backend = "cpu"

[training]
data = "{}"
states = [2, 3, 4]
depth = [2, 3, 6]
width = 32
lr = [0.05]
batch = 16
steps = [20, 40]
report_at = [10]
seeds = 2
eval_train = 200

[outputs]
png = true
"#,
        data.display()
    ))
    .unwrap();
    let report = hooks_run(&cfg, &base.join("results"));
    assert!(report.complete);
    let f = &report.folder;
    let csv = std::fs::read_to_string(f.join("training.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in [
        "states",
        "depth",
        "width",
        "sigma_w",
        "seed",
        "step",
        "train_acc",
        "test_acc",
        "loss",
        "xi",
        "depth_over_xi",
    ] {
        assert!(
            header.contains(&col),
            "training.csv lacks {col}: {header:?}"
        );
    }
    // 3 N × 3 depths × 2 seeds networks, each reported at steps 10, 20, 40.
    assert_eq!(lines.clone().count(), 3 * 3 * 2 * 3);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for l in lines {
        let v: Vec<&str> = l.split(',').collect();
        let acc: f64 = v[col("test_acc")].parse().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{l}");
        let ratio: f64 = v[col("depth_over_xi")].parse().unwrap();
        let (d, xi): (f64, f64) = (
            v[col("depth")].parse().unwrap(),
            v[col("xi")].parse().unwrap(),
        );
        assert!((ratio - d / xi).abs() < 1e-9 * ratio, "{l}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.join("summary.json")).unwrap()).unwrap();
    let tds = s["trainable_depth"].as_array().unwrap();
    // One entry per N and training length.
    assert_eq!(tds.len(), 3 * 2);
    for t in tds {
        for k in [
            "states",
            "steps",
            "lr",
            "xi",
            "l_emp",
            "l_emp_ci",
            "l_emp_over_xi",
            "test_acc",
        ] {
            assert!(t.get(k).is_some(), "trainable_depth lacks {k}: {t}");
        }
    }
    assert!(s["slopes"].is_array());
    assert!(s["settling"].is_array());
    assert!(s["verdict_rule"].as_str().unwrap().contains("not ∝ ξ"));
    for t in tds {
        for k in [
            "halfway_test",
            "halfway_train",
            "above_chance_test",
            "train_acc",
        ] {
            assert!(t.get(k).is_some(), "trainable_depth lacks {k}: {t}");
        }
    }
    assert!(s["throughput"]["mac_per_s"].as_f64().unwrap() > 0.0);
    // The shallow network learns this easy problem: after 40 steps it is far
    // above chance (0.1) for every N (a broken step stays at ~0.1).
    for t in tds.iter().filter(|t| t["steps"] == 40) {
        let acc = t["test_acc"][0].as_f64().unwrap();
        assert!(
            acc > 0.5,
            "N = {}: depth-2 test accuracy {acc}",
            t["states"]
        );
    }
    for p in ["heatmap-0.svg", "heatmap-0.png", "collapse-0.svg"] {
        assert!(f.join("plots").join(p).is_file(), "missing plot {p}");
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "complete");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn training_config_errors_name_the_key() {
    let bad = |body: &str, want: &str| {
        let text = format!("name = \"t\"\nkind = \"training\"\n{body}");
        let e = Config::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains(want), "expected «{want}» in «{e}»");
    };
    bad("", "[training]");
    bad("[training]\nstates = [3]\nwidth = 8\n", "training.depth");
    bad(
        "[training]\nstates = [1]\ndepth = [4]\nwidth = 8\n",
        "training.states",
    );
    bad(
        "[training]\nstates = [3]\ndepth = [1]\nwidth = 8\n",
        "training.depth",
    );
    bad(
        "[training]\nstates = [3]\ndepth = [4]\nwidth = 8\nlr = [-1.0]\n",
        "training.lr",
    );
    bad(
        "[training]\nstates = [3]\ndepth = [4]\nwidth = 8\nsteps = [10]\nepochs = [1.0]\n",
        "training.steps",
    );
    bad(
        "[training]\nstates = [3]\ndepth = [4]\nwidth = 8\nbogus = 1\n",
        "bogus",
    );
}

/// `quantdepth run` takes a training config (no `[network]` section): the
/// command line's sweep check must not ask for `network.states`.
#[test]
fn run_command_trains_from_a_training_config() {
    let base = temp("cli");
    let data = base.join("data");
    write_dataset(&data, 128, 64);
    let config = base.join("train.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"cli-training\"\nkind = \"training\"\nseed = 1\nbackend = \"cpu\"\n\n\
             [training]\ndata = \"{}\"\nstates = [2]\ndepth = [2]\nwidth = 16\nlr = [0.05]\n\
             batch = 16\nsteps = [4]\nseeds = 1\neval_train = 64\neval_test = 64\n",
            data.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quantdepth"))
        .args(["run", config.to_str().unwrap(), "--out"])
        .arg(base.join("results"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let folder = std::fs::read_dir(base.join("results"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let csv = std::fs::read_to_string(folder.join("training.csv")).unwrap();
    assert!(csv.lines().count() >= 2, "{csv}");
    let _ = std::fs::remove_dir_all(&base);
}

/// `report_at = [0, …]` (the authors' protocol reports at step 0): every
/// report is kept. 2 depths × 1 seed networks, reported at steps 0 (before
/// training), 5 and 10: 6 rows (before the fix the step-0 entry blocked every
/// later report and training.csv had none). The step-0 network is untrained:
/// its test accuracy on this 10-class problem is far below the trained one's.
#[test]
fn report_at_zero_keeps_every_report() {
    let base = temp("report0");
    let data = base.join("data");
    write_dataset(&data, 320, 100);
    let cfg = Config::from_toml(&format!(
        "name = \"r0\"\nkind = \"training\"\nseed = 1\nbackend = \"cpu\"\n\n\
         [training]\ndata = \"{}\"\nstates = [3]\ndepth = [2, 3]\nwidth = 16\nlr = [0.05]\n\
         batch = 16\nsteps = [10]\nreport_at = [0, 5]\neval_train = 100\n\n[outputs]\nplots = false\n",
        data.display()
    ))
    .unwrap();
    let report = hooks_run(&cfg, &base.join("results"));
    let csv = std::fs::read_to_string(report.folder.join("training.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let steps: Vec<usize> = lines
        .map(|l| l.split(',').nth(col("step")).unwrap().parse().unwrap())
        .collect();
    assert_eq!(steps, vec![0, 5, 10, 0, 5, 10], "{csv}");
    // A report step past the longest training length is refused, not dropped.
    let cfg = Config::from_toml(&format!(
        "name = \"r0\"\nkind = \"training\"\nseed = 1\nbackend = \"cpu\"\n\n\
         [training]\ndata = \"{}\"\nstates = [3]\ndepth = [2]\nwidth = 16\nlr = [0.05]\n\
         batch = 16\nsteps = [10]\nreport_at = [0, 50]\neval_train = 100\n",
        data.display()
    ))
    .unwrap();
    let cancel = AtomicBool::new(false);
    let hooks = Hooks {
        point_started: &|_, _, _, _| {},
        layers: &|_| {},
        point_finished: &|_| {},
        cancel: &cancel,
    };
    let e = run_experiment(&cfg, &base.join("r2"), &mut CpuBackend, "cpu", &hooks)
        .unwrap_err()
        .to_string();
    assert!(e.contains("training.report_at") && e.contains("50"), "{e}");
    let _ = std::fs::remove_dir_all(&base);
}

/// Ties in the largest logit are broken at random in expectation: a network
/// whose quantized logits are all equal (zero weights) credits every input
/// 1/10, so 20 inputs score 2.0 correct and 20 ties, whatever the labels (before,
/// ties went to class 0: these labels, none 0, scored 0).
#[test]
fn accuracy_breaks_ties_at_random_and_counts_them() {
    use quantdepth::train::cpu::Trainer;
    use quantdepth::train::model::{ModelSpec, Params, Phi};
    let spec = ModelSpec {
        input_dim: 4,
        width: 8,
        depth: 3,
        classes: 10,
        phi: Phi::Uniform {
            states: 3,
            spacing: 1.0,
            amplitude: 1.0,
        },
        ste_slope: 1.0,
        ste_threshold: 1.0,
        sigma_w: 1.0,
        sigma_b: 0.0,
        quantize_logits: true,
    };
    let mut t = Trainer::new(&spec, Params::<f32>::zeros(&spec));
    let x = vec![0.5f32; 4 * 20];
    let labels: Vec<u8> = (0..20).map(|i| 1 + (i % 9) as u8).collect();
    let r = t.evaluate(&x, &labels);
    assert!((r.correct - 2.0).abs() < 1e-12, "{}", r.correct);
    assert_eq!(r.ties, 20);
    // A single largest logit: no tie, full credit when it is the label.
    let mut b = quantdepth::train::cpu::BatchLoss::default();
    b.count(1, true);
    b.count(4, true);
    b.count(4, false);
    assert_eq!(b.ties, 2);
    assert!((b.correct - 1.25).abs() < 1e-12);
}

#[test]
fn input_sigma_is_validated_and_scales_the_first_layer() {
    let bad = |v: &str| {
        let text = format!(
            "name = \"t\"\nkind = \"training\"\n[training]\nstates = [3]\ndepth = [4]\nwidth = 8\ninput_sigma = {v}\n"
        );
        let e = Config::from_toml(&text).unwrap_err().to_string();
        assert!(
            e.contains("training.input_sigma") && e.contains("q_star"),
            "{v}: {e}"
        );
    };
    bad("-1.0");
    bad("0.0");
    bad("\"qstar\"");
    use quantdepth::experiment::training::{plan, InputSigma};
    let cfg = |v: &str| {
        Config::from_toml(&format!(
            "name = \"t\"\nkind = \"training\"\n[training]\nstates = [4]\ndepth = [3]\nwidth = 8\n{v}\n"
        ))
        .unwrap()
    };
    assert_eq!(plan(&cfg("")).unwrap().input_sigma, InputSigma::SigmaW);
    // "q_star" in the theory preset: q* = 1, so W₁'s scale is 1 where σ_w^opt(N = 4) ≈ 1.59;
    // the first layer's weights shrink by exactly 1/σ_w, the others stay.
    for (v, want) in [
        ("input_sigma = \"q_star\"", None),
        ("input_sigma = 0.5", Some(0.5)),
    ] {
        let p = plan(&cfg(v)).unwrap();
        let pt = &p.points[0];
        let (init, depth, _) = p.resolve(pt).unwrap();
        let spec = p.model(pt, &init, depth, 784);
        let base = quantdepth::train::model::Params::init(&spec, 7);
        let got = p.params(&spec, &init, 7);
        let s = want.unwrap_or(init.q_star.sqrt());
        assert!(init.sigma_w > 1.5, "σ_w = {}", init.sigma_w);
        let ratio = got.weights[0][5] / base.weights[0][5];
        assert!(
            (ratio as f64 - s / init.sigma_w).abs() < 1e-6,
            "{v}: {ratio}"
        );
        assert_eq!(got.weights[1], base.weights[1]);
    }
}
