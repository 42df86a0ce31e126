//! Nothing outside a results folder is ever touched, nothing hangs on a
//! FIFO or reads a device without end, one process at a time writes a
//! folder, and no damaged record makes a folder unresumable (issue 21,
//! cases 1, 2, 6, 7 and 8, and the symlink-and-FIFO fuzz).
//!
//! The scenarios run the binary as a user would. `QUANTDEPTH_TEST_BIN`
//! runs them against another build (how each was checked to fail before
//! the fix). Each test prints a `census` line (cases tried, panics, hangs,
//! aborts, torn folders, writes outside); `scripts/robustness_census.sh`
//! collects them.

use quantdepth::experiment::folder::{self, Commit};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a command may take before it counts as a hang (a refusal takes
/// milliseconds, a resume of these folders under a second; the bound only
/// separates answers from hangs on a loaded 2-core machine).
const HANG: Duration = Duration::from_secs(30);

fn bin() -> String {
    std::env::var("QUANTDEPTH_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_quantdepth").into())
}

fn temp_root(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("quantdepth-fs-{tag}-{}", std::process::id()));
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

fn spawn(args: &[&str]) -> Child {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait(mut child: Child, timeout: Duration) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    let mut err = child.stderr.take().unwrap();
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut out = child.stdout.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
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
    wait(spawn(args), HANG)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Census of one category.
#[derive(Default)]
struct Census {
    tried: usize,
    panics: usize,
    hangs: usize,
    aborts: usize,
    torn: usize,
    outside: usize,
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
            "census {category}: inputs tried {}, panics {}, hangs {}, aborts {}, torn folders {}, \
             writes outside {}",
            self.tried, self.panics, self.hangs, self.aborts, self.torn, self.outside
        );
        assert_eq!(
            (
                self.panics,
                self.hangs,
                self.aborts,
                self.torn,
                self.outside
            ),
            (0, 0, 0, 0, 0),
            "{category}"
        );
    }
}

/// Six points of a small sweep: each runs in milliseconds, with per-point
/// plots (SVG only).
const SMALL: &str = r#"
name = "fs"
seed = 5
backend = "cpu"
[network]
width = 32
depth = 4
samples = 3
[inputs]
c0 = [0.3, 0.8]
[sweep]
states = [2, 3, 4, 5, 6, 8]
[outputs]
png = false
"#;

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The one folder under `parent`.
fn only_dir(parent: &Path) -> PathBuf {
    let mut d: Vec<PathBuf> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(d.len(), 1, "{d:?}");
    d.pop().unwrap()
}

/// A complete run of `cfg` through the command line, under `out`.
fn complete_run(cfg: &Path, out: &Path) -> PathBuf {
    let o = cli(&["run", s(cfg), "--out", s(out)]);
    assert_eq!(o.code, Some(0), "{o:?}");
    only_dir(out)
}

/// `dir` made to look interrupted after its first `held` points: meta.json
/// names only them (the later records and plots stay, as leftovers).
fn interrupt(dir: &Path, held: usize) {
    let mut meta = Commit::read(dir).unwrap();
    meta.status = "interrupted".into();
    meta.complete = false;
    meta.points.truncate(held);
    meta.points_done = meta.points.len();
    meta.write(dir).unwrap();
}

/// Every file and folder under `dir` (links not followed): its kind, and
/// for a regular file its bytes' FNV-1a hash; FIFOs and devices are
/// listed, never opened.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(d) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                walk(&p, out);
                "dir".into()
            } else if ft.is_file() {
                format!(
                    "file {}",
                    folder::config_hash(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()))
                )
            } else {
                quantdepth::safe_fs::kind_of(&ft).to_string()
            };
            out.insert(p, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(s(p)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "{}",
        p.display()
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let dst = to.join(e.file_name());
        if ft.is_dir() {
            copy_tree(&e.path(), &dst);
        } else if ft.is_file() {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// The aggregates and plots of a folder, meta.json and timings left out:
/// what a resumed run must reproduce bit for bit.
fn results(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "plots", "points"] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for p in names {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name == "meta.json" || sub == "points" {
                out.push((format!("{sub}/{name}"), Vec::new()));
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("\"wall_seconds\""))
                .collect();
            out.push((format!("{sub}/{name}"), kept.join("\n").into_bytes()));
        }
    }
    out
}

fn assert_same_results(got: &Path, want: &Path) {
    let (a, b) = (results(got), results(want));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs from the uninterrupted run's");
    }
}

// ---- case 1: a symlinked plots/ or points/ ------------------------------

/// `run --resume` emptied whatever `DIR/plots` linked to (clean_leftovers
/// followed the link and removed every entry not named point…, and the
/// plots of uncommitted points). Now the link is refused before anything is
/// removed: the outside folder is byte-identical (3 entries before and
/// after), the results folder untouched; once the link is replaced by a
/// folder, as the message says, the resume completes.
#[test]
fn a_symlinked_plots_or_points_folder_is_refused_and_its_target_untouched() {
    let root = temp_root("case1");
    let cfg = write_config(&root, SMALL);
    let mut census = Census::default();
    for sub in ["plots", "points"] {
        let dir = complete_run(&cfg, &root.join(format!("run-{sub}")));
        interrupt(&dir, 2);
        let outside = root.join(format!("outside-{sub}"));
        std::fs::create_dir_all(outside.join("figs")).unwrap();
        std::fs::write(outside.join("slides.txt"), b"my talk").unwrap();
        std::fs::write(outside.join("figs/fig1.svg"), b"<svg/>").unwrap();
        // Named like an uncommitted point's file: the old clean-up removed it too.
        std::fs::write(outside.join("point004-correlation.svg"), b"mine").unwrap();
        let held = dir.join(format!("{sub}.held"));
        std::fs::rename(dir.join(sub), &held).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join(sub)).unwrap();
        let before = snapshot(&outside);
        assert_eq!(before.len(), 4);
        let inside = snapshot(&dir);
        let o = cli(&["run", "--resume", s(&dir)]);
        census.count(&o);
        let after = snapshot(&outside);
        census.outside += usize::from(after != before);
        assert_eq!(after, before, "{sub}: the link's target changed; {o:?}");
        assert_eq!(o.code, Some(1), "{o:?}");
        assert!(
            o.stderr.contains(&format!("{sub} is a symbolic link"))
                && o.stderr.contains("replace the link by a folder"),
            "{}",
            o.stderr
        );
        assert_eq!(
            snapshot(&dir),
            inside,
            "{sub}: the refused resume changed the folder"
        );
        // The user's fix: the folder back in place of the link.
        std::fs::remove_file(dir.join(sub)).unwrap();
        std::fs::rename(&held, dir.join(sub)).unwrap();
        let o = cli(&["run", "--resume", s(&dir)]);
        census.count(&o);
        assert_eq!(o.code, Some(0), "{o:?}");
        assert!(Commit::read(&dir).unwrap().complete);
    }
    census.report("symlinked plots/ and points/");
    let _ = std::fs::remove_dir_all(&root);
}

// ---- case 2: slurm --out EXISTING ---------------------------------------

/// `slurm --out myproject` replaced the user's myproject/config.toml and
/// wrote through a symlinked array.sbatch; a refused --out still left
/// logs/ and shards/ behind. Now each is refused, the user's files
/// byte-identical and the folder exactly as it was (1 entry); a fresh
/// --out is written, and written again by a second `slurm` (its own files).
#[test]
fn slurm_never_overwrites_a_users_file_or_writes_through_a_link() {
    let root = temp_root("case2");
    let cfg = write_config(&root, SMALL);
    let mut census = Census::default();
    let project = root.join("myproject");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("config.toml"), b"# my own settings\n").unwrap();
    let linked = root.join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    let target = root.join("target.sh");
    std::fs::write(&target, b"echo mine\n").unwrap();
    std::os::unix::fs::symlink(&target, linked.join("array.sbatch")).unwrap();
    for (out, why) in [
        (&project, "exists and was not written by `quantdepth slurm`"),
        (&linked, "is a symbolic link"),
    ] {
        let before = snapshot(&root);
        let o = cli(&["slurm", s(&cfg), "--shards", "2", "--out", s(out)]);
        census.count(&o);
        let after = snapshot(&root);
        census.outside += usize::from(after != before);
        assert_eq!(o.code, Some(1), "{o:?}");
        assert!(o.stderr.contains(why), "{}", o.stderr);
        assert_eq!(after, before, "a refused --out changed files");
        assert_eq!(std::fs::read_dir(out).unwrap().count(), 1);
    }
    let fresh = root.join("fresh");
    for _ in 0..2 {
        let o = cli(&["slurm", s(&cfg), "--shards", "2", "--out", s(&fresh)]);
        census.count(&o);
        assert_eq!(o.code, Some(0), "{o:?}");
    }
    for f in [
        "config.toml",
        "array.sbatch",
        "merge.sbatch",
        "logs",
        "shards",
    ] {
        assert!(fresh.join(f).exists(), "{f}");
    }
    census.report("slurm --out over users' files and links");
    let _ = std::fs::remove_dir_all(&root);
}

// ---- case 6: FIFOs, /dev/zero, gzip bombs -------------------------------

/// A FIFO as meta.json, config.toml or shard.json of a merge input (or of
/// a folder resumed), or as the config of `run`, hung forever; /dev/zero
/// behind those names read until memory ran out. Each now ends within
/// [`HANG`] (in milliseconds) with exit 1 and a message saying what the
/// file is; the shard folders are untouched.
#[test]
fn fifos_and_devices_where_files_are_read_are_refused_at_once() {
    let root = temp_root("case6");
    let cfg = write_config(&root, SMALL);
    let shards = root.join("shards");
    for k in 0..2 {
        let o = cli(&[
            "run",
            s(&cfg),
            "--shard",
            &format!("{k}/2"),
            "--out",
            s(&shards),
        ]);
        assert_eq!(o.code, Some(0), "{o:?}");
    }
    let s0 = shards.join("fs-shard-0-of-2");
    let s1 = shards.join("fs-shard-1-of-2");
    let mut census = Census::default();
    for name in [
        "meta.json",
        "config.toml",
        "shard.json",
        "points/point000.cbor",
    ] {
        for kind in ["fifo", "zero"] {
            let f = s0.join(name);
            let saved = std::fs::read(&f).unwrap();
            std::fs::remove_file(&f).unwrap();
            if kind == "fifo" {
                mkfifo(&f);
            } else {
                std::os::unix::fs::symlink("/dev/zero", &f).unwrap();
            }
            let want = if kind == "fifo" {
                "a FIFO (named pipe), not a regular file"
            } else {
                "a character device, not a regular file"
            };
            let before = snapshot(&shards);
            let out = root.join(format!("merged-{kind}-{}", name.replace('/', "-")));
            let record = name.starts_with("points/");
            for args in [
                vec!["merge", s(&out), s(&s0), s(&s1)],
                vec!["run", "--resume", s(&s0)],
            ] {
                let o = cli(&args);
                census.count(&o);
                assert!(!o.timed_out, "{args:?} with a {kind} as {name} hangs");
                if args[0] == "run" && o.code == Some(0) && o.stdout.contains("is complete") {
                    // The shard folders are complete: unless meta.json itself
                    // is the FIFO or device, a resume says so from meta.json
                    // alone and touches nothing.
                    let after = snapshot(&shards);
                    census.outside += usize::from(after != before);
                    assert_eq!(after, before, "{kind} as {name}: the shard folders changed");
                    continue;
                }
                assert!(
                    o.stderr.contains(want),
                    "{args:?}, {kind} {name}: {}",
                    o.stderr
                );
                // A committed record that does not read is run again by a
                // resume (with a warning), replacing the FIFO or the link.
                let resumed = record && args[0] == "run";
                assert_eq!(
                    o.code,
                    Some(if resumed { 0 } else { 1 }),
                    "{args:?}, {kind} {name}: {o:?}"
                );
                if !resumed {
                    let after = snapshot(&shards);
                    census.outside += usize::from(after != before);
                    assert_eq!(after, before, "{kind} as {name}: the shard folders changed");
                }
            }
            // (A damaged record of an unfinished folder is run again by a
            // resume: a_missing_or_damaged_record_… tests that; these shard
            // folders are complete, so a resume leaves the FIFO alone.)
            assert!(!out.exists());
            std::fs::remove_file(&f).unwrap();
            std::fs::write(&f, saved).unwrap();
        }
    }
    // The config of `run`, and the library function Python's qd.run reads with.
    let fifo = root.join("fifo.toml");
    mkfifo(&fifo);
    for (path, want) in [
        (fifo.as_path(), "a FIFO (named pipe), not a regular file"),
        (
            Path::new("/dev/zero"),
            "a character device, not a regular file",
        ),
    ] {
        let o = cli(&["run", s(path)]);
        census.count(&o);
        assert_eq!(o.code, Some(1), "{o:?}");
        assert!(o.stderr.contains(want), "{}", o.stderr);
        let e = quantdepth::experiment::Config::read_file(path)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    census.report("FIFOs and /dev/zero");
    let _ = std::fs::remove_dir_all(&root);
}

/// Raw deflate data of `zeros` zero bytes after `prefix`, as independent
/// pieces: the prefix, one MiB of zeros flushed (full flush: it refers to
/// nothing before it, so it can be repeated), and the end of the stream.
fn deflate_pieces(prefix: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::best(), false);
    let mut piece = |input: &[u8], flush| {
        let mut out = Vec::with_capacity(input.len() + 1024);
        let start = c.total_out();
        c.compress_vec(input, &mut out, flush).unwrap();
        assert_eq!(c.total_out() - start, out.len() as u64);
        out
    };
    let a = piece(prefix, FlushCompress::Full);
    let b = piece(&vec![0u8; 1 << 20], FlushCompress::Full);
    let end = piece(&[], FlushCompress::Finish);
    (a, b, end)
}

/// A 1 MB gzip file declaring 200×4×4 pixels that inflates to 1 GiB
/// (its CRC left wrong: only a reader that inflates everything sees it).
/// read_idx inflated the whole stream before looking at the header (1.1 GB
/// and 15 s for such a file); now it reads the header, inflates 3,201
/// bytes (the data and one more) and refuses the trailing data at once.
/// Before the fix the message was the CRC error ("gzip"), after the whole
/// GiB was inflated.
#[test]
fn a_gzip_bomb_is_refused_after_the_size_its_header_declares() {
    let root = temp_root("bomb");
    let mut idx = vec![0, 0, 8, 3];
    for d in [200u32, 4, 4] {
        idx.extend(d.to_be_bytes());
    }
    let (a, mib, end) = deflate_pieces(&idx);
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    gz.extend(&a);
    for _ in 0..1024 {
        gz.extend(&mib);
    }
    gz.extend(&end);
    gz.extend([0u8; 8]); // CRC and size: wrong on purpose
    assert!(gz.len() < 4 << 20, "{} bytes", gz.len());
    let f = root.join("train-images-idx3-ubyte.gz");
    std::fs::write(&f, &gz).unwrap();
    let t = Instant::now();
    let e = quantdepth::train::data::read_idx(&f)
        .unwrap_err()
        .to_string();
    let took = t.elapsed();
    assert!(
        e.contains("trailing bytes") && e.contains("[200, 4, 4] call for 3200 bytes"),
        "{e}"
    );
    // Inflating 3 KB takes microseconds; the whole GiB takes seconds.
    assert!(took < Duration::from_millis(500), "{took:?}");
    println!("census gzip bombs: inputs tried 1, panics 0, hangs 0, aborts 0, torn folders 0, writes outside 0 ({took:?})");
    // A header declaring more than any MNIST-format file: refused unread.
    let mut idx = vec![0, 0, 8, 3];
    for d in [65_535u32, 65_535, 1000] {
        idx.extend(d.to_be_bytes());
    }
    let (a, _, end) = deflate_pieces(&idx);
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    gz.extend(&a);
    gz.extend(&end);
    std::fs::write(&f, &gz).unwrap();
    let e = quantdepth::train::data::read_idx(&f)
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than the 2147483648 bytes"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

// ---- case 7: concurrent resumes -----------------------------------------

/// Eight simultaneous `run --resume` of one folder: two ran the points and
/// the others failed deleting each other's temporary files; the session
/// count came out wrong. Now the folder is locked for a resume's lifetime:
/// each process either runs (exit 0) or is refused at once with "in use by
/// pid P" (exit 1) — at least one runs — the session count is 1 plus the
/// number that ran, and the files equal the uninterrupted run's.
#[test]
fn concurrent_resumes_take_turns_and_the_others_are_told_who_holds_the_folder() {
    let root = temp_root("case7");
    let cfg = write_config(&root, SMALL);
    let reference = complete_run(&cfg, &root.join("ref"));
    let dir = complete_run(&cfg, &root.join("run"));
    interrupt(&dir, 1);
    let mut census = Census::default();
    let children: Vec<Child> = (0..8)
        .map(|_| spawn(&["run", "--resume", s(&dir)]))
        .collect();
    let outcomes: Vec<Outcome> = children.into_iter().map(|c| wait(c, HANG)).collect();
    let mut ran = 0;
    for o in &outcomes {
        census.count(o);
        match o.code {
            // A resume that found the folder complete (another one finished
            // it first) says so and runs nothing: no session.
            Some(0) if o.stdout.contains("is complete") => {}
            Some(0) => ran += 1,
            Some(1) => assert!(
                o.stderr.contains("is in use by pid") && o.stderr.contains("(host "),
                "a refused resume says {:?}",
                o.stderr
            ),
            _ => panic!("{o:?}"),
        }
    }
    let meta = Commit::read(&dir).unwrap();
    println!("concurrent resumes: {ran} of 8 ran, {} refused", 8 - ran);
    assert!(ran >= 1);
    assert_eq!(meta.sessions as usize, 1 + ran, "sessions in meta.json");
    assert!(meta.complete);
    assert_same_results(&dir, &reference);
    census.torn += usize::from(dir.join(".lock").exists());
    census.report("concurrent resumes");
    let _ = std::fs::remove_dir_all(&root);
}

// ---- case 8: a missing or damaged record ---------------------------------

/// `rm points/point001.cbor` then `--resume` failed reading it after the
/// aggregates were deleted, and every later resume failed the same way.
/// Now every committed record is read before anything is removed; the
/// missing one (and one cut in half, and one from another run) is run
/// again with a warning naming it, and the folder ends identical to the
/// uninterrupted run's.
#[test]
fn a_missing_or_damaged_record_is_run_again_not_fatal() {
    let root = temp_root("case8");
    let cfg = write_config(&root, SMALL);
    let reference = complete_run(&cfg, &root.join("ref"));
    let other = complete_run(
        &write_config(&root.join("ref"), &SMALL.replace("seed = 5", "seed = 6")),
        &root.join("other"),
    );
    let dir = complete_run(&cfg, &root.join("run"));
    interrupt(&dir, 4);
    std::fs::remove_file(folder::record_path(&dir, 1)).unwrap();
    let rec2 = folder::record_path(&dir, 2);
    let bytes = std::fs::read(&rec2).unwrap();
    std::fs::write(&rec2, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::copy(folder::record_path(&other, 3), folder::record_path(&dir, 3)).unwrap();
    let o = cli(&["run", "--resume", s(&dir)]);
    assert_eq!(o.code, Some(0), "{o:?}");
    for (rec, why) in [
        ("point001.cbor", "cannot read"),
        ("point002.cbor", "does not parse"),
        ("point003.cbor", "belongs to another run"),
    ] {
        assert!(
            o.stderr.lines().any(|l| l.starts_with("warning:")
                && l.contains(rec)
                && l.contains(why)
                && l.contains("run again")),
            "no warning for {rec}: {}",
            o.stderr
        );
    }
    let meta = Commit::read(&dir).unwrap();
    assert!(meta.complete);
    assert_eq!(meta.points, (0..6).collect::<Vec<_>>());
    assert_same_results(&dir, &reference);
    let _ = std::fs::remove_dir_all(&root);
}

// ---- the symlink-and-FIFO fuzz ------------------------------------------

/// The tiny sweep the fuzz resumes and merges (four points, milliseconds each).
const FUZZ: &str = r#"
name = "fz"
seed = 9
backend = "cpu"
[network]
width = 16
depth = 3
samples = 2
[inputs]
c0 = [0.5]
[sweep]
states = [2, 3, 4, 5]
[outputs]
png = false
"#;

/// Every place of a results folder where the fuzz puts a link or a FIFO.
const POSITIONS: &[&str] = &[
    "config.toml",
    "meta.json",
    "shard.json",
    "curves.csv",
    "curves.json",
    "summary.json",
    "backward.csv",
    "points",
    "plots",
    "points/point000.cbor",
    "points/point001.cbor",
    "points/point002.cbor",
    "points/point003.cbor",
    "plots/point000-correlation.svg",
    "plots/point001-variance.svg",
    "plots/point003-correlation.svg",
    "plots/xi-scaling-0.svg",
    ".staging",
    ".lock",
];

/// What replaces the entry at a position.
const REPLACEMENTS: &[&str] = &[
    "link to an outside copy of it",
    "link to an outside file",
    "link to an outside folder",
    "link to /dev/zero",
    "FIFO",
    "link to an outside FIFO",
    "dangling link",
];

/// SplitMix64 (Steele, Lea and Flood 2014): the fuzz's fixed-seed choices.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Replaces what is at `folder/pos` by replacement `how`, pointing outside
/// into `outside` (numbered `n` so copies do not collide).
fn plant(folder: &Path, pos: &str, how: usize, outside: &Path, n: usize) {
    use std::os::unix::fs::symlink;
    let p = folder.join(pos);
    let copy = outside.join(format!("copy-{n}"));
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => copy_tree(&p, &copy),
        Ok(m) if m.is_file() => {
            std::fs::copy(&p, &copy).unwrap();
        }
        _ => std::fs::write(&copy, b"stand-in").unwrap(),
    }
    quantdepth::safe_fs::remove_entry(&p).unwrap();
    match how {
        0 => symlink(&copy, &p).unwrap(),
        1 => symlink(outside.join("victim.txt"), &p).unwrap(),
        2 => symlink(outside.join("dir"), &p).unwrap(),
        3 => symlink("/dev/zero", &p).unwrap(),
        4 => mkfifo(&p),
        5 => symlink(outside.join("fifo"), &p).unwrap(),
        _ => symlink(outside.join("nothing"), &p).unwrap(),
    }
}

/// 200 fixed-seed cases: 1 to 3 entries of a results folder (an
/// interrupted run, or one of two shard folders) replaced by links to
/// outside files and folders (copies of the entry itself included, so the
/// run gets as far as writing), /dev/zero, FIFOs in place or outside, and
/// dangling links; then `run --resume` or `merge`. Every case ends within
/// [`HANG`] without a panic or an abort; every outside target (a snapshot
/// of names, kinds and contents, FIFOs never opened) is identical after;
/// a run that succeeds leaves a complete, readable folder.
#[test]
fn fuzzed_links_and_fifos_never_touch_anything_outside_the_folder() {
    let root = temp_root("fuzz");
    let cfg = write_config(&root, FUZZ);
    let run = complete_run(&cfg, &root.join("tpl-run"));
    interrupt(&run, 2);
    let shards = root.join("tpl-shards");
    for k in 0..2 {
        let o = cli(&[
            "run",
            s(&cfg),
            "--shard",
            &format!("{k}/2"),
            "--out",
            s(&shards),
        ]);
        assert_eq!(o.code, Some(0), "{o:?}");
    }
    let mut rng = SplitMix(21);
    let (mut resumes, mut merges) = (Census::default(), Census::default());
    let (mut succeeded, mut refused) = (0, 0);
    let t0 = Instant::now();
    for case in 0..200 {
        let dir = root.join(format!("case{case}"));
        let outside = dir.join("outside");
        std::fs::create_dir_all(outside.join("dir/figs")).unwrap();
        std::fs::write(outside.join("victim.txt"), format!("victim {case}")).unwrap();
        std::fs::write(outside.join("dir/slides.txt"), b"talk").unwrap();
        std::fs::write(outside.join("dir/figs/a.svg"), b"<svg/>").unwrap();
        std::fs::write(outside.join("dir/point000-correlation.svg"), b"mine").unwrap();
        std::fs::write(outside.join("dir/point003.cbor"), b"mine").unwrap();
        mkfifo(&outside.join("fifo"));
        let merge = rng.below(5) < 2;
        let (target, args): (PathBuf, Vec<String>) = if merge {
            copy_tree(&shards, &dir.join("shards"));
            let k = rng.below(2);
            let ins: Vec<String> = (0..2)
                .map(|j| s(&dir.join(format!("shards/fz-shard-{j}-of-2"))).to_string())
                .collect();
            let mut a = vec!["merge".to_string(), s(&dir.join("merged")).to_string()];
            a.extend(ins.iter().cloned());
            (PathBuf::from(&ins[k]), a)
        } else {
            copy_tree(&run, &dir.join("run"));
            (
                dir.join("run"),
                vec!["run".into(), "--resume".into(), s(&dir.join("run")).into()],
            )
        };
        let mut planted = Vec::new();
        for n in 0..1 + rng.below(3) {
            let pos = POSITIONS[rng.below(POSITIONS.len())];
            let how = rng.below(REPLACEMENTS.len());
            if planted.iter().any(|(p, _)| *p == pos)
                || (pos.contains('/') && planted.iter().any(|(p, _)| pos.starts_with(*p)))
            {
                continue;
            }
            plant(&target, pos, how, &outside, n);
            planted.push((pos, REPLACEMENTS[how]));
        }
        let before = snapshot(&outside);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = cli(&argv);
        let census = if merge { &mut merges } else { &mut resumes };
        census.count(&o);
        let after = snapshot(&outside);
        if after != before {
            census.outside += 1;
            eprintln!("case {case} {planted:?}: outside changed\n{before:#?}\n{after:#?}");
        }
        if o.timed_out || o.panicked() || o.aborted() {
            eprintln!("case {case} {planted:?}: {o:?}");
        }
        if o.code == Some(0) {
            succeeded += 1;
            let done = if merge {
                dir.join("merged")
            } else {
                target.clone()
            };
            if !Commit::read(&done).is_ok_and(|c| c.complete) {
                census.torn += 1;
                eprintln!(
                    "case {case} {planted:?}: exit 0 but {} is not complete",
                    done.display()
                );
            }
        } else {
            refused += 1;
            if o.stderr.trim().is_empty() || o.code != Some(1) {
                census.torn += 1;
                eprintln!("case {case} {planted:?}: a failure without a message: {o:?}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "fuzzed folders: 200 cases ({} resumes, {} merges) in {:.1} s: {succeeded} completed, {refused} refused with a message",
        resumes.tried,
        merges.tried,
        t0.elapsed().as_secs_f64()
    );
    resumes.report("fuzzed links and FIFOs, resume");
    merges.report("fuzzed links and FIFOs, merge");
    let _ = std::fs::remove_dir_all(&root);
}
