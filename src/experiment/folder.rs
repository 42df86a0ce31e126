//! The results folder on disk: atomic writes (data and plots), one commit
//! record (`meta.json`, written last) that names the points the folder
//! holds, per-point records that can be combined, stale-`running`
//! detection, and the clean-up of leftovers before a resume.
//!
//! Long because what a run writes and what a resume may remove are one
//! contract (names, the plots list, atomic writes): kept in one file so the
//! two cannot drift apart.
//!
//! Layout (format 2):
//!
//! ```text
//! config.toml          the config as run (its hash is in meta.json)
//! meta.json            the commit record: status, points held, config hash, pid, host
//! .lock                while a process writes the folder: its pid and host (see `lock`)
//! points/pointNNN.cbor one record per finished point (lossless: every f64 bit for bit)
//! plots/pointNNN-*.svg per-point plots (temp file + rename)
//! plots/.written       the names of the plots quantdepth wrote (only those are ever removed)
//! curves.csv, curves.json, backward.csv, summary.json, plots/xi-scaling-*
//!                      aggregates of exactly the committed points, rebuilt from
//!                      the records whenever the run ends (complete, interrupted, failed)
//! ```
//!
//! Nothing outside the folder is ever touched: a symbolic link inside it is
//! never followed to write or delete (a link where `plots/` or `points/`
//! should be is refused; a link where a file of ours should be is replaced
//! or removed as a link, its target untouched), temporary files are created
//! new (`O_EXCL | O_NOFOLLOW`), and every file read back is read only when
//! it is a regular file, up to a cap (see [`crate::safe_fs`]).
//!
//! Every file is written to a temporary name and renamed, so a kill leaves
//! either the old or the new version. Point records and per-point plots are
//! written before the commit record that names them; aggregates are written
//! only when the run stops, and removed before a resume runs more points. So
//! after any kill, every aggregate present covers exactly the points that
//! `meta.json` lists, and anything of ours not named by it is a leftover
//! that [`clean_leftovers`] removes (a file a user added is kept).

use crate::error::{Error, Result};
use crate::safe_fs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Version of the folder layout and record format.
pub const FORMAT: u32 = 2;

/// Files rebuilt from the point records when a run stops.
pub const AGGREGATES: [&str; 6] = [
    "curves.csv",
    "curves.json",
    "backward.csv",
    "summary.json",
    "optimal.csv",
    "optimal.json",
];

/// Suffix of temporary files (`.<name>.<pid>.tmp`).
const TMP_SUFFIX: &str = ".tmp";

/// Staging folder for plots, renamed file by file into `plots/`.
const STAGING: &str = ".staging";

/// The list, inside `plots/`, of the files quantdepth wrote there (one name
/// a line): a resume removes only plots it finds on this list, so a file a
/// user put in `plots/` is never deleted.
pub const PLOTS_MANIFEST: &str = ".written";

/// Whether `name` is one of this project's temporary files (`.<name>.<pid>.tmp`).
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TMP_SUFFIX)
}

/// The names `plots/.written` lists (empty when there is none: a folder of
/// an older quantdepth, whose plots are then all kept).
pub fn plots_written(folder: &Path) -> Result<BTreeSet<String>> {
    let path = folder.join("plots").join(PLOTS_MANIFEST);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(BTreeSet::new());
    }
    Ok(read_text(&path, META_CAP)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Rewrites `plots/.written` as `names` (atomically).
fn write_manifest(folder: &Path, names: &BTreeSet<String>) -> Result<()> {
    let mut text = String::new();
    for n in names {
        text.push_str(n);
        text.push('\n');
    }
    write_atomic(&folder.join("plots").join(PLOTS_MANIFEST), text.as_bytes())
}

/// Adds `names` to `plots/.written`.
pub fn note_plots_written(folder: &Path, names: impl IntoIterator<Item = String>) -> Result<()> {
    let mut all = plots_written(folder)?;
    let before = all.len();
    all.extend(names);
    if all.len() == before && folder.join("plots").join(PLOTS_MANIFEST).exists() {
        return Ok(());
    }
    write_manifest(folder, &all)
}

/// Largest `config.toml` read back (a config is a few KiB).
pub const CONFIG_CAP: u64 = 1 << 20;

/// Largest `meta.json` read back (a million points' indices fit in 16 MiB).
pub const META_CAP: u64 = 64 << 20;

/// Largest plot copied by `merge` (an SVG or PNG of a few MiB).
pub const PLOT_CAP: u64 = 256 << 20;

/// Largest point record read back (a record holds a few numbers per layer
/// and input: 10⁵ layers × 64 inputs fit in well under 512 MiB).
pub const RECORD_CAP: u64 = 512 << 20;

/// Reads the regular file `path` as UTF-8, at most `cap` bytes (see
/// [`safe_fs::read_capped`]): a FIFO, a device or an oversized file is
/// refused with what it is, never waited on or read to exhaustion.
pub fn read_text(path: &Path, cap: u64) -> Result<String> {
    safe_fs::read_capped_text(path, cap).map_err(|e| io_error("read", path, &e))
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    let hint = match e.raw_os_error() {
        Some(28) => " (the disk is full: free space, then `quantdepth run --resume` the folder)",
        Some(17) => " (a file of that name exists)",
        Some(20) => " (a path component is a file, not a folder)",
        Some(13) => " (permission denied)",
        _ => "",
    };
    let msg = e.to_string();
    let msg = msg.split(" (os error").next().unwrap_or(&msg).to_string();
    Error::Folder(format!("cannot {what} {}: {msg}{hint}", path.display()))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over `path` (a symbolic link at `path` is
/// replaced, its target untouched). On failure the temporary file is
/// removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}{TMP_SUFFIX}", std::process::id()));
    let result = (|| {
        // Created new, never through a link; a leftover of a process with
        // this pid before (a link included) is removed as an entry first.
        let mut f = match safe_fs::create_new(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                safe_fs::remove_entry(&tmp)?;
                safe_fs::create_new(&tmp)?
            }
            r => r?,
        };
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = safe_fs::remove_entry(&tmp);
        io_error("write", path, &e)
    })
}

/// Writes `value` as pretty-printed JSON to `path` atomically (see
/// [`write_atomic`]).
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    write_atomic(
        path,
        serde_json::to_string_pretty(value)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// Checks a results-folder name: printable, no slashes, no leading `-` or
/// `.`, no control or bidirectional-override characters, at most 100 chars.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::invalid(
            "name",
            format!("{name:?}"),
            &format!("{why}; use letters, digits, '-', '_' and '.' (it names the results folder)"),
        )
    };
    if name.trim().is_empty() {
        return Err(bad("an empty name"));
    }
    if name.chars().count() > 100 {
        return Err(bad("longer than 100 characters"));
    }
    if name.starts_with('-') {
        return Err(bad("a leading '-' reads as an option"));
    }
    if name.starts_with('.') {
        return Err(bad(
            "a leading '.' makes a hidden folder ('.' and '..' are not names)",
        ));
    }
    if name.trim() != name {
        return Err(bad("leading or trailing spaces"));
    }
    if let Some(c) = name.chars().find(|c| {
        c.is_control()
            || matches!(c, '/' | '\\' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    }) {
        return Err(bad(&format!("the character {c:?} is not allowed")));
    }
    Ok(())
}

/// A new results folder `<root>/<name>-<UTC timestamp>` (suffixed if
/// taken), with `plots/` and `points/`.
pub fn create(root: &Path, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    let ts: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    if root.exists() && !root.is_dir() {
        return Err(Error::Folder(format!(
            "--out {} is a file, not a folder: give a folder for results folders",
            root.display()
        )));
    }
    std::fs::create_dir_all(root).map_err(|e| io_error("create the folder", root, &e))?;
    for k in 0..1000 {
        let dir = if k == 0 {
            root.join(format!("{name}-{ts}"))
        } else {
            root.join(format!("{name}-{ts}-{k}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                for sub in ["plots", "points"] {
                    std::fs::create_dir_all(dir.join(sub))
                        .map_err(|e| io_error("create the folder", &dir.join(sub), &e))?;
                }
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error("create the results folder", &dir, &e)),
        }
    }
    Err(Error::Folder(format!(
        "could not find a free folder name under {}",
        root.display()
    )))
}

/// A stable 64-bit FNV-1a hash of the config as run, as 16 hex digits.
pub fn config_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The commit record, `meta.json`: what the folder holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// Folder format ([`FORMAT`]).
    pub format: u32,
    /// quantdepth version that wrote it.
    pub version: String,
    /// [`config_hash`] of config.toml.
    pub config_hash: String,
    /// Experiment name.
    pub name: String,
    /// simulation | optimal.
    pub kind: String,
    /// Backend that ran the points.
    pub backend: String,
    /// Its adapter.
    pub adapter: String,
    /// Why that backend.
    pub backend_note: String,
    /// The GPU layer kernel variant that ran the points (see
    /// `sim::gpu::KernelVariant`; each with its sizes where they differ);
    /// the backward pass follows it (`KernelVariant::backward`: each
    /// tiling runs its own backward step, ± int64),
    /// so it names the backward step too; absent for the CPU backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The seed.
    pub seed: u64,
    /// When the folder was created.
    pub started: String,
    /// When this record was written.
    pub updated: String,
    /// Wall time of the sessions so far (s).
    pub wall_seconds: f64,
    /// running | complete | interrupted | failed.
    pub status: String,
    /// status == "complete".
    pub complete: bool,
    /// Number of points held.
    pub points_done: usize,
    /// Points in the sweep.
    pub points_total: usize,
    /// Indices of the points held (records in points/, rows in the aggregates).
    pub points: Vec<usize>,
    /// Points whose results contain NaN or ∞ (see `non_finite` in summary.json).
    pub non_finite_points: Vec<usize>,
    /// Process that wrote the record (while running: the one running it).
    pub pid: u32,
    /// Host it ran on.
    pub host: String,
    /// Sessions (the first run and each resume).
    pub sessions: u32,
    /// Why the run failed (status failed).
    pub error: Option<String>,
    /// The point it failed at.
    pub failed_point: Option<usize>,
}

/// This machine's host name (for stale-run detection).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether process `pid` exists on this machine.
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let stat = Path::new("/proc").join(pid.to_string()).join("stat");
    match std::fs::read_to_string(stat) {
        // A zombie (state Z) has exited.
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

impl Commit {
    /// Writes the record (atomically); call after everything it names is on disk.
    pub fn write(&self, folder: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Folder(format!("meta.json cannot be encoded: {e}")))?;
        write_atomic(&folder.join("meta.json"), text.as_bytes())
    }

    /// Reads a folder's record.
    pub fn read(folder: &Path) -> Result<Self> {
        if !folder.is_dir() {
            return Err(Error::Folder(format!(
                "{} is not a results folder (no such folder)",
                folder.display()
            )));
        }
        let path = folder.join("meta.json");
        let text = match safe_fs::read_capped_text(&path, META_CAP) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Folder(format!(
                    "{} is not a results folder (it has no meta.json)",
                    folder.display()
                )))
            }
            Err(e) => return Err(io_error("read", &path, &e)),
        };
        serde_json::from_str(&text).map_err(|e| {
            Error::Folder(format!(
                "{} is not a results folder of format {FORMAT} ({e})",
                folder.display()
            ))
        })
    }

    /// A `running` record whose process is gone: killed, crashed, or the
    /// machine restarted. (On another host the process cannot be checked:
    /// not stale.)
    pub fn is_stale(&self) -> bool {
        self.status == "running" && self.host == host_name() && !process_alive(self.pid)
    }

    /// The status as a reader should take it: `running (stale: …)` when stale.
    pub fn effective_status(&self) -> String {
        if self.is_stale() {
            format!(
                "running (stale: process {} on {} is gone; `quantdepth run --resume` continues it)",
                self.pid, self.host
            )
        } else {
            self.status.clone()
        }
    }
}

/// Path of point `index`'s record.
pub fn record_path(folder: &Path, index: usize) -> PathBuf {
    folder.join("points").join(format!("point{index:03}.cbor"))
}

/// Writes a record losslessly (CBOR keeps every f64, NaN and ∞ included).
pub fn write_record<T: Serialize>(folder: &Path, index: usize, record: &T) -> Result<()> {
    own_subfolder(folder, "points")?;
    let mut bytes = Vec::new();
    ciborium::into_writer(record, &mut bytes)
        .map_err(|e| Error::Folder(format!("point {index} cannot be encoded: {e}")))?;
    write_atomic(&record_path(folder, index), &bytes)
}

/// Reads point `index`'s record: a regular file of at most [`RECORD_CAP`]
/// bytes (a link to one is followed for reading; it is replaced, never
/// written through, when the point is written again).
pub fn read_record<T: serde::de::DeserializeOwned>(folder: &Path, index: usize) -> Result<T> {
    use std::io::Read;
    let path = record_path(folder, index);
    let (f, len) = safe_fs::open_regular(&path).map_err(|e| io_error("read", &path, &e))?;
    if len > RECORD_CAP {
        return Err(Error::Folder(format!(
            "{} is {}, larger than a point record ever is ({}): it is not one",
            path.display(),
            safe_fs::fmt_bytes(len),
            safe_fs::fmt_bytes(RECORD_CAP)
        )));
    }
    ciborium::from_reader(std::io::BufReader::new(f.take(RECORD_CAP)))
        .map_err(|e| Error::Folder(format!("{} does not parse: {e}", path.display())))
}

/// Copies the regular file `from` (at most `cap` bytes; a FIFO, a device
/// or a larger file is refused) to the new file `to` (created new: never
/// over an existing file or through a link).
pub fn copy_file(from: &Path, to: &Path, cap: u64) -> Result<()> {
    use std::io::Read;
    let (f, len) = safe_fs::open_regular(from).map_err(|e| io_error("read", from, &e))?;
    if len > cap {
        return Err(Error::Folder(format!(
            "{} is {}, larger than quantdepth writes such a file ({}): it is not one of its files",
            from.display(),
            safe_fs::fmt_bytes(len),
            safe_fs::fmt_bytes(cap)
        )));
    }
    let mut out = safe_fs::create_new(to).map_err(|e| io_error("write", to, &e))?;
    std::io::copy(&mut f.take(cap), &mut out).map_err(|e| io_error("copy", from, &e))?;
    Ok(())
}

/// `folder/sub` (`plots`, `points`) as a folder inside the results folder:
/// created when absent; a symbolic link there is refused, never followed
/// (writing or cleaning through it would touch whatever it points to), and
/// so is anything else that is not a folder.
pub fn own_subfolder(folder: &Path, sub: &str) -> Result<PathBuf> {
    let p = folder.join(sub);
    match safe_fs::entry_type(&p).map_err(|e| io_error("read", &p, &e))? {
        Some(ft) if ft.is_dir() => Ok(p),
        None => {
            std::fs::create_dir(&p).map_err(|e| io_error("create the folder", &p, &e))?;
            Ok(p)
        }
        Some(ft) if ft.is_symlink() => {
            let to = std::fs::read_link(&p)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            Err(Error::Folder(format!(
                "{} is a symbolic link (to {to}), not a folder: quantdepth never writes or \
                 deletes through a link in a results folder; replace the link by a folder \
                 holding its files (rm {sub}; cp -r {to} {sub}), then run the command again",
                p.display()
            )))
        }
        Some(ft) => Err(Error::Folder(format!(
            "cannot write into {}: it is {}, not a folder (a results folder keeps its {sub} \
             in a folder); move it away, then run the command again",
            p.display(),
            safe_fs::kind_of(&ft)
        ))),
    }
}

/// Runs `draw(stage)` with a staging folder that has a `plots/` inside, then
/// renames every file it wrote into `folder/plots/`: a plot is never seen
/// half written.
pub fn write_plots(folder: &Path, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    own_subfolder(folder, "plots")?;
    let stage = folder.join(STAGING);
    let _ = safe_fs::remove_entry(&stage);
    std::fs::create_dir_all(stage.join("plots"))
        .map_err(|e| io_error("create the folder", &stage, &e))?;
    let drawn = draw(&stage);
    let moved = drawn.and_then(|()| {
        let entries =
            std::fs::read_dir(stage.join("plots")).map_err(|e| io_error("read", &stage, &e))?;
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(|e| io_error("read", &stage, &e))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        // On the list before they exist: a kill between the two leaves a
        // name without its file, never a file of ours off the list.
        note_plots_written(folder, names.iter().cloned())?;
        for name in names {
            let to = folder.join("plots").join(&name);
            std::fs::rename(stage.join("plots").join(&name), &to)
                .map_err(|err| io_error("write", &to, &err))?;
        }
        Ok(())
    });
    let _ = safe_fs::remove_entry(&stage);
    moved
}

/// The point index of a per-point file name (`point007.cbor`,
/// `point007-correlation.svg`).
fn point_of(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("point")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Removes what quantdepth wrote that the commit record does not name:
/// its temporary files, the plot staging folder, records and plots of
/// uncommitted points, and the aggregates (rebuilt when the run stops).
/// Returns the names removed.
///
/// Only the tool's own files go: in `points/` the records `pointNNN.cbor`
/// of points not committed; in `plots/` the aggregate plots and the plots
/// of points not committed that `plots/.written` lists (a folder without
/// the list keeps all its plots; they are redrawn under the same names); a
/// file a user added anywhere is kept.
///
/// Nothing is followed: `plots/` or `points/` as a symbolic link is refused
/// before anything is removed, and a link among the entries is removed as a
/// link (its target untouched).
pub fn clean_leftovers(folder: &Path, committed: &BTreeSet<usize>) -> Result<Vec<String>> {
    for sub in ["plots", "points"] {
        own_subfolder(folder, sub)?;
    }
    let written = plots_written(folder)?;
    let mut removed = Vec::new();
    let mut remove = |p: &Path| -> Result<()> {
        safe_fs::remove_entry(p).map_err(|e| io_error("remove", p, &e))?;
        removed.push(
            p.strip_prefix(folder)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned(),
        );
        Ok(())
    };
    let mut plots_removed = Vec::new();
    for sub in ["", "plots", "points"] {
        let dir = folder.join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let uncommitted = point_of(&name).is_some_and(|i| !committed.contains(&i));
            let leftover = is_temporary(&name)
                || match sub {
                    "" => name == STAGING || AGGREGATES.contains(&name.as_str()),
                    "plots" => {
                        written.contains(&name) && (point_of(&name).is_none() || uncommitted)
                    }
                    _ => {
                        uncommitted
                            && point_of(&name).is_some_and(|i| {
                                record_path(folder, i).file_name() == p.file_name()
                            })
                    }
                };
            if leftover {
                remove(&p)?;
                if sub == "plots" {
                    plots_removed.push(name);
                }
            }
        }
    }
    if !plots_removed.is_empty() {
        let mut keep = written;
        for n in &plots_removed {
            keep.remove(n);
        }
        write_manifest(folder, &keep)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_hide_or_mislead_are_refused() {
        for bad in [
            "",
            " ",
            ".",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a\\b",
            "a\nb",
            "a\tb",
            "x\u{202e}y",
            " a",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["quickstart", "N4_sweep-2", "ξ-scan", "a.b"] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn point_numbers_are_read_from_file_names() {
        assert_eq!(point_of("point007.cbor"), Some(7));
        assert_eq!(point_of("point1234-correlation.svg"), Some(1234));
        assert_eq!(point_of("xi-scaling-0.svg"), None);
    }

    #[test]
    fn config_hash_is_stable() {
        // FNV-1a 64 of the empty string is its offset basis.
        assert_eq!(config_hash(""), "cbf29ce484222325");
        assert_ne!(config_hash("a"), config_hash("b"));
    }
}
