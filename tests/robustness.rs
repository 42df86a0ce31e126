//! Nothing lost, nothing hangs: bad inputs end with a message naming what
//! the user set (never a hang, panic or allocation abort), runs end in a
//! consistent results folder whatever stops them (signals, failures, panics,
//! write errors, SIGKILL), and `run --resume` completes them to the same
//! files as an uninterrupted run.
//!
//! Each test prints a `census` line (inputs tried, panics, hangs, aborts,
//! torn folders); `scripts/robustness_census.sh` collects them.

use proptest::prelude::*;
use quantdepth::experiment::folder::{self, Commit};
use quantdepth::experiment::runner::{checked_agreement, PointRecord};
use quantdepth::experiment::{resume_experiment, run_experiment, Config, Hooks};
use quantdepth::sim::cpu::CpuBackend;
use quantdepth::sim::{Backend, BackendInfo, LayerSink, SimSpec};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_quantdepth");

/// Longest any single refused input may take (a correct refusal takes
/// milliseconds; the bound only separates "answers" from "hangs" on a
/// loaded 2-core machine).
const HANG: Duration = Duration::from_secs(30);

fn temp_root(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("quantdepth-robust-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// How a command ended.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

impl Outcome {
    fn panicked(&self) -> bool {
        self.code == Some(101) || self.stderr.contains("panicked at")
    }
    fn aborted(&self) -> bool {
        self.code == Some(134)
            || self.signal.is_some_and(|s| s == 6 || s == 11 || s == 7)
            || self.stderr.contains("memory allocation of")
    }
}

fn wait_with_timeout(mut child: Child, timeout: Duration) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
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
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Outcome {
        code: status.code(),
        signal: status.signal(),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
        timed_out,
    }
}

fn cli(args: &[&str]) -> Outcome {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_with_timeout(child, HANG)
}

/// Census of one category of inputs.
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
        println!(
            "census {category}: inputs tried {}, panics {}, hangs {}, aborts {}, torn folders {}",
            self.tried, self.panics, self.hangs, self.aborts, self.torn
        );
        assert_eq!(
            (self.panics, self.hangs, self.aborts, self.torn),
            (0, 0, 0, 0),
            "{category}"
        );
    }
}

/// Runs each case (a command line, split at spaces), expecting a refusal (exit 1, or 2 for the argument
/// parser) whose message contains `want`.
fn expect_refusals(category: &str, cases: &[(&str, &str)]) {
    let mut census = Census::default();
    for (args, want) in cases {
        let argv: Vec<&str> = args.split_whitespace().collect();
        let o = cli(&argv);
        census.count(&o);
        assert!(
            matches!(o.code, Some(1) | Some(2)),
            "{args:?}: expected a refusal, got {o:?}"
        );
        assert!(
            o.stderr.contains(want),
            "{args:?}: message {:?} does not say {want:?}",
            o.stderr
        );
        assert!(
            !o.stderr.contains("os error") && !o.stderr.contains("Num("),
            "{args:?}: internals in {:?}",
            o.stderr
        );
        // No 300-digit decimals.
        assert!(
            !o.stderr.contains("0000000000000000000000000"),
            "{args:?}: {:?}",
            o.stderr
        );
    }
    census.report(category);
}

#[test]
fn overflowing_and_underflowing_scales_are_refused_not_iterated_forever() {
    // Each of these spun forever in the q* iteration (σ_w² or σ_b² overflows
    // or underflows): now each is refused at once, naming the flag's value.
    expect_refusals(
        "hangs",
        &[
            (
                "theory curve --states 4 --depth 5 --sigma-w 1e308",
                "sigma_w = 1e308",
            ),
            (
                "theory curve --states 4 --depth 5 --sigma-w 1e155",
                "sigma_w = 1e155",
            ),
            (
                "theory curve --states 4 --depth 5 --sigma-w 1e-162",
                "sigma_w = 1e-162",
            ),
            (
                "theory curve --states 4 --depth 5 --sigma-b 1e155",
                "sigma_b = 1e155",
            ),
            (
                "theory curve --activation tanh --depth 5 --sigma-w 1e308",
                "sigma_w = 1e308",
            ),
            (
                "theory curve --activation hard-tanh --depth 5 --sigma-w 1e-200",
                "sigma_w = 1e-200",
            ),
            (
                "theory curve --levels -1e308,1e308 --thresholds 0 --sigma-w 1 --depth 3",
                "levels = -1e308",
            ),
            (
                "theory backward --states 4 --sigma-w 1e308",
                "sigma_w = 1e308",
            ),
            (
                "simulate --states 4 --sigma-w 1e155 --c0 0.5 --width 4 --depth 2 --samples 2 --backend cpu",
                "sigma_w = 1e155",
            ),
            (
                "theory curve --states 4 --amplitude 1e-300 --depth 2",
                "amplitude = 1e-300",
            ),
            (
                "theory curve --states 4 --spacing 1e300 --depth 2",
                "spacing = 1e300",
            ),
        ],
    );
}

#[test]
fn sizes_are_checked_before_anything_is_allocated() {
    // Each of these panicked (wrapped arithmetic) or aborted (allocation
    // failure) before; now each is refused with the limit.
    expect_refusals(
        "panics and aborts",
        &[
            (
                "simulate --depth 18446744073709551615 --states 4 --c0 0.5 --width 4 --samples 2 --backend cpu",
                "must fit in",
            ),
            (
                "simulate --depth 20000000 --states 4 --c0 0.5 --width 4 --samples 2 --backend cpu",
                "at most 10000000 layers",
            ),
            (
                "theory optimal --states 18446744073709551615",
                "at most 1048576",
            ),
            (
                "theory optimal --states 2147483648",
                "at most 1048576",
            ),
            (
                "theory optimal --states 2..4294967296",
                "at most 1000000",
            ),
            (
                "theory curve --states 4 --depth 1000000000",
                "at most 10000000 layers",
            ),
            (
                "theory curve --states 2147483648 --depth 3",
                "at most 1048576",
            ),
            (
                "simulate --pairs 1000000000 --states 4 --c0 0.5 --width 4 --depth 2 --samples 2 --backend cpu",
                "at most 524288 pairs",
            ),
            (
                "simulate --pairs 9223372036854775808 --states 4 --c0 0.5 --width 4 --depth 2 --samples 2 --backend cpu",
                "at most 524288 pairs",
            ),
            (
                "simulate --width 5000000000 --states 4 --c0 0.5 --depth 2 --samples 2 --backend cpu",
                "width",
            ),
            (
                "simulate --samples 99999999999 --states 4 --c0 0.5 --width 4 --depth 2 --backend cpu",
                "samples",
            ),
            ("run /dev/zero", "is a character device, not a regular file"),
            ("run /", "is a folder"),
        ],
    );
}

#[test]
fn a_width_beyond_this_machines_memory_is_refused_with_both_numbers() {
    // n = 5·10⁸ passed the old 8 GiB activation guard but needs ~20 GB of
    // host memory: inputs alone are 12 bytes × n × B = 12 GB.
    let spec = SimSpec {
        activation: quantdepth::activation::Activation::Linear,
        sigma_w: 1.0,
        sigma_b: 0.0,
        width: 500_000_000,
        depth: 2,
        samples: 2,
        seed: 0,
        q0: 1.0,
        inputs: quantdepth::sim::Inputs::Pairs {
            c0: vec![0.5],
            pairs: 1,
        },
        weights: quantdepth::sim::Weights::Gaussian,
    };
    let plan = spec.memory_plan(false, false).unwrap();
    assert!(plan.host_bytes >= 12_000_000_000, "{plan:?}");
    let e = quantdepth::experiment::plan::check_host_memory(u64::MAX, "this simulation")
        .unwrap_err()
        .to_string();
    assert!(e.contains("EiB") && e.contains("available"), "{e}");
    // Through the CLI only where this machine lacks that memory (elsewhere
    // the simulation would be allowed, and would run for hours).
    let have = quantdepth::experiment::plan::available_memory().unwrap_or(u64::MAX);
    let mut census = Census::default();
    if plan.host_bytes > have {
        let o = cli(&[
            "simulate",
            "--width",
            "500000000",
            "--states",
            "4",
            "--c0",
            "0.5",
            "--depth",
            "2",
            "--samples",
            "2",
            "--backend",
            "cpu",
        ]);
        census.count(&o);
        assert_eq!(o.code, Some(1), "{o:?}");
        assert!(
            o.stderr.contains("available") && o.stderr.contains("GiB"),
            "{}",
            o.stderr
        );
    }
    census.report("memory plan");
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_configs_are_refused_in_the_users_terms_before_a_folder_exists() {
    let root = temp_root("configs");
    let base = |extra: &str, sweep: &str| {
        format!(
            "name = \"t\"\nbackend = \"cpu\"\n{extra}\n[network]\nwidth = 8\ndepth = 2\nsamples = 2\n[sweep]\n{sweep}\n"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (base("", "states = [4]\nsigma_b = []"), "sweep.sigma_b = []"),
        (
            base("", "states = [4, 3, 4]"),
            "sweep.states = 4: a value listed twice",
        ),
        (
            base(
                "",
                "states = \"2..10000001\"\nwidth = \"2..10000001\"\ndepth = \"2..10000001\"",
            ),
            "at most 1000000",
        ),
        (
            base(
                "",
                "states = \"2..1001\"\nwidth = \"2..1001\"\ndepth = \"2..101\"",
            ),
            "--max-points",
        ),
        (
            base("", "states = [4]\nsigma_w = [\"opt+1e308\"]"),
            "sigma_w",
        ),
        (
            base("", "states = [4]\nsigma_w = [1e308]"),
            "sigma_w = 1e308",
        ),
        (
            base("kappa = 1e308\nkind = \"optimal\"", "states = [2, 3, 4]"),
            "kappa = 1e308",
        ),
        (
            base("[backward]\nm = [1e308]", "states = [4]"),
            "backward.m = 1e308",
        ),
        (
            base("", "states = [4]").replace(
                "[sweep]",
                "[inputs]\nkind = \"circle\"\npoints = 100000\n[sweep]",
            ),
            "circle points",
        ),
        (
            base("", "states = [4]").replace("width = 8", "width = 8\namplitude = 1e-300"),
            "amplitude = 1e-300",
        ),
        (
            base("", "states = [4]").replace("width = 8", "width = 8\nspacing = 0.0"),
            "network.spacing = 0",
        ),
        (base("", "states = [4294967296]"), "at most 1048576"),
        (
            base("", "states = [4]").replace("name = \"t\"", "name = \"a\\nb\""),
            "name",
        ),
        (
            base("", "states = [4]").replace("name = \"t\"", "name = \"a\\tb\""),
            "name",
        ),
        (
            base("", "states = [4]").replace("name = \"t\"", "name = \"x\\u202Ey\""),
            "name",
        ),
        (
            base("", "states = [4]").replace("name = \"t\"", "name = \"-x\""),
            "leading '-'",
        ),
        (
            base("", "states = [4]").replace("name = \"t\"", "name = \"..\""),
            "hidden",
        ),
        (
            base("", "states = [4]").replace("name = \"t\"", "name = \".\""),
            "hidden",
        ),
    ];
    let mut census = Census::default();
    for (k, (text, want)) in cases.iter().enumerate() {
        let dir = root.join(format!("case{k}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = write_config(&dir, text);
        let out = dir.join("out");
        let o = cli(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        census.count(&o);
        assert_eq!(o.code, Some(1), "{text}: {o:?}");
        assert!(
            o.stderr.contains(want),
            "{text}: {:?} lacks {want:?}",
            o.stderr
        );
        assert!(
            !o.stderr.contains("Num(") && !o.stderr.contains("os error"),
            "{}",
            o.stderr
        );
        assert!(
            !out.exists(),
            "{text}: a folder was created before the refusal"
        );
    }
    // --out naming a file: said in words, not "File exists (os error 17)".
    let file = root.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let cfg = write_config(&root, &base("", "states = [4]"));
    let o = cli(&[
        "run",
        cfg.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    census.count(&o);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("is a file"), "{}", o.stderr);
    census.report("configs");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn tiny_sigma_w_gives_the_sign_networks_correlations_not_one() {
    // σ_w = 1e-100: q* ~ 1e-200 ≪ Δ², so the 4-state quantizer acts as sign,
    // whose correlation map is c ↦ (2/π) arcsin c: from c⁰ = 0.5,
    // c¹ = 1/3 and c² = (2/π) arcsin(1/3). (It printed c¹ = c² = 1: the
    // product q_a q_b underflowed.)
    let o = cli(&[
        "theory",
        "curve",
        "--states",
        "4",
        "--depth",
        "2",
        "--sigma-w",
        "1e-100",
        "--json",
    ]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let curve = v["curve"]
        .as_array()
        .or(v["layers"].as_array())
        .unwrap_or_else(|| panic!("{v}"));
    let c = |l: usize| curve[l]["c"].as_f64().unwrap();
    let c1: f64 = 1.0 / 3.0;
    let c2 = 2.0 / std::f64::consts::PI * c1.asin();
    assert!((c(1) - c1).abs() < 1e-9, "c1 = {}", c(1));
    assert!((c(2) - c2).abs() < 1e-9, "c2 = {}", c(2));
}

/// The agreement of a curve with a NaN cannot read as perfect.
#[test]
fn agreement_with_non_finite_values_is_nan_not_zero() {
    let a = checked_agreement(&[(f64::NAN, Some(0.1)), (0.5, Some(0.1))], &[0.5, 0.5], 8);
    assert!(
        a.max_z.is_nan() && a.rms_z.is_nan() && a.max_abs.is_nan(),
        "{a:?}"
    );
    let a = checked_agreement(&[(0.5, Some(0.1))], &[f64::INFINITY], 8);
    assert!(a.max_abs.is_nan());
    // Finite inputs: the ordinary scores (t = |0.6 − 0.5|/0.1 = 1 with 7
    // degrees of freedom, as a normal deviate), |Δ| = 0.1.
    let a = checked_agreement(&[(0.6, Some(0.1))], &[0.5], 8);
    let b = quantdepth::analysis::agreement(&[(0.6, Some(0.1))], &[0.5], 8);
    assert_eq!(a, b);
    assert!(a.max_z > 0.9 && a.max_z < 1.0 && (a.max_abs - 0.1).abs() < 1e-12);
}

const HUGE_M: &str = r#"
name = "huge-m"
seed = 1
backend = "cpu"
[network]
states = 4
width = 16
depth = 60
samples = 2
[inputs]
c0 = [0.5]
[backward]
m = [1e6]
[outputs]
plots = false
"#;

#[test]
fn non_finite_results_are_flagged_in_summary_meta_and_terminal() {
    // A backward factor M = 10⁶ over 60 layers: the gradient norm ratio
    // M^60 = 1e360 overflows, so the ratio's agreement is NaN. It was written
    // as max_abs 0.0, max_z 0.0 (reading as perfect) with status complete.
    let root = temp_root("inf");
    let cfg = write_config(&root, HUGE_M);
    let out = root.join("out");
    let o = cli(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stdout.contains("warning: non-finite results"),
        "{}",
        o.stdout
    );
    let dir = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let p = &summary["points"][0];
    let flags = p["non_finite"].as_array().unwrap();
    assert!(
        flags
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("agreement_ratio.max_z")),
        "{flags:?}"
    );
    for key in ["max_z", "rms_z", "max_abs"] {
        assert!(
            p["backward"][0]["agreement_ratio"][key].is_null(),
            "{key}: {p}"
        );
    }
    let meta = Commit::read(&dir).unwrap();
    assert_eq!(meta.non_finite_points, vec![0]);
    let _ = std::fs::remove_dir_all(&root);
}

const KILL: &str = r#"
name = "kill"
seed = 3
backend = "cpu"
[network]
width = 32
depth = 5
samples = 3
[inputs]
c0 = [0.3, 0.8]
[sweep]
states = [2, 3, 4, 5, 6, 8]
[outputs]
png = true
"#;

fn tiny_cfg() -> Config {
    Config::from_toml(KILL).unwrap()
}

fn quiet_hooks<'a>(
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

/// A CPU backend that fails (or panics) on its `at`-th network sample.
struct Faulty {
    calls: AtomicUsize,
    at: usize,
    panic: bool,
}

impl Backend for Faulty {
    fn info(&self) -> BackendInfo {
        CpuBackend.info()
    }
    fn run_sample(
        &mut self,
        spec: &SimSpec,
        inputs: &[Vec<f64>],
        sample: u32,
        sink: &mut LayerSink<'_>,
    ) -> quantdepth::Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.at {
            if self.panic {
                panic!("injected panic");
            }
            return Err(quantdepth::Error::Numerical("injected failure".into()));
        }
        CpuBackend.run_sample(spec, inputs, sample, sink)
    }
}

fn file_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "plots"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for p in names {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name == "meta.json" {
                continue;
            }
            let mut bytes = std::fs::read(&p).unwrap();
            if name == "summary.json" {
                // Timings differ between runs; everything else must not.
                let text = String::from_utf8(bytes).unwrap();
                bytes = text
                    .lines()
                    .filter(|l| !l.contains("\"wall_seconds\""))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into_bytes();
            }
            out.push((format!("{sub}/{name}"), bytes));
        }
    }
    out
}

fn reference_run(root: &Path) -> PathBuf {
    let cancel = AtomicBool::new(false);
    let hooks = quiet_hooks(&cancel, &|_| {});
    run_experiment(&tiny_cfg(), root, &mut CpuBackend, "backend cpu", &hooks)
        .unwrap()
        .folder
}

fn assert_same_files(a: &Path, b: &Path) {
    let (fa, fb) = (file_bytes(a), file_bytes(b));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fb));
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(
            x == y,
            "{name} differs between the resumed and the uninterrupted run"
        );
    }
}

#[test]
fn a_failure_inside_a_point_marks_the_folder_failed_and_resume_completes_it() {
    let root = temp_root("fail");
    let reference = reference_run(&root.join("ref"));
    for panic in [false, true] {
        let cancel = AtomicBool::new(false);
        let hooks = quiet_hooks(&cancel, &|_| {});
        // 3 samples per point: call 4 is point 1's second sample, after a
        // sample of that point finished (was reported as an interruption).
        let mut bad = Faulty {
            calls: AtomicUsize::new(0),
            at: 4,
            panic,
        };
        let out = root.join(format!("panic-{panic}"));
        let e = run_experiment(&tiny_cfg(), &out, &mut bad, "backend cpu", &hooks)
            .unwrap_err()
            .to_string();
        assert!(e.contains("point 1"), "{e}");
        assert!(
            e.contains(if panic {
                "injected panic"
            } else {
                "injected failure"
            }),
            "{e}"
        );
        let dir = std::fs::read_dir(&out)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let meta = Commit::read(&dir).unwrap();
        assert_eq!(meta.status, "failed");
        assert!(!meta.complete);
        assert_eq!(meta.failed_point, Some(1));
        assert_eq!(meta.points, vec![0]);
        assert!(meta.error.as_deref().unwrap().contains("point 1"));
        check_folder(&dir).unwrap();
        let report = resume_experiment(&dir, &mut CpuBackend, "backend cpu", &hooks).unwrap();
        assert!(report.complete);
        let meta = Commit::read(&dir).unwrap();
        assert_eq!((meta.status.as_str(), meta.sessions), ("complete", 2));
        assert_eq!(meta.error, None);
        assert_same_files(&dir, &reference);
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Files a user put into a results folder survive a resume, wherever they
/// are: the resume removes only what quantdepth wrote and the commit record
/// does not name (the failed point's plots, listed in `plots/.written`).
/// Old code removed every plot that was not a committed point's, and every
/// `pointNNN…` file of an uncommitted point, in `plots/` and `points/`.
#[test]
fn a_resume_keeps_the_files_a_user_added() {
    let root = temp_root("userfiles");
    let cancel = AtomicBool::new(false);
    let hooks = quiet_hooks(&cancel, &|_| {});
    let mut bad = Faulty {
        calls: AtomicUsize::new(0),
        at: 4,
        panic: false,
    };
    let out = root.join("out");
    run_experiment(&tiny_cfg(), &out, &mut bad, "backend cpu", &hooks).unwrap_err();
    let dir = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mine = [
        "notes.txt",
        "plots/myplot.png",
        "plots/point001-mine.png",
        "plots/xi-scaling-0-annotated.svg",
        "points/point001-notes.txt",
        "points/README.txt",
    ];
    for f in mine {
        std::fs::write(dir.join(f), format!("user file {f}")).unwrap();
    }
    let r = resume_experiment(&dir, &mut CpuBackend, "backend cpu", &hooks).unwrap();
    assert!(r.complete);
    for f in mine {
        assert_eq!(
            std::fs::read_to_string(dir.join(f)).ok().as_deref(),
            Some(format!("user file {f}").as_str()),
            "{f} was removed or changed by the resume"
        );
    }
    // What the tool wrote is listed, and the user's files are not.
    let written = std::fs::read_to_string(dir.join("plots/.written")).unwrap();
    assert!(
        written.lines().any(|l| l == "point001-correlation.svg"),
        "{written}"
    );
    assert!(!written.contains("myplot"), "{written}");
    let _ = std::fs::remove_dir_all(&root);
}

/// A folder written by another quantdepth version is not resumed (its
/// points would come from two versions of the code; merge refuses the same
/// for shards): the error names both versions. Old code resumed it silently
/// and kept the old version in meta.json.
#[test]
fn a_folder_of_another_version_is_not_resumed() {
    let root = temp_root("version");
    let dir = reference_run(&root);
    let mut meta = Commit::read(&dir).unwrap();
    meta.version = "0.0.9".into();
    meta.status = "interrupted".into();
    meta.write(&dir).unwrap();
    let cancel = AtomicBool::new(false);
    let hooks = quiet_hooks(&cancel, &|_| {});
    let e = resume_experiment(&dir, &mut CpuBackend, "cpu", &hooks)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("quantdepth 0.0.9") && e.contains(env!("CARGO_PKG_VERSION")),
        "{e}"
    );
    assert_eq!(Commit::read(&dir).unwrap().version, "0.0.9");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_write_error_marks_the_folder_failed() {
    let root = temp_root("writeerr");
    let cancel = AtomicBool::new(false);
    let folder_of = std::sync::Mutex::new(None::<PathBuf>);
    let started = |_: usize, _: usize, _: &str, _: u64| {};
    let finished = |p: &quantdepth::experiment::runner::PointSummary| {
        if p.index == 0 {
            // points/ becomes a file: the next point's record cannot be written.
            let out = root.join("out");
            let dir = std::fs::read_dir(&out)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            std::fs::remove_dir_all(dir.join("points")).unwrap();
            std::fs::write(dir.join("points"), "not a folder").unwrap();
            *folder_of.lock().unwrap() = Some(dir);
        }
    };
    let hooks = Hooks {
        point_started: &started,
        layers: &|_| {},
        point_finished: &finished,
        cancel: &cancel,
    };
    let e = run_experiment(
        &tiny_cfg(),
        &root.join("out"),
        &mut CpuBackend,
        "cpu",
        &hooks,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot write") && !e.contains("os error"), "{e}");
    let dir = folder_of.lock().unwrap().clone().unwrap();
    let meta = Commit::read(&dir).unwrap();
    assert_eq!(meta.status, "failed");
    assert_eq!(meta.failed_point, Some(1));
    assert!(meta.error.unwrap().contains("cannot write"));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_stale_running_folder_is_recognised_and_resumed() {
    let root = temp_root("stale");
    let dir = reference_run(&root);
    // A process that has exited: its pid names no live process.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let mut meta = Commit::read(&dir).unwrap();
    meta.status = "running".into();
    meta.pid = gone_pid;
    meta.write(&dir).unwrap();
    let meta = Commit::read(&dir).unwrap();
    assert!(meta.is_stale());
    assert!(meta.effective_status().contains("stale"));
    // A live one is not stale, and is not resumed under its feet.
    let mut live = meta.clone();
    live.pid = std::process::id();
    assert!(!live.is_stale());
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    live.pid = sleeper.id();
    live.write(&dir).unwrap();
    let cancel = AtomicBool::new(false);
    let hooks = quiet_hooks(&cancel, &|_| {});
    let e = resume_experiment(&dir, &mut CpuBackend, "cpu", &hooks)
        .unwrap_err()
        .to_string();
    assert!(e.contains("being run by process"), "{e}");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let r = resume_experiment(&dir, &mut CpuBackend, "cpu", &hooks).unwrap();
    assert!(r.complete);
    let _ = std::fs::remove_dir_all(&root);
}

/// Whether a plot file is whole: an SVG closes its root element, a PNG ends
/// with its IEND chunk.
fn plot_is_whole(p: &Path) -> bool {
    let b = std::fs::read(p).unwrap();
    match p.extension().and_then(|e| e.to_str()) {
        Some("svg") => String::from_utf8_lossy(&b).trim_end().ends_with("</svg>"),
        Some("png") => b.ends_with(&[0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]),
        _ => true,
    }
}

/// The points a CSV's `point` column names.
fn csv_points(text: &str) -> Result<BTreeSet<usize>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty csv")?.split(',').collect();
    let mut out = BTreeSet::new();
    for l in lines {
        let cells: Vec<&str> = l.split(',').collect();
        if cells.len() != header.len() {
            return Err(format!("a row with {} cells: {l}", cells.len()));
        }
        out.insert(cells[0].parse::<usize>().map_err(|e| format!("{l}: {e}"))?);
    }
    Ok(out)
}

/// Checks a results folder after any stop: every file parses, and every
/// file agrees with the commit record. Hidden files (temporaries, the plot
/// staging folder) and the records/plots of the one point in flight are
/// leftovers that the commit record does not name.
fn check_folder(dir: &Path) -> Result<(), String> {
    let meta = Commit::read(dir).map_err(|e| e.to_string())?;
    let held: BTreeSet<usize> = meta.points.iter().copied().collect();
    if meta.points_done != held.len() {
        return Err(format!(
            "points_done {} vs {:?}",
            meta.points_done, meta.points
        ));
    }
    let text = std::fs::read_to_string(dir.join("config.toml")).map_err(|e| e.to_string())?;
    if folder::config_hash(&text) != meta.config_hash {
        return Err("config hash".into());
    }
    Config::from_toml(&text).map_err(|e| e.to_string())?;
    for &i in &held {
        let rec: PointRecord = folder::read_record(dir, i).map_err(|e| e.to_string())?;
        if rec.summary.index != i {
            return Err(format!("record {i} holds point {}", rec.summary.index));
        }
        for kind in ["correlation", "variance"] {
            for ext in ["svg", "png"] {
                let p = dir.join(format!("plots/point{i:03}-{kind}.{ext}"));
                if !p.is_file() {
                    return Err(format!("committed point {i} lacks {}", p.display()));
                }
            }
        }
    }
    let mut uncommitted = BTreeSet::new();
    for e in std::fs::read_dir(dir.join("points")).map_err(|e| e.to_string())? {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let i: usize = name[5..8].parse().map_err(|_| format!("stray {name}"))?;
        let _: PointRecord = folder::read_record(dir, i).map_err(|e| e.to_string())?;
        if !held.contains(&i) {
            uncommitted.insert(i);
        }
    }
    for e in std::fs::read_dir(dir.join("plots")).map_err(|e| e.to_string())? {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if !plot_is_whole(&p) {
            return Err(format!("torn plot {name}"));
        }
        if let Ok(i) = name[5..8].parse::<usize>() {
            if !held.contains(&i) {
                uncommitted.insert(i);
            }
        }
    }
    if uncommitted.len() > 1 || uncommitted.iter().any(|i| held.contains(i)) {
        return Err(format!(
            "uncommitted points {uncommitted:?} beside {held:?}"
        ));
    }
    if let Some(&u) = uncommitted.iter().next() {
        if held.iter().any(|&h| h > u) {
            return Err(format!("uncommitted point {u} before committed {held:?}"));
        }
    }
    // Aggregates: absent, or covering exactly the committed points.
    if let Ok(csv) = std::fs::read_to_string(dir.join("curves.csv")) {
        let pts = csv_points(&csv)?;
        if pts != held {
            return Err(format!("curves.csv holds {pts:?}, meta.json {held:?}"));
        }
    }
    if let Ok(t) = std::fs::read_to_string(dir.join("curves.json")) {
        let v: serde_json::Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
        let pts: BTreeSet<usize> = v
            .as_array()
            .ok_or("curves.json")?
            .iter()
            .map(|p| p["point"].as_u64().unwrap() as usize)
            .collect();
        if pts != held {
            return Err(format!("curves.json holds {pts:?}, meta.json {held:?}"));
        }
    }
    if let Ok(t) = std::fs::read_to_string(dir.join("summary.json")) {
        let v: serde_json::Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
        let pts: BTreeSet<usize> = v["points"]
            .as_array()
            .ok_or("summary.json")?
            .iter()
            .map(|p| p["index"].as_u64().unwrap() as usize)
            .collect();
        if pts != held {
            return Err(format!("summary.json holds {pts:?}, meta.json {held:?}"));
        }
    }
    if meta.status == "complete" && !dir.join("curves.csv").is_file() {
        return Err("complete without curves.csv".into());
    }
    Ok(())
}

#[test]
fn sigkill_at_any_moment_leaves_a_consistent_folder_and_resume_restores_it_bit_for_bit() {
    let root = temp_root("kill");
    let cfg = write_config(&root, KILL);
    // The uninterrupted run, through the CLI, timed to spread the kills.
    let t0 = Instant::now();
    let o = cli(&[
        "run",
        cfg.to_str().unwrap(),
        "--out",
        root.join("ref").to_str().unwrap(),
    ]);
    let full = t0.elapsed();
    assert_eq!(o.code, Some(0), "{o:?}");
    let reference = std::fs::read_dir(root.join("ref"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut census = Census::default();
    let kills = 24;
    let mut states = BTreeSet::new();
    let mut sigkills = 0;
    for k in 0..kills {
        let out = root.join(format!("k{k}"));
        let mut child = Command::new(BIN)
            .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Moments spread over the whole run, from process start to its end.
        let at = full.mul_f64(1.1 * k as f64 / kills as f64);
        std::thread::sleep(at);
        let _ = child.kill();
        let status = child.wait().unwrap();
        census.tried += 1;
        sigkills += 1;
        let Some(dir) = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path())
        else {
            continue; // killed before the folder existed
        };
        if !dir.join("meta.json").exists() {
            // Killed between creating the folder and its first record: an
            // empty folder, with at most config.toml, .lock, plots/ and
            // points/ in it, besides the temporary file of a meta.json
            // being written when the kill came.
            let names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            let n = names
                .iter()
                .filter(|n| !(n.starts_with('.') && n.ends_with(".tmp")))
                .count();
            assert!(n <= 4, "{status:?}: {names:?}");
            continue;
        }
        if let Err(why) = check_folder(&dir) {
            census.torn += 1;
            eprintln!("kill {k} at {at:?} ({status:?}): torn folder: {why}");
            continue;
        }
        let meta = Commit::read(&dir).unwrap();
        states.insert(format!("{}:{}", meta.status, meta.points_done));
        if k % 3 == 1 {
            // A resume is itself killed part-way, and leaves a consistent folder.
            let mut child = Command::new(BIN)
                .args(["run", "--resume", dir.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(full.mul_f64(0.1 + 0.8 * k as f64 / kills as f64));
            let _ = child.kill();
            child.wait().unwrap();
            census.tried += 1;
            sigkills += 1;
            if let Err(why) = check_folder(&dir) {
                census.torn += 1;
                eprintln!("kill of resume {k}: torn folder: {why}");
                continue;
            }
        }
        let o = cli(&["run", "--resume", dir.to_str().unwrap()]);
        census.count(&o);
        assert_eq!(o.code, Some(0), "kill {k}: resume {o:?}");
        check_folder(&dir).unwrap();
        assert_eq!(Commit::read(&dir).unwrap().status, "complete");
        assert_same_files(&dir, &reference);
    }
    println!(
        "{sigkills} SIGKILLs (runs and resumes); kill moments reached these commit states: {states:?}"
    );
    assert!(sigkills >= 20);
    assert!(
        states.len() >= 3,
        "the kills did not spread over the run: {states:?}"
    );
    census.report("kills");
    let _ = std::fs::remove_dir_all(&root);
}

const LONG: &str = r#"
name = "signals"
seed = 5
backend = "cpu"
[network]
width = 64
depth = 6
samples = 4
[inputs]
c0 = [0.5]
[sweep]
states = "2..200"
[outputs]
png = false
"#;

#[test]
fn sigterm_and_sighup_finish_the_folder_like_ctrl_c() {
    let root = temp_root("signals");
    let cfg = write_config(&root, LONG);
    let mut census = Census::default();
    for sig in ["-TERM", "-HUP", "-INT"] {
        let out = root.join(sig);
        let child = Command::new(BIN)
            .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until a point is committed.
        let deadline = Instant::now() + HANG;
        let dir = loop {
            assert!(Instant::now() < deadline, "no point committed");
            let found = std::fs::read_dir(&out)
                .ok()
                .and_then(|mut d| d.next())
                .map(|e| e.unwrap().path());
            if let Some(d) = found {
                if Commit::read(&d).is_ok_and(|m| m.points_done >= 1) {
                    break d;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The shell's built-in kill (no procps needed).
        let ok = Command::new("sh")
            .args(["-c", &format!("kill {sig} {}", child.id())])
            .status()
            .unwrap();
        assert!(ok.success());
        let o = wait_with_timeout(child, HANG);
        census.count(&o);
        assert_eq!(o.code, Some(130), "{sig}: {o:?}");
        // The last line says how to continue.
        let resume = format!("quantdepth run --resume {}", dir.display());
        assert!(o.stdout.contains(&resume), "{sig}: {o:?}");
        let meta = Commit::read(&dir).unwrap();
        assert_eq!(meta.status, "interrupted", "{sig}");
        assert!(meta.points_done >= 1 && meta.points_done < 199, "{sig}");
        check_folder_no_png(&dir);
    }
    census.report("signals");
    let _ = std::fs::remove_dir_all(&root);
}

/// [`check_folder`]'s agreement checks for a folder without PNGs.
fn check_folder_no_png(dir: &Path) {
    let meta = Commit::read(dir).unwrap();
    let held: BTreeSet<usize> = meta.points.iter().copied().collect();
    let csv = std::fs::read_to_string(dir.join("curves.csv")).unwrap();
    assert_eq!(csv_points(&csv).unwrap(), held);
}

// ---- bounded fuzzing ----------------------------------------------------

fn pick<T: Clone + std::fmt::Debug + 'static>(v: Vec<T>) -> impl Strategy<Value = T> {
    proptest::sample::select(v)
}

fn float() -> impl Strategy<Value = String> {
    prop_oneof![
        pick(
            [
                "0.0", "-0.0", "1e-320", "1e-162", "1e-100", "0.5", "1.0", "2.0", "1e155", "1e308",
                "-1.0", "nan", "inf", "-inf", "0.9", "1.5"
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        ),
        (-3.0f64..3.0).prop_map(|x| format!("{x:?}")),
    ]
}

fn int() -> impl Strategy<Value = String> {
    pick(
        [
            "0",
            "1",
            "2",
            "3",
            "4",
            "7",
            "16",
            "-1",
            "1048576",
            "1048577",
            "4294967296",
            "9223372036854775807",
            "\"2..5\"",
            "\"5..2\"",
            "\"2..10000001\"",
            "\"\"",
            "\"x\"",
            "[]",
            "[2, 3]",
            "1.5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
}

fn sigma_w_value() -> impl Strategy<Value = String> {
    prop_oneof![
        float(),
        pick(
            [
                "\"opt\"",
                "\"opt+0.1\"",
                "\"opt-0.1\"",
                "\"opt+1e308\"",
                "\"opt-1e308\"",
                "\"opt+nan\"",
                "\"x\""
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        ),
    ]
}

/// Mostly a valid value, sometimes one from the edges of the range or past them.
fn mostly(
    good: impl Strategy<Value = String> + 'static,
    edge: impl Strategy<Value = String> + 'static,
) -> BoxedStrategy<String> {
    prop_oneof![4 => good, 1 => edge].boxed()
}

/// Absent (weight `none`) or present.
fn maybe(none: u32, v: BoxedStrategy<String>) -> BoxedStrategy<Option<String>> {
    prop_oneof![none => Just(None), 1 => v.prop_map(Some)].boxed()
}

fn int_in(r: std::ops::Range<u32>) -> BoxedStrategy<String> {
    r.prop_map(|x| x.to_string()).boxed()
}

fn float_in(r: std::ops::Range<f64>) -> BoxedStrategy<String> {
    r.prop_map(|x| format!("{x:?}")).boxed()
}

/// A config: each key present or not, mostly valid, with values from the
/// edges of their ranges and past them (a fifth of the time per key).
fn config_text() -> impl Strategy<Value = String> {
    let name = mostly(
        Just("t".to_string()),
        pick(
            ["", ".", "..", "-x", "a/b", "a\\nb", "x\\u202Ey", " t"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
    );
    let activation = pick(
        [
            "\"tanh\"",
            "\"hard-tanh\"",
            "\"linear\"",
            "\"sign\"",
            "\"uniform\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .boxed();
    let sw_good = prop_oneof![
        Just("\"opt\"".to_string()),
        Just("\"opt+0.1\"".to_string()),
        float_in(0.3..2.0)
    ];
    (
        (
            name,
            maybe(6, activation),
            maybe(1, mostly(int_in(2..9), int())),
            maybe(2, mostly(sw_good, sigma_w_value())),
        ),
        (
            maybe(2, mostly(float_in(0.0..0.5), float())),
            maybe(4, mostly(float_in(0.5..2.0), float())),
            maybe(4, mostly(float_in(0.3..2.0), float())),
        ),
        (
            maybe(0, mostly(int_in(2..17), int())),
            maybe(0, mostly(int_in(1..7), int())),
            maybe(2, mostly(int_in(1..5), int())),
        ),
        (
            prop_oneof![4 => Just(false), 1 => Just(true)],
            maybe(1, mostly(int_in(3..9), int())),
            maybe(1, mostly(float_in(-1.0..1.0), float())),
            maybe(1, mostly(int_in(1..3), int())),
        ),
        (
            maybe(3, mostly(Just("[2, 3]".to_string()), int())),
            maybe(3, mostly(Just("[4, 8]".to_string()), int())),
            maybe(6, mostly(float_in(1.0..10.0), float())),
            maybe(6, mostly(float_in(0.5..2.0), float())),
        ),
    )
        .prop_map(
            |(
                (name, act, states, sw),
                (sb, amp, spacing),
                (width, depth, samples),
                (circle, points, c0, pairs),
                (sweep_states, sweep_width, kappa, m),
            )| {
                let mut t = format!("name = \"{name}\"\nbackend = \"cpu\"\n");
                if let Some(k) = kappa {
                    t += &format!("kappa = {k}\n");
                }
                t += "[network]\n";
                let mut kv = |k: &str, v: &Option<String>| {
                    if let Some(v) = v {
                        t += &format!("{k} = {v}\n");
                    }
                };
                kv("activation", &act);
                kv("states", &states);
                kv("sigma_w", &sw);
                kv("sigma_b", &sb);
                kv("amplitude", &amp);
                kv("spacing", &spacing);
                kv("width", &width);
                kv("depth", &depth);
                kv("samples", &samples);
                t += "[inputs]\n";
                t += if circle {
                    "kind = \"circle\"\n"
                } else {
                    "kind = \"pairs\"\n"
                };
                if circle {
                    if let Some(p) = points {
                        t += &format!("points = {p}\n");
                    }
                } else {
                    if let Some(c) = c0 {
                        t += &format!("c0 = [{c}]\n");
                    }
                    if let Some(p) = pairs {
                        t += &format!("pairs = {p}\n");
                    }
                }
                t += "[sweep]\n";
                if let Some(s) = sweep_states {
                    t += &format!("states = {s}\n");
                }
                if let Some(w) = sweep_width {
                    t += &format!("width = {w}\n");
                }
                t += "[outputs]\nplots = false\n";
                if let Some(m) = m {
                    if !circle {
                        t += &format!("[backward]\nm = [{m}]\n");
                    }
                }
                t
            },
        )
}

/// Small accepted configs seen so far.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Runs a generated config as far as it goes: parse, plan, and for small
/// sweeps the theory of every point and (tiny sizes) the whole experiment.
fn exercise(text: &str, root: &Path) -> Result<(), String> {
    let cfg = Config::from_toml(text).map_err(|e| e.to_string())?;
    let plan = quantdepth::experiment::plan::plan_run(&cfg, false).map_err(|e| e.to_string());
    if cfg.kind == quantdepth::experiment::config::Kind::Optimal {
        return Ok(());
    }
    plan?;
    let points = cfg.points().map_err(|e| e.to_string())?;
    let small = points.len() <= 8
        && points.iter().all(|p| {
            p.states.unwrap_or(2) <= 64 && p.width <= 32 && p.depth <= 16 && p.samples <= 8
        });
    if !small {
        return Ok(());
    }
    // The theory of every point; the whole experiment for one small config
    // in eight (a run writes a folder: the budget is time, not coverage).
    for p in &points {
        quantdepth::experiment::runner::resolve_point(p).map_err(|e| e.to_string())?;
    }
    if !RUNS.fetch_add(1, Ordering::Relaxed).is_multiple_of(8) {
        return Ok(());
    }
    let cancel = AtomicBool::new(false);
    let hooks = quiet_hooks(&cancel, &|_| {});
    run_experiment(&cfg, root, &mut CpuBackend, "cpu", &hooks)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn fuzzed_configs_never_panic_or_hang() {
    let root = temp_root("fuzz");
    // A hang is a failure too: the watchdog ends the test binary.
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(240) {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("fuzzed configs: a case hangs (over 240 s)");
        std::process::exit(3);
    });
    let (ok, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 2500,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let t0 = Instant::now();
    runner
        .run(&config_text(), |text| {
            let r = std::panic::catch_unwind(|| exercise(&text, &root));
            match r {
                Ok(Ok(())) => ok.fetch_add(1, Ordering::Relaxed),
                Ok(Err(msg)) => {
                    // Refusals say something, in the user's terms.
                    prop_assert!(!msg.is_empty() && !msg.contains("Num("), "{text}: {msg}");
                    refused.fetch_add(1, Ordering::Relaxed)
                }
                Err(_) => {
                    return Err(TestCaseError::fail(format!("panic on config:\n{text}")));
                }
            };
            Ok(())
        })
        .unwrap();
    done.store(true, Ordering::SeqCst);
    let (ok, refused) = (ok.into_inner(), refused.into_inner());
    println!(
        "fuzzed configs: {} cases ({ok} accepted, {refused} refused) in {:.1} s",
        ok + refused,
        t0.elapsed().as_secs_f64()
    );
    Census {
        tried: ok + refused,
        ..Default::default()
    }
    .report("fuzzed configs");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn fuzzed_command_lines_never_panic_hang_or_abort() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let floats = [
        "0", "-0", "1e-320", "1e-162", "1e-100", "0.5", "1", "2", "1e155", "1e308", "-1", "nan",
        "inf", "-inf", "0.99",
    ];
    let ints = [
        "0",
        "1",
        "2",
        "3",
        "4",
        "16",
        "-1",
        "1048577",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "x",
    ];
    let mut census = Census::default();
    let t0 = Instant::now();
    for _ in 0..300 {
        let cmd = rng.random_range(0..4);
        let mut args: Vec<String> = match cmd {
            0 => vec!["theory".into(), "curve".into()],
            1 => vec!["theory".into(), "optimal".into()],
            2 => vec!["theory".into(), "backward".into()],
            _ => vec!["simulate".into(), "--backend".into(), "cpu".into()],
        };
        let f =
            |rng: &mut rand::rngs::StdRng| floats[rng.random_range(0..floats.len())].to_string();
        let i = |rng: &mut rand::rngs::StdRng| ints[rng.random_range(0..ints.len())].to_string();
        // Sizes small enough to finish when valid; values at every edge.
        let small =
            |rng: &mut rand::rngs::StdRng| ["1", "2", "3", "8"][rng.random_range(0..4)].to_string();
        let mut push = |k: &str, v: String| {
            args.push(k.into());
            args.push(v);
        };
        if cmd == 1 {
            push(
                "--states",
                if rng.random_bool(0.5) {
                    i(&mut rng)
                } else {
                    small(&mut rng)
                },
            );
            if rng.random_bool(0.5) {
                push("--kappa", f(&mut rng));
            }
        } else {
            if rng.random_bool(0.8) {
                push(
                    "--states",
                    if rng.random_bool(0.3) {
                        i(&mut rng)
                    } else {
                        small(&mut rng)
                    },
                );
            } else {
                push("--activation", "tanh".into());
            }
            for k in ["--sigma-w", "--sigma-b", "--spacing", "--amplitude", "--q0"] {
                if rng.random_bool(0.3) {
                    push(k, f(&mut rng));
                }
            }
            push(
                "--depth",
                if rng.random_bool(0.3) {
                    i(&mut rng)
                } else {
                    small(&mut rng)
                },
            );
            if cmd == 3 {
                push("--c0", f(&mut rng));
                push(
                    "--width",
                    if rng.random_bool(0.3) {
                        i(&mut rng)
                    } else {
                        small(&mut rng)
                    },
                );
                push(
                    "--samples",
                    if rng.random_bool(0.3) {
                        i(&mut rng)
                    } else {
                        small(&mut rng)
                    },
                );
                if rng.random_bool(0.3) {
                    push("--pairs", i(&mut rng));
                }
            } else if rng.random_bool(0.5) {
                push("--c0", f(&mut rng));
            }
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = cli(&refs);
        census.count(&o);
        assert!(
            matches!(o.code, Some(0) | Some(1) | Some(2)) && !o.timed_out,
            "{args:?}: {o:?}"
        );
    }
    println!(
        "fuzzed command lines: 300 in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    census.report("fuzzed command lines");
}

/// With no adapter on the backends wgpu may try, `--backend gpu` names
/// those backends (here only Metal, which Linux does not have) instead of
/// landing silently elsewhere; `--backend auto` falls back to the CPU and
/// says why.
#[cfg(target_os = "linux")]
#[test]
fn no_adapter_names_the_backends_tried() {
    let run = |backend: &str| {
        let child = Command::new(BIN)
            .args([
                "simulate",
                "--backend",
                backend,
                "--states",
                "4",
                "--c0",
                "0.5",
                "--width",
                "64",
                "--depth",
                "2",
                "--samples",
                "2",
            ])
            .env("WGPU_BACKEND", "metal")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_with_timeout(child, HANG)
    };
    let o = run("gpu");
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("no GPU adapter found (tried wgpu's Metal backend(s)"),
        "{}",
        o.stderr
    );
    let o = run("auto");
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stderr.contains("backend auto: no hardware GPU")
            && o.stderr.contains("Metal")
            && o.stderr.contains("took the CPU backend"),
        "{}",
        o.stderr
    );
}
