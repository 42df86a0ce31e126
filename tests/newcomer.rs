//! The newcomer's path through the CLI (issue 25): `init` labels L_max as the
//! theory's κ·ξ and gives the input scale for both conventions, `init --json`
//! names the weight std as Python does, `theory curve` takes a list of c⁰,
//! `run --resume` on a complete folder says so, the run table says what its
//! columns are, and the backend note fits on a line.

use std::path::PathBuf;

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

fn temp_root(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("quantdepth-newcomer-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn init_labels_l_max_as_the_theorys_bound_with_a_pointer() {
    // N = 8: ξ = 26.20646, L_max = 6·ξ = 157.2388 (README's theory table: ξ_max(8) = 26.206).
    let (rc, out, err) = quantdepth(&["init", "--bits", "3"]);
    assert_eq!(rc, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("depth")).expect(&out);
    assert!(
        line.contains("L_max = kappa·xi = 157.2388 with kappa = 6"),
        "{line}"
    );
    assert!(line.contains("Schoenholz et al. 2017"), "{line}");
    assert!(line.contains("not a measured trainable depth"), "{line}");
    assert!(
        line.contains("\"Training: trainable depth, measured\""),
        "{line}"
    );
    // The old line promised "L_max = 6 * xi" without a caveat.
    assert!(!out.contains("L_max = 6 * xi"), "{out}");
}

#[test]
fn init_gives_the_input_scale_for_both_conventions() {
    // σ_b = 0.6: q* = 1, so the first Linear layer's std is √(1 − 0.36) = 0.8 / √fan_in,
    // and σ_w there would give q¹ = σ_w² + σ_b² (σ_w = 2.0905766075·√0.64 for N = 8).
    let (rc, out, err) = quantdepth(&["init", "--bits", "3", "--sigma-b", "0.6"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("inputs as pre-activations): scale standardized inputs by 1.0000000000"),
        "{out}"
    );
    assert!(
        out.contains("first Linear layer comes before the first quantizer (standardized inputs): give that layer std 0.8000000000 / sqrt(fan_in), so that q^1 = q*"),
        "{out}"
    );
    let sw2 = 2.0905766075f64.powi(2) * 0.64 + 0.36;
    let shown: f64 = out
        .split("would give q^1 = ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .and_then(|t| t.parse().ok())
        .expect(&out);
    assert!((shown - sw2).abs() < 1e-6, "{shown} vs {sw2}: {out}");
}

#[test]
fn init_json_names_the_weight_std_w_std_and_keeps_sigma_w() {
    let (rc, out, err) = quantdepth(&["init", "--states", "16", "--json"]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // σ_w^opt(16) = 2.5286408548 (README), under both names.
    assert!(
        (v["W_std"].as_f64().unwrap() - 2.5286408548).abs() < 5e-11,
        "{v}"
    );
    assert_eq!(v["W_std"], v["sigma_w"]);
    assert_eq!(v["b_std"], v["sigma_b"]);
    assert_eq!(v["first_layer_W_std"].as_f64(), Some(1.0));
}

#[test]
fn theory_curve_takes_a_list_of_c0_as_simulate_does() {
    // N = 4 at σ_w^opt: c¹ = 0.4444120359 from c⁰ = 0.5 (the one-curve output, same map).
    let (rc, out, err) = quantdepth(&[
        "theory", "curve", "--states", "4", "--c0", "0.5,0.9", "--depth", "2",
    ]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("c (c0=0.5)") && out.contains("c (c0=0.9)"),
        "{out}"
    );
    let row1 = out
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .expect(&out);
    let (rc1, one, _) = quantdepth(&[
        "theory", "curve", "--states", "4", "--c0", "0.9", "--depth", "2",
    ]);
    assert_eq!(rc1, 0);
    let c09 = one
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    let c09 = c09.split_whitespace().nth(2).unwrap();
    let cols: Vec<&str> = row1.split_whitespace().collect();
    assert_eq!(cols[2], "0.4444120359", "{out}");
    assert_eq!(cols[3], c09, "{out}");
    // JSON: one curve per c0.
    let (rc, out, _) = quantdepth(&[
        "theory", "curve", "--states", "4", "--c0", "0.5,0.9", "--depth", "2", "--json",
    ]);
    assert_eq!(rc, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["curves"].as_array().unwrap().len(), 2);
    assert_eq!(v["curves"][1]["c0"], 0.9);
    let (rc, _, err) = quantdepth(&["theory", "curve", "--states", "4", "--c0", "0.5,x"]);
    assert_ne!(rc, 0);
    assert!(
        err.contains("invalid --c0 = 'x': expected a comma-separated list"),
        "{err}"
    );
}

const TINY: &str = r#"
name = "tiny"
seed = 3
backend = "cpu"

[network]
activation = "uniform"
sigma_w = "opt"
width = 128
depth = 16
samples = 6

[inputs]
kind = "pairs"
c0 = [0.6]
pairs = 2

[sweep]
states = [3, 4]

[outputs]
png = false
"#;

#[test]
fn run_table_names_its_columns_and_resume_of_a_complete_folder_says_so() {
    let root = temp_root("resume");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let out_dir = root.join("results");
    let (rc, out, err) = quantdepth(&[
        "run",
        cfg.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{err}");
    let head = out.lines().next().unwrap();
    assert!(
        head.contains(" nets ") && head.contains(" covers "),
        "{head}"
    );
    assert!(!head.contains(" E "), "{head}");
    // Each point's row ends in yes/no before its two z columns.
    for row in out.lines().skip(1).take(2) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let covers = cols[cols.len() - 3];
        assert!(covers == "yes" || covers == "no", "{row}");
    }
    assert!(
        out.contains("covers: whether the 95% CI of xi_emp holds xi_theory"),
        "{out}"
    );
    let folder = std::fs::read_dir(&out_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (rc, out, err) = quantdepth(&["run", "--resume", folder.to_str().unwrap()]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("is complete: all 2 point(s) of its sweep ran; nothing to resume"),
        "{out}"
    );
    // No plan of layers that will not run.
    assert!(!err.contains("plan:"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_backend_note_fits_on_a_line() {
    // Was 247 characters on a machine with only llvmpipe (the wgpu backends tried and the
    // driver's version string); the adapters found are enough.
    let (rc, _, err) = quantdepth(&[
        "simulate",
        "--states",
        "4",
        "--c0",
        "0.5",
        "--width",
        "16",
        "--depth",
        "2",
        "--samples",
        "2",
    ]);
    assert_eq!(rc, 0, "{err}");
    let note = err
        .lines()
        .find(|l| l.starts_with("backend auto"))
        .expect(&err);
    assert!(
        note.chars().count() <= 120,
        "{} chars: {note}",
        note.chars().count()
    );
}
