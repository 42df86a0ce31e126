//! Training checkpoints and `run --resume` of training folders, and training
//! configs on shards: a study stopped anywhere — SIGKILL at random moments,
//! SIGTERM, a cancel at a chosen step, a damaged checkpoint — and resumed
//! ends with the files of an uninterrupted run (training.csv byte for byte,
//! summary.json apart from timings); a training config run as 3 shards and
//! merged ends with the unsharded run's files.
//!
//! The data is a synthetic MNIST-format folder the test writes (6×6 images
//! of a learnable 10-class problem), the networks tiny: the whole file runs
//! in well under a minute in release on two cores.

use quantdepth::experiment::folder::Commit;
use quantdepth::experiment::runner::run_shard;
use quantdepth::experiment::shard::Shard;
use quantdepth::experiment::{resume_experiment, run_experiment, Config, Hooks, RunReport};
use quantdepth::sim::cpu::CpuBackend;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_quantdepth");

mod common;
use common::data::write_dataset;

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("quantdepth-ckpt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The study: 4 networks (N = 2, 4 × depth 3, 4), 400 steps
/// of batch 16 on 600 images (37 steps an epoch, so checkpoints fall
/// mid-epoch), reports at 100, 250, 400. `extra` adds `[training]` keys.
fn config_text(data: &Path, extra: &str) -> String {
    config_on("cpu", data, extra)
}

/// [`config_text`] on `backend`.
fn config_on(backend: &str, data: &Path, extra: &str) -> String {
    format!(
        r#"name = "ckpt"
kind = "training"
seed = 7
backend = "{backend}"

[training]
data = "{}"
states = [2, 4]
depth = [3, 4]
width = 24
lr = [0.05]
batch = 16
steps = [250, 400]
report_at = [100]
eval_train = 200
eval_test = 200
{extra}

[outputs]
png = false
"#,
        data.display()
    )
}

fn hooks_with<'a>(cancel: &'a AtomicBool, layers: &'a (dyn Fn(u64) + Sync)) -> Hooks<'a> {
    Hooks {
        point_started: &|_, _, _, _| {},
        layers,
        point_finished: &|_| {},
        cancel,
    }
}

fn run(cfg: &Config, root: &Path) -> RunReport {
    let cancel = AtomicBool::new(false);
    run_experiment(
        cfg,
        root,
        &mut CpuBackend,
        "",
        &hooks_with(&cancel, &|_| {}),
    )
    .unwrap()
}

fn resume(dir: &Path) -> RunReport {
    let cancel = AtomicBool::new(false);
    resume_experiment(dir, &mut CpuBackend, "", &hooks_with(&cancel, &|_| {})).unwrap()
}

/// summary.json without the fields that time the run.
fn summary_without_timings(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for k in [
                    "train_seconds",
                    "eval_seconds",
                    "train_mac_per_s",
                    "throughput",
                ] {
                    m.remove(k);
                }
                m.values_mut().for_each(walk);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// training.csv byte for byte, summary.json apart from timings, the same
/// plots byte for byte, and a complete commit record naming every point.
fn assert_same_results(got: &Path, want: &Path) {
    let csv = |d: &Path| std::fs::read(d.join("training.csv")).unwrap();
    assert!(
        csv(got) == csv(want),
        "training.csv of {} differs from the uninterrupted run's:\n{}\nvs\n{}",
        got.display(),
        String::from_utf8_lossy(&csv(got)),
        String::from_utf8_lossy(&csv(want))
    );
    assert_eq!(
        summary_without_timings(got),
        summary_without_timings(want),
        "summary.json of {} differs beyond timings",
        got.display()
    );
    let plots = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d.join("plots"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let (pg, pw) = (plots(got), plots(want));
    assert!(!pw.is_empty(), "the reference drew no plots");
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&pg), names(&pw), "other plots");
    for (a, b) in pg.iter().zip(&pw) {
        assert!(a.1 == b.1, "plots/{} differs", a.0);
    }
    let meta = Commit::read(got).unwrap();
    assert_eq!(meta.status, "complete");
    assert_eq!(meta.points, Commit::read(want).unwrap().points);
}

fn checkpoints(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("checkpoints"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn only_dir(parent: &Path) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = std::fs::read_dir(parent)
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert!(dirs.len() <= 1, "{dirs:?}");
    dirs.into_iter().next()
}

/// A splitmix64 stream: the kill moments, fixed by the seed.
struct Moments(u64);

impl Moments {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A study SIGKILLed at 12 random moments (fixed seed), each time resumed
/// with `run --resume` (itself killed in turn), ends with the files of the
/// uninterrupted run. A study that completes before its kill is compared and
/// a new one started, so every kill lands in a running process. Old code:
/// `run --resume` refuses training folders.
#[test]
fn sigkill_at_random_moments_then_resume_ends_as_the_uninterrupted_run() {
    let root = temp("kill");
    let data = root.join("data");
    write_dataset(&data, 600, 200);
    let config = root.join("ckpt.toml");
    std::fs::write(&config, config_text(&data, "checkpoint_steps = 15")).unwrap();
    // The uninterrupted run, through the command line, timed to place the kills.
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(["run", config.to_str().unwrap(), "--out"])
        .arg(root.join("ref"))
        .output()
        .unwrap();
    let full = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = only_dir(&root.join("ref")).unwrap();
    eprintln!("uninterrupted run: {:.2} s", full.as_secs_f64());
    let mut moments = Moments(20_261_204);
    let (mut kills, mut studies, mut compared) = (0, 0, 0);
    // Kills that found a point's checkpoint on disk (a resume continues it).
    let mut mid_point = 0;
    let mut dir: Option<PathBuf> = None;
    while kills < 12 {
        let mut cmd = Command::new(BIN);
        match &dir {
            Some(d) => cmd.args(["run", "--resume", d.to_str().unwrap()]),
            None => {
                studies += 1;
                let out = root.join(format!("study{studies}"));
                cmd.args([
                    "run",
                    config.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                ])
            }
        };
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Between 5 % and 45 % of an uninterrupted run.
        let at = full.mul_f64(0.05 + 0.4 * moments.uniform());
        std::thread::sleep(at);
        let finished = child.try_wait().unwrap();
        let _ = child.kill();
        let status = child.wait().unwrap();
        let folder = dir
            .clone()
            .or_else(|| only_dir(&root.join(format!("study{studies}"))));
        if finished.is_some() {
            assert!(status.success(), "{status:?}");
            let d = folder.expect("a finished run has its folder");
            assert_same_results(&d, &reference);
            assert!(checkpoints(&d).is_empty(), "{:?}", checkpoints(&d));
            compared += 1;
            dir = None;
            continue;
        }
        kills += 1;
        let Some(d) = folder.filter(|d| d.join("meta.json").is_file()) else {
            continue; // killed before the folder had its first record: start again
        };
        if checkpoints(&d).iter().any(|n| n.ends_with(".ckpt")) {
            mid_point += 1;
        }
        dir = Some(d);
    }
    if let Some(d) = dir {
        let out = Command::new(BIN)
            .args(["run", "--resume", d.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_results(&d, &reference);
        assert!(checkpoints(&d).is_empty(), "{:?}", checkpoints(&d));
        compared += 1;
    }
    eprintln!(
        "{kills} SIGKILLs over {studies} studies, {mid_point} with a checkpoint on disk; \
         {compared} completed studies equal the uninterrupted run"
    );
    assert!(compared >= 1);
    // Kills land every ~25 % of a run with a checkpoint every 15 of 400
    // steps: most find one on disk (none would mean checkpoints are not used).
    assert!(
        mid_point >= 4,
        "only {mid_point} of {kills} kills found a checkpoint"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// SIGTERM part-way through a point: the run saves that point's state (no
/// periodic checkpoint is due: checkpoint_seconds is a day), marks the
/// folder interrupted and exits 130 with the resume command; the resume ends
/// as the uninterrupted run. `keep_checkpoints = true` keeps the checkpoint.
#[test]
fn sigterm_saves_the_point_in_training_and_resume_finishes_it() {
    let root = temp("term");
    let data = root.join("data");
    write_dataset(&data, 600, 200);
    let config = root.join("ckpt.toml");
    // One network at a time: the point in training is the one after those done.
    let extra = "checkpoint_seconds = 86400\nkeep_checkpoints = true\nconcurrent = 1";
    // Ten times the steps, so that a point lasts long enough (~0.1 s or
    // more) for the signal to land after its first step.
    let long = |extra: &str| {
        config_text(&data, extra).replace(
            "steps = [250, 400]\nreport_at = [100]",
            "steps = [2500, 4000]\nreport_at = [1000]",
        )
    };
    assert!(long("").contains("steps = [2500, 4000]"));
    std::fs::write(&config, long(extra)).unwrap();
    let reference = run(
        &Config::from_toml(&long("concurrent = 1")).unwrap(),
        &root.join("ref"),
    )
    .folder;
    let out = root.join("term");
    let child = Command::new(BIN)
        .args([
            "run",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Until the first point is committed: the signal then comes part-way
    // through a later one (the points take ~0.1 s each).
    let deadline = Instant::now() + Duration::from_secs(60);
    let dir = loop {
        assert!(Instant::now() < deadline, "no point committed in 60 s");
        if let Some(d) = only_dir(&out) {
            if Commit::read(&d).is_ok_and(|m| m.points_done >= 1) {
                break d;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // A little later, so that the next point has taken its first steps (a
    // signal before its first step leaves nothing to save).
    std::thread::sleep(Duration::from_millis(20));
    let sent = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    if o.status.success() {
        // The whole study ended before the signal came: nothing to resume.
        eprintln!("the study finished before SIGTERM; checking its files only");
        assert_same_results(&dir, &reference);
        return;
    }
    assert_eq!(o.status.code(), Some(130), "{stdout}");
    assert!(
        stdout.contains(&format!("quantdepth run --resume {}", dir.display())),
        "{stdout}"
    );
    let meta = Commit::read(&dir).unwrap();
    assert_eq!(meta.status, "interrupted");
    let held = meta.points_done;
    let ckpt = format!("point{held:03}.ckpt");
    assert!(
        checkpoints(&dir).contains(&ckpt),
        "no {ckpt} after SIGTERM: {:?}",
        checkpoints(&dir)
    );
    let r = resume(&dir);
    assert!(r.complete, "{}", r.table);
    assert!(!r.table.contains("not used"), "{}", r.table);
    assert_same_results(&dir, &reference);
    // keep_checkpoints: the point that was stopped keeps its checkpoint.
    assert!(checkpoints(&dir).contains(&ckpt), "{:?}", checkpoints(&dir));
    let _ = std::fs::remove_dir_all(&root);
}

/// Runs the study with a cancel raised after `stop` steps of its third
/// network (point 2), as Ctrl-C would; returns the folder.
fn cancelled_at(cfg: &Config, root: &Path, stop: u64) -> PathBuf {
    cancelled_in(cfg, root, 2, stop)
}

/// [`cancelled_at`] in point `at`.
fn cancelled_in(cfg: &Config, root: &Path, at: usize, stop: u64) -> PathBuf {
    let cancel = AtomicBool::new(false);
    let point = std::sync::atomic::AtomicUsize::new(0);
    let started = |i: usize, _: usize, _: &str, _: u64| point.store(i, Ordering::SeqCst);
    let layers = |s: u64| {
        if point.load(Ordering::SeqCst) == at && s == stop {
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let hooks = Hooks {
        point_started: &started,
        layers: &layers,
        point_finished: &|_| {},
        cancel: &cancel,
    };
    let r = run_experiment(cfg, root, &mut CpuBackend, "", &hooks).unwrap();
    assert!(!r.complete);
    r.folder
}

/// A cancel at a chosen step (mid-epoch, between two reports) leaves a
/// checkpoint of exactly that step; the resume continues from it to the
/// uninterrupted run's files. The same checkpoint damaged (one byte
/// flipped) is refused with a warning naming why, and the point restarts
/// from its initialization to the same files.
#[test]
fn cancel_then_resume_and_a_damaged_checkpoint_restarts_the_point() {
    let root = temp("cancel");
    let data = root.join("data");
    write_dataset(&data, 600, 200);
    // One network at a time, so that the cancel falls in a known point.
    let cfg = Config::from_toml(&config_text(&data, "concurrent = 1")).unwrap();
    let reference = run(&cfg, &root.join("ref")).folder;
    // Step 173: epoch 4 (37 steps each), between the reports at 100 and 250.
    let dir = cancelled_at(&cfg, &root.join("a"), 173);
    assert_eq!(Commit::read(&dir).unwrap().points, vec![0, 1]);
    assert_eq!(checkpoints(&dir), vec!["point002.ckpt"]);
    let r = resume(&dir);
    assert!(r.complete && !r.table.contains("not used"), "{}", r.table);
    assert_same_results(&dir, &reference);
    assert!(checkpoints(&dir).is_empty(), "{:?}", checkpoints(&dir));

    let dir = cancelled_at(&cfg, &root.join("b"), 173);
    let ckpt = dir.join("checkpoints/point002.ckpt");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&ckpt, bytes).unwrap();
    let r = resume(&dir);
    assert!(r.complete);
    assert!(
        r.table
            .contains("warning: the checkpoint of point 2 is not used")
            && r.table.contains("CRC-32 does not match")
            && r.table.contains("restarted from its initialization"),
        "{}",
        r.table
    );
    assert_same_results(&dir, &reference);

    // Two networks at once: a cancel at step 173 of the first worker's
    // point reaches both workers; each point in training keeps a
    // checkpoint (the first worker's at least: the other may be between
    // two points), and the resume (also two at once) ends as the
    // one-at-a-time reference (training.csv byte for byte).
    let cfg2 = Config::from_toml(&config_text(&data, "concurrent = 2")).unwrap();
    let cancel = AtomicBool::new(false);
    // The step bar follows the first worker (point 0 first).
    let layers = |s: u64| {
        if s == 173 {
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let r = run_experiment(
        &cfg2,
        &root.join("c"),
        &mut CpuBackend,
        "",
        &hooks_with(&cancel, &layers),
    )
    .unwrap();
    assert!(!r.complete);
    let dir = r.folder;
    let held = Commit::read(&dir).unwrap().points.len();
    let ckpts = checkpoints(&dir).len();
    assert!(
        (1..=2).contains(&ckpts) && held + ckpts <= 4 && held < 4,
        "{held} points done, checkpoints {:?}",
        checkpoints(&dir)
    );
    let r = resume(&dir);
    assert!(r.complete && !r.table.contains("not used"), "{}", r.table);
    let csv = |d: &Path| std::fs::read(d.join("training.csv")).unwrap();
    assert!(csv(&dir) == csv(&reference), "training.csv differs");
    let _ = std::fs::remove_dir_all(&root);
}

/// The same on the GPU backend (the software adapter in CI): a cancel at a
/// step leaves a checkpoint read back from the device (weights, momentum,
/// per-position loss sums), and the resume ends as the uninterrupted GPU run.
#[test]
fn gpu_training_cancelled_then_resumed_ends_as_the_uninterrupted_gpu_run() {
    use quantdepth::sim::gpu::AdapterPolicy;
    use quantdepth::train::gpu::GpuTrainBackend;
    if common::or_skip(
        GpuTrainBackend::new(AdapterPolicy::PreferHardware),
        "GPU checkpoint test",
    )
    .is_none()
    {
        return;
    }
    let root = temp("gpu");
    let data = root.join("data");
    write_dataset(&data, 600, 200);
    // Networks of depth 2 and 3 and 200 steps (the software adapter is
    // slow); the cancel at step 77 of the third: epoch 3, before the report
    // at 100.
    let text = config_on("gpu", &data, "")
        .replace("depth = [3, 4]", "depth = [2, 3]")
        .replace("steps = [250, 400]", "steps = [120, 200]");
    let cfg = Config::from_toml(&text).unwrap();
    let reference = run(&cfg, &root.join("ref")).folder;
    let dir = cancelled_in(&cfg, &root.join("a"), 2, 77);
    assert_eq!(checkpoints(&dir), vec!["point002.ckpt"]);
    let r = resume(&dir);
    assert!(r.complete && !r.table.contains("not used"), "{}", r.table);
    assert_same_results(&dir, &reference);
    let _ = std::fs::remove_dir_all(&root);
}

/// The training config as 3 shards (`run --shard K/3`), merged, equals the
/// unsharded run: training.csv byte for byte, summary.json apart from
/// timings, the plots. Old code: `--shard` refuses training configs.
#[test]
fn training_shards_merge_to_the_unsharded_run() {
    let root = temp("shards");
    let data = root.join("data");
    write_dataset(&data, 600, 200);
    let cfg = Config::from_toml(&config_text(&data, "")).unwrap();
    let reference = run(&cfg, &root.join("ref")).folder;
    let cancel = AtomicBool::new(false);
    let shards = root.join("shards");
    let mut dirs = Vec::new();
    let mut held = Vec::new();
    for k in 0..3 {
        let r = run_shard(
            &cfg,
            &shards,
            Shard { index: k, count: 3 },
            &mut CpuBackend,
            "",
            &hooks_with(&cancel, &|_| {}),
        )
        .unwrap();
        assert!(r.complete);
        held.extend(Commit::read(&r.folder).unwrap().points);
        dirs.push(r.folder);
    }
    held.sort_unstable();
    assert_eq!(held, vec![0, 1, 2, 3], "every point in exactly one shard");
    let merged = root.join("merged");
    let r = quantdepth::experiment::merge::merge(&merged, &dirs).unwrap();
    assert!(r.complete);
    assert_same_results(&merged, &reference);
    let _ = std::fs::remove_dir_all(&root);
}

/// Several networks at once (`training.concurrent`, each on one thread with
/// its own backend) give the bits of one at a time: training.csv byte for
/// byte, summary.json apart from timings and the backend's description,
/// the plots. 3 workers for 4 points, so a worker takes a second point and
/// they finish out of sweep order.
#[test]
fn concurrent_points_give_the_bits_of_one_at_a_time() {
    let root = temp("concurrent");
    let data = root.join("data");
    write_dataset(&data, 600, 200);
    let one = run(
        &Config::from_toml(&config_text(&data, "concurrent = 1")).unwrap(),
        &root.join("one"),
    )
    .folder;
    let three = run(
        &Config::from_toml(&config_text(&data, "concurrent = 3")).unwrap(),
        &root.join("three"),
    )
    .folder;
    let backend = |d: &Path| summary_without_timings(d)["backend"].clone();
    assert!(
        backend(&one).as_str().unwrap().ends_with(" threads)"),
        "{}",
        backend(&one)
    );
    assert_eq!(
        backend(&three),
        serde_json::json!("cpu (3 networks at once, one thread each)")
    );
    let without_backend = |d: &Path| {
        let mut v = summary_without_timings(d);
        v.as_object_mut().unwrap().remove("backend");
        v
    };
    assert_eq!(without_backend(&one), without_backend(&three));
    let csv = |d: &Path| std::fs::read(d.join("training.csv")).unwrap();
    assert!(csv(&one) == csv(&three), "training.csv differs");
    assert_eq!(Commit::read(&three).unwrap().points, vec![0, 1, 2, 3]);
    let _ = std::fs::remove_dir_all(&root);
}
