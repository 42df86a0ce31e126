//! Guards of the second robustness pass (issue 21, cases 3, 4, 5, 9, 10):
//! shard counts bounded at every entry and shard records checked before
//! anything is deleted; training's memory plan and every training error
//! before the results folder exists, and a failure after it recorded;
//! slow paths made linear, periodic or cancellable; divergence beyond NaN;
//! messages that name what the user gave. Each category prints a census
//! line (scripts/robustness_census.sh collects them): inputs tried, panics,
//! hangs, aborts, torn folders, all 0.

mod common;
use common::data::write_dataset;
use quantdepth::experiment::merge::merge_with;
use quantdepth::experiment::runner::run_shard;
use quantdepth::experiment::shard::Shard;
use quantdepth::experiment::{run_experiment, Config, Hooks};
use quantdepth::sim::cpu::CpuBackend;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_quantdepth");

/// Longest a refusal may take (it takes milliseconds; this only separates
/// an answer from a hang on a loaded 2-core machine).
const HANG: Duration = Duration::from_secs(60);

fn temp_root(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("quantdepth-guard-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    timed_out: bool,
}

impl Outcome {
    fn panicked(&self) -> bool {
        self.code == Some(101) || self.stderr.contains("panicked at")
    }
    fn aborted(&self) -> bool {
        self.code == Some(134)
            || self
                .signal
                .is_some_and(|s| s == 6 || s == 9 || s == 11 || s == 7)
            || self.stderr.contains("memory allocation of")
    }
}

fn wait(mut child: Child) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    let mut err = child.stderr.take().unwrap();
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > HANG {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.code(),
        signal: status.signal(),
        stderr: t_err.join().unwrap(),
        timed_out,
    }
}

/// The CLI with `args` and extra environment `env`; its address space is
/// capped at 8 GiB (`ulimit -v`), so an allocation sized by an unchecked
/// count aborts at once instead of swapping a shared machine.
fn cli(args: &[&str], env: &[(&str, OsString)]) -> Outcome {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -v 8388608; exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    wait(c.spawn().unwrap())
}

#[derive(Default)]
struct Census {
    tried: usize,
    panics: usize,
    hangs: usize,
    aborts: usize,
    torn: usize,
}

impl Census {
    fn count(&mut self, o: &Outcome) {
        self.tried += 1;
        self.panics += usize::from(o.panicked());
        self.hangs += usize::from(o.timed_out);
        self.aborts += usize::from(o.aborted());
    }
    fn report(&self, category: &str) {
        // On its own line after the harness's "test … " (the census greps ^census).
        println!(
            "\ncensus {category}: inputs tried {}, panics {}, hangs {}, aborts {}, torn folders {}",
            self.tried, self.panics, self.hangs, self.aborts, self.torn
        );
        assert_eq!(
            (self.panics, self.hangs, self.aborts, self.torn),
            (0, 0, 0, 0),
            "{category}"
        );
    }
}

/// Every file under `dir` (relative name, bytes), sorted.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let name = p.strip_prefix(base).unwrap().display().to_string();
                out.push((name, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Four cheap points (N = 2..5) on the CPU.
const SWEEP: &str = "name = \"g\"\nseed = 3\nbackend = \"cpu\"\n[network]\nwidth = 8\ndepth = 3\n\
samples = 2\n[inputs]\nc0 = [0.5]\npairs = 1\n[sweep]\nstates = [2, 3, 4, 5]\n[outputs]\npng = false\n";

fn hooks<'a>(
    cancel: &'a AtomicBool,
    finished: &'a (dyn Fn(&quantdepth::experiment::runner::PointSummary) + Sync),
) -> Hooks<'a> {
    Hooks {
        point_started: &|_, _, _, _| {},
        layers: &|_| {},
        point_finished: finished,
        cancel,
    }
}

/// Case 3: `--shard K/M` and the Slurm array variables with counts beyond
/// any sweep are refused before anything is allocated or written (they
/// aborted allocating 16 TB, or panicked on capacity overflow); a variable
/// that is set but not Unicode is named as such, not "not set".
#[test]
fn shard_counts_are_bounded_at_every_entry() {
    use std::os::unix::ffi::OsStringExt;
    let root = temp_root("shard-entry");
    let cfg = root.join("c.toml");
    std::fs::write(&cfg, SWEEP).unwrap();
    let out = root.join("out");
    let (c, o) = (cfg.to_str().unwrap(), out.to_str().unwrap());
    let s = |v: &str| OsString::from(v);
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, OsString)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["run", c, "--out", o, "--shard", "0/1000000000000"], vec![], "at most 100000"),
        (vec!["run", c, "--out", o, "--shard", "0/18446744073709551615"], vec![], "at most 100000"),
        (vec!["run", c, "--out", o, "--shard", "0/99999999999999999999"], vec![], "M ≤ 100000"),
        (vec!["run", c, "--out", o, "--shard", "100000/100000"], vec![], "K must lie in 0..100000"),
        (
            vec!["run", c, "--out", o, "--shard", "slurm"],
            vec![("SLURM_ARRAY_TASK_ID", s("0")), ("SLURM_ARRAY_TASK_COUNT", s("1000000000000"))],
            "at most 100000",
        ),
        (
            vec!["run", c, "--out", o, "--shard", "slurm"],
            vec![("SLURM_ARRAY_TASK_ID", s("0")), ("SLURM_ARRAY_TASK_COUNT", s("18446744073709551615"))],
            "at most 100000",
        ),
        (
            vec!["run", c, "--out", o, "--shard", "slurm"],
            vec![("SLURM_ARRAY_TASK_ID", OsString::from_vec(vec![0xff])), ("SLURM_ARRAY_TASK_COUNT", s("2"))],
            "SLURM_ARRAY_TASK_ID = \"\\xFF\": a non-negative integer (the value is not valid Unicode",
        ),
        (
            vec!["run", c, "--out", o, "--shard", "slurm"],
            vec![("SLURM_ARRAY_TASK_ID", s("0")), ("SLURM_ARRAY_TASK_COUNT", OsString::from_vec(vec![b'2', 0xfe]))],
            "SLURM_ARRAY_TASK_COUNT",
        ),
        (vec!["slurm", c, "--shards", "1000000000000", "--out", o], vec![], "at most 100000"),
    ];
    let mut census = Census::default();
    for (args, env, want) in &cases {
        let r = cli(args, env);
        census.count(&r);
        assert_eq!(r.code, Some(1), "{args:?} {env:?}: {r:?}");
        assert!(
            r.stderr.contains(want),
            "{args:?} {env:?}: {:?} lacks {want:?}",
            r.stderr
        );
        assert!(!r.stderr.contains("not set"), "{args:?}: {:?}", r.stderr);
        assert!(!out.exists(), "{args:?}: {} was created", out.display());
    }
    census.report("shard counts (flag, environment)");
}

/// Case 3: a hand-edited shard.json (count 0, 10¹², 2⁶⁴ − 1, K ≥ M,
/// points out of order) is refused by `run --resume` before anything in
/// the folder is deleted, and by `merge` without a merged or temporary
/// folder left behind. (The old resume deleted the aggregates, then
/// panicked or aborted in the shard split.)
#[test]
fn hand_edited_shard_records_are_refused_before_anything_is_deleted() {
    let root = temp_root("shard-json");
    let cfg = Config::from_toml(SWEEP).unwrap();
    let shards = root.join("shards");
    let done = AtomicBool::new(false);
    let s1 = run_shard(
        &cfg,
        &shards,
        Shard::new(1, 2, "t").unwrap(),
        &mut CpuBackend,
        "cpu",
        &hooks(&done, &|_| {}),
    )
    .unwrap()
    .folder;
    // Shard 0 stops after its first point: an unfinished folder to resume.
    let stop = AtomicBool::new(false);
    let s0 = run_shard(
        &cfg,
        &shards,
        Shard::new(0, 2, "t").unwrap(),
        &mut CpuBackend,
        "cpu",
        &hooks(&stop, &|_| stop.store(true, Ordering::SeqCst)),
    )
    .unwrap()
    .folder;
    let good = std::fs::read_to_string(s0.join("shard.json")).unwrap();
    let bad = [
        (
            r#"{"shard":{"index":0,"count":0},"points":[0,2]}"#,
            "at least 1",
        ),
        (
            r#"{"shard":{"index":0,"count":1000000000000},"points":[0,2]}"#,
            "at most 100000",
        ),
        (
            r#"{"shard":{"index":0,"count":18446744073709551615},"points":[0,2]}"#,
            "at most 100000",
        ),
        (
            r#"{"shard":{"index":5,"count":2},"points":[0,2]}"#,
            "K must lie in 0..2",
        ),
        (
            r#"{"shard":{"index":0,"count":2},"points":[2,0]}"#,
            "not strictly increasing",
        ),
    ];
    let mut census = Census::default();
    let merged = root.join("merged");
    for (text, want) in bad {
        std::fs::write(s0.join("shard.json"), text).unwrap();
        let before = snapshot(&s0);
        let r = cli(&["run", "--resume", s0.to_str().unwrap()], &[]);
        census.count(&r);
        assert_eq!(r.code, Some(1), "{text}: {r:?}");
        assert!(
            r.stderr.contains("is not a valid shard record") && r.stderr.contains(want),
            "{text}: {}",
            r.stderr
        );
        let after = snapshot(&s0);
        census.torn += usize::from(after != before);
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&after),
            names(&before),
            "{text}: resume changed the folder"
        );
        let r = cli(
            &[
                "merge",
                merged.to_str().unwrap(),
                s0.to_str().unwrap(),
                s1.to_str().unwrap(),
            ],
            &[],
        );
        census.count(&r);
        assert_eq!(r.code, Some(1), "{text}: {r:?}");
        assert!(r.stderr.contains(want), "{text}: {}", r.stderr);
        assert_eq!(
            entries(&root),
            vec!["shards".to_string()],
            "{text}: merge left a folder"
        );
    }
    census.report("shard records (shard.json)");
    // The untouched record still resumes.
    std::fs::write(s0.join("shard.json"), good).unwrap();
    let r = cli(&["run", "--resume", s0.to_str().unwrap()], &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
}

fn training_toml(data: &Path, body: &str) -> String {
    format!(
        "name = \"t\"\nkind = \"training\"\nseed = 1\nbackend = \"cpu\"\n[training]\ndata = \"{}\"\n\
         batch = 16\neval_train = 64\neval_test = 64\neval_batch = 32\n{body}\n[outputs]\npng = false\n",
        data.display()
    )
}

/// Cases 4, 5, 9 and 10 before the folder: a network beyond this machine's
/// memory (width 65536 is 4.3·10⁹ weights, about 69 GB held four times;
/// depth 1000 of it is beyond any machine), every point error of the
/// theory, absurd lengths and a learning rate that is 0 in f32 are refused
/// with the user's terms and no results folder. (Before: an abort
/// allocating 17 GB, or a folder left "running" with no error.)
#[test]
fn training_errors_and_memory_are_refused_before_the_folder_exists() {
    let root = temp_root("train-refusals");
    let data = root.join("data");
    write_dataset(&data, 64, 64);
    let have = quantdepth::experiment::plan::available_memory().unwrap_or(u64::MAX);
    let mut cases: Vec<(&str, &str)> = vec![
        (
            "states = [4]\nwidth = 65536\ndepth = [1000]\nsteps = [1]",
            "needs about",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nsigma_w = [\"opt-100\"]\nsteps = [1]",
            "sigma_w",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nsigma_w = [1e308]\nsteps = [1]",
            "sigma_w",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nsigma_w = [\"opt+1e308\"]\nsteps = [1]",
            "sigma_w",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nsigma_w_ratio = [1e300]\nsteps = [1]",
            "sigma_w",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nsigma_w_ratio = [1e-300]\nsteps = [1]",
            "sigma_w",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nsigma_b = 1e308\nsteps = [1]",
            "sigma_b",
        ),
        (
            "states = [4]\nwidth = 16\ndepth_per_xi = [1e6]\nsteps = [1]",
            "depth_per_xi",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nsteps = [9223372036854775807]",
            "at most 1000000000 steps",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nepochs = [1e300]",
            "at most 1000000000 steps",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nepochs = [3e8]",
            "at most 1000000000 steps",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nlr = [1e-300]\nsteps = [1]",
            "f32's normal range",
        ),
        (
            "states = [4]\nwidth = 16\ndepth = [3]\nlr = [1e39]\nsteps = [1]",
            "f32's normal range",
        ),
        (
            "states = [512]\nwidth = 16\ndepth = [3]\nsigma_b = 0.1\nsteps = [1]",
            "N is limited to 256",
        ),
    ];
    // 784 → 65536 → 65536 → 10 here 36 → 65536 → 65536 → 10: 4.3e9 weights.
    let p = (36 + 1 + 65536 + 1) * 65536u64 + 65536 * 10 + 10;
    if have < 16 * p {
        cases.push((
            "states = [4]\nwidth = 65536\ndepth = [3]\nsteps = [1]",
            "needs about",
        ));
    }
    let mut census = Census::default();
    for (i, (body, want)) in cases.iter().enumerate() {
        let cfg = root.join(format!("c{i}.toml"));
        std::fs::write(&cfg, training_toml(&data, body)).unwrap();
        let out = root.join(format!("out{i}"));
        let r = cli(
            &["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()],
            &[],
        );
        census.count(&r);
        assert_eq!(r.code, Some(1), "{body}: {r:?}");
        assert!(
            r.stderr.contains(want),
            "{body}: {:?} lacks {want:?}",
            r.stderr
        );
        census.torn += usize::from(!entries(&out).is_empty());
        assert!(
            entries(&out).is_empty(),
            "{body}: a folder was created: {:?}",
            entries(&out)
        );
    }
    census.report("training memory and point errors");
}

fn run_training_with(
    cfg: &Config,
    root: &Path,
    started: &(dyn Fn(usize, usize, &str, u64) + Sync),
) -> quantdepth::Result<quantdepth::experiment::RunReport> {
    let cancel = AtomicBool::new(false);
    let hooks = Hooks {
        point_started: started,
        layers: &|_| {},
        point_finished: &|_| {},
        cancel: &cancel,
    };
    run_experiment(cfg, root, &mut CpuBackend, "backend cpu", &hooks)
}

/// Case 5: an error after the folder exists (here training.csv cannot be
/// written: a folder stands in its place) marks the commit record failed
/// with the error, never "running".
#[test]
fn a_training_error_after_the_folder_exists_marks_it_failed() {
    let root = temp_root("train-failed");
    let data = root.join("data");
    write_dataset(&data, 64, 64);
    let out = root.join("out");
    let cfg = Config::from_toml(&training_toml(
        &data,
        // One network at a time: the first to commit is point 0.
        "states = [4]\nwidth = 16\ndepth = [2, 3]\nsteps = [2]\nconcurrent = 1",
    ))
    .unwrap();
    let block = |_: usize, _: usize, _: &str, _: u64| {
        for f in entries(&out) {
            let _ = std::fs::create_dir_all(out.join(f).join("training.csv"));
        }
    };
    let e = run_training_with(&cfg, &out, &block)
        .unwrap_err()
        .to_string();
    assert!(e.contains("training.csv"), "{e}");
    let folders = entries(&out);
    assert_eq!(folders.len(), 1, "{folders:?}");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(&folders[0]).join("meta.json")).unwrap(),
    )
    .unwrap();
    // A folder left "running" with no error is torn.
    let torn = usize::from(meta["status"] != "failed" || meta["error"].is_null());
    let census = Census {
        tried: 1,
        torn,
        ..Census::default()
    };
    assert_eq!(meta["status"], "failed", "{meta}");
    assert!(
        meta["error"].as_str().unwrap().contains("training.csv"),
        "{meta}"
    );
    assert_eq!(meta["failed_point"], 0, "{meta}");
    census.report("training failure after the folder exists");
}

/// Case 10: a learning rate of 10³⁰ trains to a finite loss of ~10³⁰: it
/// is marked diverged (loss above 10× the initial loss for 2 reports) in
/// training.csv, summary.json and the terminal note; with `lr_deep` the
/// table, summary.json and training.csv name both the configured and the
/// used rate. (Before: only NaN or inf was flagged; no lr_config column.)
#[test]
fn divergence_beyond_nan_and_lr_deep_are_reported_consistently() {
    let root = temp_root("train-diverge");
    let data = root.join("data");
    write_dataset(&data, 128, 64);
    let body = "states = [4]\nwidth = 16\ndepth = [2, 3, 4]\nlr = [0.05, 1e30]\nlr_deep = 0.02\nlr_deep_from = 4\nsteps = [8]\nreport_at = [2, 4, 6]";
    let cfg = Config::from_toml(&training_toml(&data, body)).unwrap();
    let r = run_training_with(&cfg, &root.join("out"), &|_, _, _, _| {}).unwrap();
    let csv = std::fs::read_to_string(r.folder.join("training.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} in {header:?}"))
    };
    let (lr, lr_config, depth, div) = (col("lr"), col("lr_config"), col("depth"), col("diverged"));
    let mut seen_diverged = 0;
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (used, given, d): (f64, f64, usize) = (
            f[lr].parse().unwrap(),
            f[lr_config].parse().unwrap(),
            f[depth].parse().unwrap(),
        );
        // lr_deep from depth 4: the used rate is 0.02 there, the configured one otherwise.
        assert_eq!(used, if d >= 4 { 0.02 } else { given }, "{line}");
        let diverged = f[div] == "true";
        seen_diverged += usize::from(diverged);
        assert_eq!(diverged, given == 1e30 && d < 4, "{line}");
    }
    assert_eq!(
        seen_diverged,
        2 * 4,
        "two networks, four reports each: {csv}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.folder.join("summary.json")).unwrap())
            .unwrap();
    let pts = summary["points"].as_array().unwrap();
    assert_eq!(pts.iter().filter(|p| p["diverged"] == true).count(), 2);
    assert!(
        pts.iter().any(|p| p["divergence"]
            .as_str()
            .is_some_and(|d| d.contains("initial loss"))),
        "{summary}"
    );
    // Rows are grouped under the learning rate as configured (training.csv's
    // lr_config); the rate each network trained with is training.csv's lr.
    let groups = summary["trainable_depth"].as_array().unwrap();
    assert!(groups.iter().any(|g| g["lr"] == 0.05), "{groups:?}");
    assert!(r.table.contains("lr=0.05"), "{}", r.table);
    assert!(
        r.table.contains("warning: training diverged at point(s)"),
        "{}",
        r.table
    );
}

/// Case 10: messages in the user's terms: a file given to --resume is
/// "not a folder"; sbatch limits beyond any cluster are refused.
#[test]
fn resume_of_a_file_and_slurm_limits_are_refused_in_the_users_terms() {
    let root = temp_root("messages");
    let cfg = root.join("c.toml");
    std::fs::write(&cfg, SWEEP).unwrap();
    let (c, o) = (cfg.to_str().unwrap(), root.join("sub"));
    let o = o.to_str().unwrap();
    let long = "p".repeat(100_000);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--resume", c], "is not a folder"),
        (
            vec![
                "slurm",
                c,
                "--shards",
                "2",
                "--out",
                o,
                "--time",
                "213503982334601-0",
            ],
            "longer than 365 days",
        ),
        (
            vec![
                "slurm",
                c,
                "--shards",
                "2",
                "--out",
                o,
                "--partition",
                &long,
            ],
            "is 100000 characters",
        ),
        (
            vec![
                "slurm",
                c,
                "--shards",
                "2",
                "--out",
                o,
                "--gpus-per-task",
                "18446744073709551615",
            ],
            "at most 64",
        ),
    ];
    let mut census = Census::default();
    for (args, want) in &cases {
        let r = cli(args, &[]);
        census.count(&r);
        assert_eq!(r.code, Some(1), "{:?}: {r:?}", &args[..2]);
        assert!(
            r.stderr.contains(want) && r.stderr.len() < 2000,
            "{:?}: {:?}",
            &args[..2],
            r.stderr.chars().take(300).collect::<String>()
        );
        assert!(!Path::new(o).exists());
    }
    census.report("messages (resume, slurm limits)");
}

/// Case 9: the training initialization at N = 65536 (σ_b = 0, so c* = 0)
/// is O(N): well under a second here; the old double sums over threshold
/// pairs took 2·10⁹ bivariate CDFs (minutes).
#[test]
fn training_init_at_65536_states_is_linear() {
    use quantdepth::train::model::{theory_init, Preset};
    let t = Instant::now();
    let init = theory_init(65536, Preset::Theory, 1.0, 0.0, 0.0, 1.0, 1.0).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(init.c_star, 0.0);
    // ξ grows as N^1.8 (3.5e8 at 65536 by `quantdepth init --states 65536`).
    assert!(init.xi > 3e8 && init.xi < 4e8, "{init:?}");
    assert!(secs < 20.0, "{secs} s");
}

/// Case 9: a depth curve's periodic tail is copied, equal bit for bit to
/// iterating the map; a cancelled curve stops at the next layer.
#[test]
fn depth_curves_copy_their_fixed_point_and_stop_when_cancelled() {
    use quantdepth::activation::{Activation, Quantizer};
    use quantdepth::theory::maps::Network;
    let net = Network::new(
        Activation::Quantized(Quantizer::uniform(4, 0.9, 1.0).unwrap()),
        1.2,
        0.3,
    )
    .unwrap();
    let q0 = net.q_star().unwrap();
    let never = AtomicBool::new(false);
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let curve = net
        .depth_curve_with(
            q0,
            q0,
            0.2,
            5000,
            &|_| {
                calls.fetch_add(1, Ordering::SeqCst);
            },
            &never,
        )
        .unwrap();
    let (mut qa, mut qb, mut c) = (q0, q0, 0.2);
    for p in &curve[1..] {
        (qa, qb, c) = net.step(qa, qb, c);
        assert_eq!(
            (p.q_a.to_bits(), p.q_b.to_bits(), p.c.to_bits()),
            (qa.to_bits(), qb.to_bits(), c.to_bits()),
            "layer {}",
            p.layer
        );
    }
    // It converged: far fewer layers computed than 5000.
    assert!(
        calls.load(Ordering::SeqCst) < 1000,
        "{} layers computed",
        calls.load(Ordering::SeqCst)
    );
    let cancel = AtomicBool::new(false);
    let e = net
        .depth_curve_with(
            q0,
            q0,
            0.2,
            10_000_000,
            &|l| {
                if l == 5 {
                    cancel.store(true, Ordering::SeqCst)
                }
            },
            &cancel,
        )
        .unwrap_err();
    assert!(matches!(e, quantdepth::Error::Interrupted), "{e}");
}

/// Cases 9 and 10, merge: a plot file far larger than any plot (a sparse
/// 1 GiB file) is refused instead of copied densely; a corrupt point record
/// is named by the shard's own file, not the temporary folder; a cancelled
/// merge leaves neither the merged nor the temporary folder.
#[test]
fn merge_refuses_huge_plots_names_shard_files_and_cleans_up_when_cancelled() {
    let root = temp_root("merge");
    let cfg = Config::from_toml(SWEEP).unwrap();
    let shards = root.join("shards");
    let none = AtomicBool::new(false);
    let dirs: Vec<PathBuf> = (0..2)
        .map(|k| {
            run_shard(
                &cfg,
                &shards,
                Shard::new(k, 2, "t").unwrap(),
                &mut CpuBackend,
                "cpu",
                &hooks(&none, &|_| {}),
            )
            .unwrap()
            .folder
        })
        .collect();
    let out = root.join("merged");
    let left = || {
        entries(&root)
            .into_iter()
            .filter(|n| n != "shards")
            .collect::<Vec<_>>()
    };
    let cancel = AtomicBool::new(true);
    let e = merge_with(&out, &dirs, &cancel).unwrap_err();
    assert!(matches!(e, quantdepth::Error::Interrupted), "{e}");
    assert!(left().is_empty(), "{:?}", left());

    // One of the shard's own plots (listed in its plots/.written) grown to
    // 1 GiB: refused by name. (A file a user added is not carried at all.)
    let huge = dirs[0].join("plots").join("point000-correlation.svg");
    let kept = std::fs::read(&huge).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let e = merge_with(&out, &dirs, &none).unwrap_err().to_string();
    assert!(
        e.contains("point000-correlation.svg") && e.contains("larger than quantdepth writes"),
        "{e}"
    );
    assert!(left().is_empty(), "{:?}", left());
    std::fs::write(&huge, kept).unwrap();
    let stranger = dirs[0].join("plots").join("point000-mine.svg");
    std::fs::File::create(&stranger)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();

    let rec = quantdepth::experiment::folder::record_path(&dirs[1], 1);
    let held = std::fs::read(&rec).unwrap();
    std::fs::write(&rec, b"not a record").unwrap();
    let e = merge_with(&out, &dirs, &none).unwrap_err().to_string();
    assert!(!e.contains(".merging-"), "{e}");
    assert!(e.contains(&rec.display().to_string()), "{e}");
    assert!(left().is_empty(), "{:?}", left());
    std::fs::write(&rec, held).unwrap();
    merge_with(&out, &dirs, &none).unwrap();
    assert!(!out.join("plots/point000-mine.svg").exists());
    assert!(out.join("plots/point000-correlation.svg").is_file());
}
