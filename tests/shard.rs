//! Sharded runs and `merge` without a scheduler: shards run one after the
//! other through the library, merged, and compared with an unsharded run
//! file by file; and every refusal of `merge` (other config, other version,
//! a point twice, nothing given, points missing) through the CLI, with its
//! message. The same path on a real Slurm is tests/slurm.rs.

use quantdepth::experiment::merge::merge;
use quantdepth::experiment::runner::{resume_experiment, run_shard};
use quantdepth::experiment::shard::Shard;
use quantdepth::experiment::{run_experiment, Config, Hooks};
use quantdepth::sim::cpu::CpuBackend;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// Five points (N = 2..6: enough for a ξ_emp(N) fit), with backward passes so backward.csv
/// and the gradient plots are merged too.
const SWEEP: &str = r#"
name = "shards"
seed = 5
backend = "cpu"

[network]
activation = "uniform"
sigma_w = "opt"
width = 128
depth = 24
samples = 8

[inputs]
kind = "pairs"
c0 = [0.5, 0.9]
pairs = 2

[sweep]
states = [2, 3, 4, 5, 6]

[backward]
m = [1.0]

[outputs]
png = false
"#;

fn temp_root(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("quantdepth-shard-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn hooks(cancel: &AtomicBool) -> Hooks<'_> {
    Hooks {
        point_started: &|_, _, _, _| {},
        layers: &|_| {},
        point_finished: &|_| {},
        cancel,
    }
}

/// Files that must be byte-equal, and summary.json without its timings.
fn assert_same_results(merged: &Path, plain: &Path) {
    for f in ["config.toml", "curves.csv", "curves.json", "backward.csv"] {
        assert!(
            std::fs::read(merged.join(f)).unwrap() == std::fs::read(plain.join(f)).unwrap(),
            "{f} of the merged folder differs from the unsharded run's"
        );
    }
    let strip = |p: &Path| {
        let text = std::fs::read_to_string(p.join("summary.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for p in v["points"].as_array_mut().unwrap() {
            p.as_object_mut().unwrap().remove("wall_seconds");
        }
        v
    };
    assert_eq!(
        strip(merged),
        strip(plain),
        "summary.json differs beyond timings"
    );
    let list = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(p.join("plots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let plots = list(plain);
    for want in ["xi-scaling-0.svg", "point004-gradient-norm.svg"] {
        assert!(plots.iter().any(|p| p == want), "no {want} in {plots:?}");
    }
    assert_eq!(list(merged), plots);
    for p in &plots {
        assert!(
            std::fs::read(merged.join("plots").join(p)).unwrap()
                == std::fs::read(plain.join("plots").join(p)).unwrap(),
            "plots/{p} differs"
        );
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["points"], serde_json::json!([0, 1, 2, 3, 4]));
}

fn quantdepth(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quantdepth"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shards_merge_to_the_unsharded_folder_and_bad_sets_are_refused() {
    let root = temp_root("merge");
    let cfg = Config::from_toml(SWEEP).unwrap();
    let cancel = AtomicBool::new(false);
    let plain = run_experiment(
        &cfg,
        &root.join("plain"),
        &mut CpuBackend,
        "cpu",
        &hooks(&cancel),
    )
    .unwrap()
    .folder;

    // Shard 1 of 2 is interrupted after its first point, then resumed: it
    // runs only its own missing points.
    let shards = root.join("shards");
    let s0 = run_shard(
        &cfg,
        &shards,
        Shard::new(0, 2, "t").unwrap(),
        &mut CpuBackend,
        "cpu",
        &hooks(&cancel),
    )
    .unwrap();
    assert!(s0.complete);
    let stop = AtomicBool::new(false);
    let stop_after_one = Hooks {
        point_started: &|_, _, _, _| {},
        layers: &|_| {},
        point_finished: &|_| stop.store(true, Ordering::SeqCst),
        cancel: &stop,
    };
    let s1 = run_shard(
        &cfg,
        &shards,
        Shard::new(1, 2, "t").unwrap(),
        &mut CpuBackend,
        "cpu",
        &stop_after_one,
    )
    .unwrap();
    assert!(!s1.complete);
    assert_eq!(s1.points.len(), 1);
    let s0_points: Vec<usize> = s0.points.iter().map(|p| p.index).collect();
    // Equal costs, longest first: points 0, 2, 4 → shard 0; 1, 3 → shard 1.
    assert_eq!(s0_points, vec![0, 2, 4]);

    let (a, b) = (s0.folder.clone(), s1.folder.clone());
    let (sa, sb) = (a.to_str().unwrap(), b.to_str().unwrap());
    let out = root.join("merged");
    let so = out.to_str().unwrap();
    let (ok, err) = quantdepth(&["merge", so, sa, sb]);
    assert!(!ok);
    assert!(
        err.contains("1 of the sweep's 5 points is missing")
            && err.contains(":\n  point 3 (shard 1/2 should have them)")
            && err.contains("is interrupted, holds 1 of its 2 points")
            && err.contains(&format!("quantdepth run --resume {sb}")),
        "{err}"
    );
    assert!(!out.exists(), "a refused merge left {so}");
    let resumed = resume_experiment(&b, &mut CpuBackend, "cpu", &hooks(&cancel)).unwrap();
    assert!(resumed.complete);
    let idx: Vec<usize> = resumed.points.iter().map(|p| p.index).collect();
    assert_eq!(
        idx,
        vec![1, 3],
        "the resumed shard ran points outside its shard"
    );

    // Refusals, each with its message.
    let (ok, err) = quantdepth(&["merge", so]);
    assert!(!ok && err.contains("nothing to merge"), "{err}");
    let (ok, err) = quantdepth(&["merge", so, sa, sb, plain.to_str().unwrap()]);
    assert!(!ok && err.contains("point 0 is held twice"), "{err}");
    let (ok, err) = quantdepth(&["merge", so, sa, sa, sb]);
    assert!(!ok && err.contains("is given twice"), "{err}");
    let other = root.join("other");
    let mut cfg2 = cfg.clone();
    cfg2.seed = Some(6);
    let o1 = run_shard(
        &cfg2,
        &other,
        Shard::new(1, 2, "t").unwrap(),
        &mut CpuBackend,
        "cpu",
        &hooks(&cancel),
    )
    .unwrap();
    let (ok, err) = quantdepth(&["merge", so, sa, o1.folder.to_str().unwrap()]);
    assert!(
        !ok && err.contains("different configs") && err.contains("`seed = 5` vs `seed = 6`"),
        "{err}"
    );
    // A shard written by another version: its meta.json says so.
    let old = root.join("old");
    Command::new("cp")
        .arg("-r")
        .arg(&b)
        .arg(&old)
        .status()
        .unwrap();
    let meta = std::fs::read_to_string(old.join("meta.json")).unwrap();
    let version = format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(meta.contains(&version), "{meta}");
    std::fs::write(
        old.join("meta.json"),
        meta.replace(&version, "\"version\": \"0.0.9\""),
    )
    .unwrap();
    let (ok, err) = quantdepth(&["merge", so, sa, old.to_str().unwrap()]);
    assert!(
        !ok && err.contains("different quantdepth versions"),
        "{err}"
    );
    assert!(!out.exists());
    // A merged folder inside a shard folder is refused before anything is
    // written (it was written there: a stranger's folder in a results folder).
    let inner = a.join("merged");
    let (ok, err) = quantdepth(&["merge", inner.to_str().unwrap(), sa, sb]);
    assert!(!ok && err.contains("inside the shard folder"), "{err}");
    assert!(!inner.exists());

    // The good set, in any order, gives the unsharded folder.
    let report = merge(&out, &[b.clone(), a.clone()]).unwrap();
    assert!(report.complete);
    assert_same_results(&out, &plain);
    let (ok, err) = quantdepth(&["merge", so, sa, sb]);
    assert!(!ok && err.contains("exists"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

/// An optimal scan (theory only) splits by N the same way: each shard keeps
/// the optima of its N, merge fits the scaling over all of them.
#[test]
fn optimal_scan_shards_merge_to_the_unsharded_scan() {
    let root = temp_root("optimal");
    let cfg = Config::from_toml(
        "name = \"opt\"\nkind = \"optimal\"\n[sweep]\nstates = \"2..30\"\n[outputs]\npng = false\n",
    )
    .unwrap();
    let cancel = AtomicBool::new(false);
    let plain = run_experiment(
        &cfg,
        &root.join("plain"),
        &mut CpuBackend,
        "-",
        &hooks(&cancel),
    )
    .unwrap()
    .folder;
    let mut dirs = Vec::new();
    for k in 0..3 {
        let shard = Shard::new(k, 3, "t").unwrap();
        let r = run_shard(
            &cfg,
            &root.join("shards"),
            shard,
            &mut CpuBackend,
            "-",
            &hooks(&cancel),
        )
        .unwrap();
        dirs.push(r.folder);
    }
    let e = merge(&root.join("part"), &dirs[1..])
        .unwrap_err()
        .to_string();
    assert!(e.contains("(shard 0/3 should have them)"), "{e}");
    let out = root.join("merged");
    merge(&out, &dirs).unwrap();
    for f in [
        "config.toml",
        "optimal.csv",
        "optimal.json",
        "summary.json",
        "plots/one-minus-chi-max.svg",
        "plots/d-opt.svg",
    ] {
        assert!(
            std::fs::read(out.join(f)).unwrap() == std::fs::read(plain.join(f)).unwrap(),
            "{f} of the merged scan differs from the unsharded scan's"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Without Slurm, `quantdepth slurm` still writes the scripts, and
/// `--submit` says that Slurm is not installed.
#[test]
fn slurm_without_sbatch_writes_the_scripts_and_says_so() {
    let root = temp_root("nosbatch");
    std::fs::create_dir_all(&root).unwrap();
    let config = root.join("sweep.toml");
    std::fs::write(&config, SWEEP).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quantdepth"))
        .args([
            "slurm",
            config.to_str().unwrap(),
            "--shards",
            "2",
            "--submit",
            "--out",
        ])
        .arg(root.join("sub"))
        .env("PATH", root.join("no-bin"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Slurm is not installed on this machine"),
        "{err}"
    );
    let array = std::fs::read_to_string(root.join("sub/array.sbatch")).unwrap();
    assert!(array.contains("#SBATCH --array=0-1"), "{array}");
    assert!(root.join("sub/merge.sbatch").is_file());
    let _ = std::fs::remove_dir_all(&root);
}

/// `slurm --shards 0` names the flag and the value the user typed (not an
/// internal "0/0"), and writes nothing.
#[test]
fn slurm_refuses_zero_shards_in_the_users_terms() {
    let root = temp_root("zeroshards");
    std::fs::create_dir_all(&root).unwrap();
    let config = root.join("sweep.toml");
    std::fs::write(&config, SWEEP).unwrap();
    let sub = root.join("sub");
    let (ok, err) = quantdepth(&[
        "slurm",
        config.to_str().unwrap(),
        "--shards",
        "0",
        "--out",
        sub.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("--shards 0: give the number of array tasks, at least 1"),
        "{err}"
    );
    assert!(!sub.exists());
    let _ = std::fs::remove_dir_all(&root);
}

/// A shard beyond the point count (`--shard 5/6` of a 3-value optimal
/// scan) says it holds no point, still writes its folder, and `merge` of
/// all six shards gives the unsharded scan's values; a shard with points
/// says how many.
#[test]
fn an_empty_shard_says_so_and_still_merges() {
    let root = temp_root("empty-shard");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("opt.toml");
    std::fs::write(
        &cfg,
        "name = \"opt\"\nkind = \"optimal\"\n[sweep]\nstates = [3, 4, 5]\n[outputs]\npng = false\n",
    )
    .unwrap();
    let (cfg, shards) = (cfg.to_str().unwrap(), root.join("shards"));
    let mut dirs = Vec::new();
    for k in 0..6 {
        let (ok, err) = quantdepth(&[
            "run",
            cfg,
            "--shard",
            &format!("{k}/6"),
            "--out",
            shards.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        // assign() deals the values out largest first, one per shard
        // (N = 5, 4, 3 to shards 0, 1, 2); shards 3 to 5 get none.
        let want = if k < 3 {
            "1 of the sweep's 3 point(s)".to_string()
        } else {
            format!("warning: shard {k}/6 holds none of the sweep's 3 point(s)")
        };
        assert!(err.contains(&want), "shard {k}: {err}");
        dirs.push(shards.join(format!("opt-shard-{k}-of-6")));
    }
    let merged = root.join("merged");
    let mut args = vec!["merge".to_string(), merged.to_str().unwrap().to_string()];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, err) = quantdepth(&args);
    assert!(ok, "{err}");
    let csv = std::fs::read_to_string(merged.join("optimal.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "a header and N = 3, 4, 5:\n{csv}");
    let _ = std::fs::remove_dir_all(&root);
}

/// The true work of each point of a `depth_per_xi = 4` config at σ_w^opt: samples ×
/// ⌈4·ξ_max(N)⌉ layers, from the theory's optimum directly (not through the shard
/// code), times the per-layer work, which is the same for every point of these configs
/// (one width, one ensemble, one batch).
fn true_work(states: &[usize], samples: usize) -> Vec<f64> {
    states
        .iter()
        .map(|&n| {
            let xi = quantdepth::theory::optimal::uniform_optimum(n, 6.0)
                .unwrap()
                .xi_max;
            (samples as f64) * (4.0 * xi).ceil()
        })
        .collect()
}

/// The largest shard's share of the true work over the ideal 1/M, for the split
/// `sweep_costs` + `assign` makes.
fn worst_over_ideal(cfg: &Config, work: &[f64], m: usize) -> f64 {
    use quantdepth::experiment::shard::{assign, sweep_costs};
    let a = assign(&sweep_costs(cfg).unwrap(), m);
    let mut load = vec![0.0; m];
    for (i, &k) in a.iter().enumerate() {
        load[k] += work[i];
    }
    let total: f64 = work.iter().sum();
    load.iter().cloned().fold(0.0, f64::max) / (total / m as f64)
}

#[test]
fn shards_of_depth_per_xi_configs_balance_the_layers_that_run() {
    // depth_scale_cpu (N = 2..8, 24 networks) and scaling_cpu (11 N, 8 networks) run
    // ⌈4ξ⌉ layers per point, from 9 (N = 2) to 3,844 (N = 64). Costed at the depth cap
    // (every point equal) the 4-shard split was 2,2,2,1 points and its slowest shard
    // took ≈ 1.5× (depth_scale) and ≈ 1.9× (scaling) the ideal quarter. Costed by the
    // depth each point runs, longest-processing-time-first keeps the slowest shard within
    // 1.15× the ideal, or at the one largest point where that alone exceeds it.
    for (file, m) in [
        ("configs/depth_scale_cpu.toml", 2),
        ("configs/depth_scale_cpu.toml", 3),
        ("configs/depth_scale_cpu.toml", 4),
        ("configs/scaling_cpu.toml", 2),
        ("configs/scaling_cpu.toml", 3),
        ("configs/scaling_cpu.toml", 4),
    ] {
        let cfg = Config::from_toml(&std::fs::read_to_string(file).unwrap()).unwrap();
        let points = cfg.points().unwrap();
        let states: Vec<usize> = points.iter().map(|p| p.states.unwrap()).collect();
        let work = true_work(&states, points[0].samples);
        let total: f64 = work.iter().sum();
        let largest = work.iter().cloned().fold(0.0, f64::max) / (total / m as f64);
        let worst = worst_over_ideal(&cfg, &work, m);
        let bound = 1.15f64.max(largest);
        assert!(
            worst <= bound + 1e-12,
            "{file}, {m} shards: slowest shard {worst:.3}× the ideal (bound {bound:.3})"
        );
    }
}

#[test]
fn plan_counts_the_layers_each_point_runs() {
    // scaling_cpu: Σ_N ⌈4·ξ_max(N)⌉ = 8,785 layers per network (the config's comment),
    // × 8 networks = 70,280 layers, not 11 × 4,000 × 8 = 352,000 at the cap.
    let cfg =
        Config::from_toml(&std::fs::read_to_string("configs/scaling_cpu.toml").unwrap()).unwrap();
    let plan = quantdepth::experiment::plan::plan_run(&cfg, false).unwrap();
    assert_eq!(plan.layers, 70_280, "{}", plan.describe());
}
