//! Experiments from configs: a tiny run end to end, an interrupted run, and
//! config errors that name the key and the problem.

use quantdepth::experiment::{run_experiment, Config, Hooks};
use quantdepth::sim::cpu::CpuBackend;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

const TINY: &str = r#"
name = "tiny"
seed = 2
backend = "cpu"

[network]
activation = "uniform"
sigma_w = "opt"
width = 256
depth = 8
samples = 6

[inputs]
kind = "pairs"
c0 = [0.5, 0.9]
pairs = 2

[sweep]
states = [2, 4, 8]
sigma_b = [0.0]

[outputs]
png = false
"#;

fn temp_root(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("quantdepth-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(cfg: &Config, root: &Path, stop_after_first: bool) -> quantdepth::experiment::RunReport {
    let cancel = AtomicBool::new(false);
    let finished = |_: &quantdepth::experiment::runner::PointSummary| {
        if stop_after_first {
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let hooks = Hooks {
        point_started: &|_, _, _, _| {},
        layers: &|_| {},
        point_finished: &finished,
        cancel: &cancel,
    };
    run_experiment(cfg, root, &mut CpuBackend, "backend cpu", &hooks).unwrap()
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn tiny_config_writes_a_complete_results_folder() {
    let cfg = Config::from_toml(TINY).unwrap();
    let root = temp_root("tiny");
    let report = run(&cfg, &root, false);
    assert!(report.complete);
    let f = &report.folder;
    for file in [
        "config.toml",
        "meta.json",
        "curves.csv",
        "curves.json",
        "summary.json",
        "plots/point000-correlation.svg",
    ] {
        assert!(f.join(file).is_file(), "missing {file}");
    }
    // The config as run parses back to the same experiment.
    let again =
        Config::from_toml(&std::fs::read_to_string(f.join("config.toml")).unwrap()).unwrap();
    assert_eq!(again.points().unwrap(), cfg.points().unwrap());
    let meta = read_json(&f.join("meta.json"));
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["complete"], true);
    assert_eq!(meta["points_done"], 3);
    assert_eq!(meta["backend"], "cpu");
    assert_eq!(meta["seed"], 2);
    // curves.csv: the columns, one row per (point, c0, layer), theory and
    // simulation both present and within 5 SE + 0.05 (width 256, 8 layers).
    let csv = std::fs::read_to_string(f.join("curves.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in [
        "point", "states", "c0", "layer", "q_mean", "q_se", "q_theory", "c_mean", "c_se",
        "c_theory",
    ] {
        assert!(
            header.contains(&col),
            "column {col} missing from {header:?}"
        );
    }
    let idx = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3 * 2 * 9);
    for r in &rows {
        let num = |name: &str| r[idx(name)].parse::<f64>().unwrap();
        let (m, t) = (num("c_mean"), num("c_theory"));
        let se = if r[idx("c_se")].is_empty() {
            0.0
        } else {
            num("c_se")
        };
        assert!(
            (m - t).abs() <= 5.0 * se + 0.05,
            "row {r:?}: ĉ {m} vs theory {t}"
        );
    }
    let summary = read_json(&f.join("summary.json"));
    let pts = summary["points"].as_array().unwrap();
    assert_eq!(pts.len(), 3);
    for p in pts {
        assert!(p["xi_theory"].as_f64().unwrap() > 0.0);
        assert!(p["agreement_c"]["rms_z"].as_f64().unwrap().is_finite());
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn interrupted_run_keeps_finished_points_and_is_marked_incomplete() {
    let cfg = Config::from_toml(TINY).unwrap();
    let root = temp_root("interrupt");
    let report = run(&cfg, &root, true);
    assert!(!report.complete);
    assert_eq!(report.points.len(), 1);
    let f = &report.folder;
    let meta = read_json(&f.join("meta.json"));
    assert_eq!(meta["status"], "interrupted");
    assert_eq!(meta["complete"], false);
    assert_eq!(meta["points_done"], 1);
    assert_eq!(meta["points_total"], 3);
    let summary = read_json(&f.join("summary.json"));
    assert_eq!(summary["points"].as_array().unwrap().len(), 1);
    let csv = std::fs::read_to_string(f.join("curves.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 2 * 9,
        "only the finished point's rows"
    );
    assert!(csv.lines().skip(1).all(|l| l.starts_with("0,")));
    // No temporary files are left behind.
    for e in std::fs::read_dir(f).unwrap() {
        assert!(!e.unwrap().file_name().to_string_lossy().ends_with(".tmp"));
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn config_error(toml: &str) -> String {
    Config::from_toml(toml).unwrap_err().to_string()
}

#[test]
fn config_errors_name_the_key_and_the_problem() {
    let base = "name = \"t\"\n[network]\nwidth = 64\ndepth = 3\nstates = 4\n";
    let unknown = config_error(&format!("{base}widht = 3\n"));
    assert!(
        unknown.contains("widht") && unknown.contains("line 6"),
        "{unknown}"
    );
    let wrong_type =
        config_error("name = \"t\"\n[network]\nwidth = \"wide\"\ndepth = 3\nstates = 4\n");
    assert!(
        wrong_type.contains("width") && wrong_type.contains("line 3"),
        "{wrong_type}"
    );
    let n1 = config_error("name = \"t\"\n[network]\nwidth = 64\ndepth = 3\nstates = 1\n");
    assert!(
        n1.contains("network.states") && n1.contains("at least 2"),
        "{n1}"
    );
    let negative = config_error("name = \"t\"\n[network]\nwidth = -5\ndepth = 3\nstates = 4\n");
    assert!(
        negative.contains("width") && negative.contains("-5"),
        "{negative}"
    );
    let optt = config_error(&format!("{base}sigma_w = \"optt\"\n"));
    assert!(
        optt.contains("network.sigma_w") && optt.contains("\"optt\"") && optt.contains("opt+"),
        "{optt}"
    );
    let range = config_error(
        "name = \"t\"\n[network]\nwidth = 64\ndepth = 3\n[sweep]\nstates = \"8..2\"\n",
    );
    assert!(
        range.contains("sweep.states") && range.contains("empty"),
        "{range}"
    );
    let sweep_width = config_error(&format!("{base}[sweep]\nwidth = [64, 1]\n"));
    assert!(
        sweep_width.contains("sweep.width = 1") && sweep_width.contains("at least 2"),
        "{sweep_width}"
    );
    let depth0 = config_error("name = \"t\"\n[network]\nwidth = 64\ndepth = 0\nstates = 4\n");
    assert!(
        depth0.contains("network.depth = 0") && depth0.contains("at least 1"),
        "{depth0}"
    );
    let c0 = config_error(&format!("{base}[inputs]\nc0 = [1.5]\n"));
    assert!(c0.contains("inputs.c0") && c0.contains("[-1, 1]"), "{c0}");
}

#[test]
fn backward_section_writes_gradient_curves() {
    let cfg = Config::from_toml(
        r#"
name = "grad"
seed = 4
backend = "cpu"
[network]
states = 4
width = 512
depth = 6
samples = 6
[inputs]
c0 = [0.5]
pairs = 3
[backward]
ste_threshold = 1.0
m = [1.0, 1.2]
[outputs]
png = false
"#,
    )
    .unwrap();
    let root = temp_root("backward");
    let report = run(&cfg, &root, false);
    assert!(report.complete);
    let csv = std::fs::read_to_string(report.folder.join("backward.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let idx = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("column {name} missing"))
    };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 7, "two targets × layers 0..=6");
    // Per-layer gradient-norm ratio within 5 SE + 0.05 of M (width 512).
    for r in rows
        .iter()
        .filter(|r| !r[idx("norm_ratio_mean")].is_empty())
    {
        let num = |c: &str| r[idx(c)].parse::<f64>().unwrap();
        let (m, se, t) = (
            num("norm_ratio_mean"),
            num("norm_ratio_se"),
            num("norm_ratio_theory"),
        );
        assert!((m - t).abs() <= 5.0 * se + 0.05, "row {r:?}");
        assert!(
            (t - num("m_target")).abs() < 1e-9,
            "theory ratio equals the target M at q* = q0"
        );
    }
    assert!(report
        .folder
        .join("plots/point000-gradient-norm.svg")
        .is_file());
    let summary = read_json(&report.folder.join("summary.json"));
    assert_eq!(
        summary["points"][0]["backward"].as_array().unwrap().len(),
        2
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn every_shipped_config_parses_and_expands() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with('#'),
            "{} must open with a comment saying what it reproduces",
            path.display()
        );
        let cfg = Config::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match cfg.kind {
            quantdepth::experiment::config::Kind::Optimal => {
                assert!(cfg.optimal_states().unwrap().len() >= 3)
            }
            quantdepth::experiment::config::Kind::Training => {
                assert!(!quantdepth::experiment::training::plan(&cfg)
                    .unwrap()
                    .points
                    .is_empty())
            }
            _ => assert!(!cfg.points().unwrap().is_empty()),
        }
        seen += 1;
    }
    assert!(seen >= 6, "expected the shipped configs, found {seen}");
}
