//! A session on a results folder: the commit record (`meta.json`), the
//! records of the finished points, and the writes in the order that keeps
//! every file consistent with the commit record; creating a folder and
//! reading one back (resume, merge).

use crate::error::{Error, Result};
use crate::experiment::aggregate::{point_record, write_aggregates};
use crate::experiment::config::{Config, Kind, RunPoint};
use crate::experiment::folder::{self, write_atomic, Commit};
use crate::experiment::lock::FolderLock;
#[cfg(feature = "plots")]
use crate::experiment::plots;
use crate::experiment::point::resolve_point;
use crate::experiment::records::{PointRecord, PointSummary, RunReport, XiScaling};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// The time now, RFC 3339 to the second (UTC).
pub(crate) fn timestamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// One session on a results folder: the commit record, the finished
/// points' records, and the writes in the order that keeps every file
/// consistent with `meta.json` (see [`folder`]).
pub(crate) struct Session<'a> {
    pub(crate) folder: PathBuf,
    pub(crate) cfg: &'a Config,
    pub(crate) commit: Commit,
    pub(crate) records: std::collections::BTreeMap<usize, PointRecord>,
    pub(crate) clock: Instant,
    pub(crate) wall_before: f64,
    // Read only where plots are drawn (the `plots` feature).
    #[cfg_attr(not(feature = "plots"), allow(dead_code))]
    png: bool,
    #[cfg_attr(not(feature = "plots"), allow(dead_code))]
    plots: bool,
    /// The folder's lock, held while this session writes it (a new folder's
    /// session takes it; a resume holds its own).
    pub(crate) lock: Option<FolderLock>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(folder: PathBuf, cfg: &'a Config, commit: Commit) -> Self {
        Session {
            png: cfg.outputs.png.unwrap_or(true),
            plots: cfg.outputs.plots.unwrap_or(true),
            wall_before: commit.wall_seconds,
            folder,
            cfg,
            commit,
            records: Default::default(),
            clock: Instant::now(),
            lock: None,
        }
    }

    /// Writes the commit record with `status`, naming the points held.
    pub(crate) fn commit(&mut self, status: &str) -> Result<()> {
        let c = &mut self.commit;
        c.status = status.to_string();
        c.complete = status == "complete";
        c.points = self.records.keys().copied().collect();
        c.points_done = c.points.len();
        c.non_finite_points = self
            .records
            .values()
            .filter(|r| !r.summary.non_finite.is_empty())
            .map(|r| r.summary.index)
            .collect();
        c.updated = timestamp();
        c.wall_seconds = self.wall_before + self.clock.elapsed().as_secs_f64();
        c.pid = std::process::id();
        c.host = folder::host_name();
        c.write(&self.folder)
    }

    /// A finished point: plots (staged, renamed), its record, then the
    /// commit record that names it.
    pub(crate) fn add(&mut self, s: &PointSummary) -> Result<()> {
        #[cfg(feature = "plots")]
        if self.plots {
            let png = self.png;
            folder::write_plots(&self.folder, |stage| {
                plots::simulation::point_plots(stage, png, s)
            })?;
        }
        let rec = point_record(s, &self.commit.config_hash);
        folder::write_record(&self.folder, s.index, &rec)?;
        self.records.insert(s.index, rec);
        self.commit("running")
    }

    /// The aggregates of exactly the held points, then the commit record
    /// with the final status.
    pub(crate) fn finish(&mut self, status: &str) -> Result<(Vec<PointSummary>, Vec<XiScaling>)> {
        let (points, sc) = write_aggregates(&self.folder, &self.records)?;
        #[cfg(feature = "plots")]
        if self.plots {
            let png = self.png;
            folder::write_plots(&self.folder, |stage| {
                plots::simulation::scaling_plots(stage, png, &sc, &points)?;
                plots::finite_width::finite_width_plots(stage, png, &points)
            })?;
        }
        self.commit(status)?;
        Ok((points, sc))
    }

    /// Marks the folder failed at `point` with `e`, keeping the finished
    /// points (best effort: the original error is what the caller reports).
    pub(crate) fn fail(&mut self, point: Option<usize>, e: &Error) {
        self.commit.error = Some(e.to_string());
        self.commit.failed_point = point;
        if self.finish("failed").is_err() {
            let _ = self.commit("failed");
        }
    }

    /// Marks a theory-only folder complete with `points` held; `table` is
    /// its terminal summary.
    pub(crate) fn complete_theory(
        mut self,
        points: Vec<usize>,
        table: String,
    ) -> Result<RunReport> {
        let c = &mut self.commit;
        c.status = "complete".into();
        c.complete = true;
        c.points_done = points.len();
        c.points = points;
        c.updated = timestamp();
        c.wall_seconds = self.wall_before + self.clock.elapsed().as_secs_f64();
        c.write(&self.folder)?;
        Ok(RunReport {
            folder: self.folder,
            complete: true,
            points: Vec::new(),
            scaling: Vec::new(),
            table,
        })
    }
}

/// A panic inside a point, as an error (the folder is then marked failed).
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Numerical(format!("internal error (panic): {msg}")))
        }
    }
}

/// The text written to config.toml.
pub(crate) fn config_text(cfg: &Config) -> Result<String> {
    let text = toml::to_string_pretty(cfg)
        .map_err(|e| Error::Folder(format!("config cannot be written back: {e}")))?;
    Ok(format!(
        "# The config as run (defaults of the seed and backend filled in).\n{text}"
    ))
}

/// A new folder with config.toml and a first commit record (no points).
pub(crate) fn new_session<'a>(
    cfg: &'a Config,
    out_root: &Path,
    backend: &str,
    adapter: &str,
    note: &str,
    total: usize,
) -> Result<Session<'a>> {
    let dir = folder::create(out_root, &cfg.name)?;
    new_session_in(cfg, dir, backend, adapter, note, total)
}

/// A session in the new, empty folder `dir`: config.toml and a first
/// commit record (no points).
pub(crate) fn new_session_in<'a>(
    cfg: &'a Config,
    dir: PathBuf,
    backend: &str,
    adapter: &str,
    note: &str,
    total: usize,
) -> Result<Session<'a>> {
    let lock = FolderLock::acquire(&dir)?;
    let text = config_text(cfg)?;
    write_atomic(&dir.join("config.toml"), text.as_bytes())?;
    let commit = Commit {
        format: folder::FORMAT,
        version: env!("CARGO_PKG_VERSION").into(),
        config_hash: folder::config_hash(&text),
        name: cfg.name.clone(),
        kind: match cfg.kind {
            Kind::Simulation => "simulation".into(),
            Kind::Optimal => "optimal".into(),
            Kind::Training => "training".into(),
        },
        backend: backend.into(),
        adapter: adapter.into(),
        backend_note: note.into(),
        kernel: None,
        seed: cfg.seed(),
        started: timestamp(),
        updated: timestamp(),
        wall_seconds: 0.0,
        status: "running".into(),
        complete: false,
        points_done: 0,
        points_total: total,
        points: Vec::new(),
        non_finite_points: Vec::new(),
        pid: std::process::id(),
        host: folder::host_name(),
        sessions: 1,
        error: None,
        failed_point: None,
    };
    let mut s = Session::new(dir, cfg, commit);
    s.lock = Some(lock);
    s.commit("running")?;
    Ok(s)
}

/// A new results folder under `out_root` holding config.toml and a first
/// commit record (status running, no points), for run kinds that keep their
/// own per-point results (training); with the folder's lock, to hold while
/// writing it.
pub(crate) fn start_folder(
    cfg: &Config,
    out_root: &Path,
    backend: &str,
    adapter: &str,
    note: &str,
    total: usize,
) -> Result<(PathBuf, Commit, Option<FolderLock>)> {
    let mut s = new_session(cfg, out_root, backend, adapter, note, total)?;
    let lock = s.lock.take();
    Ok((s.folder, s.commit, lock))
}

/// Reads a results folder's config and commit record, for
/// [`crate::experiment::runner::resume_experiment`].
pub fn read_folder(dir: &Path) -> Result<(Config, Commit)> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(Error::Folder(format!(
                "{} is not a folder (a file): give a results folder to resume",
                dir.display()
            )))
        }
        _ => {}
    }
    let commit = Commit::read(dir)?;
    if commit.format != folder::FORMAT {
        return Err(Error::Folder(format!(
            "{} has folder format {}, this quantdepth writes format {}: it cannot be resumed",
            dir.display(),
            commit.format,
            folder::FORMAT
        )));
    }
    let path = dir.join("config.toml");
    let text = folder::read_text(&path, folder::CONFIG_CAP)?;
    if folder::config_hash(&text) != commit.config_hash {
        return Err(Error::Folder(format!(
            "{} was changed after the run started (its hash is not the one in meta.json): \
             a resumed run must use the config its points were run with",
            path.display()
        )));
    }
    let cfg = Config::from_toml(&text)?;
    Ok((cfg, commit))
}

/// Loads the records of the `held` points into `session` (resume, merge):
/// each one that reads back whole, holds its point and belongs to this
/// run. Returns what was wrong with each of the others, which are left out
/// (a resume runs them again; a merge refuses them). Nothing is removed; a
/// point beyond the sweep is an error.
pub(crate) fn load_records(
    session: &mut Session<'_>,
    points: &[RunPoint],
    held: &std::collections::BTreeSet<usize>,
) -> Result<Vec<String>> {
    let dir = session.folder.clone();
    let dir = dir.as_path();
    let mut problems = Vec::new();
    for &i in held {
        let Some(p) = points.get(i) else {
            return Err(Error::Folder(format!(
                "meta.json names point {i}, but the sweep has {} points",
                points.len()
            )));
        };
        let path = folder::record_path(dir, i);
        let mut rec: PointRecord = match folder::read_record(dir, i) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if rec.config_hash != session.commit.config_hash || rec.summary.index != i {
            problems.push(format!("{} belongs to another run", path.display()));
            continue;
        }
        rec.summary.network.network = resolve_point(p)?.network;
        session.records.insert(i, rec);
    }
    Ok(problems)
}
