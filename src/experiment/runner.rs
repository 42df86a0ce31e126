//! Runs an experiment: the entry points (run, resume, shard, finish) and
//! the point loop. Each finished point is committed to the results folder
//! (see [`crate::experiment::session`]), so an interrupted run leaves a
//! valid folder marked incomplete.
//!
//! The result types, the point runner and the summary live in their own
//! modules; they are re-exported here under the paths they have always had.

use crate::error::{Error, Result};
use crate::experiment::config::{Config, Kind, RunPoint};
use crate::experiment::folder;
use crate::experiment::optimal::{finish_optimal, optimal_into, optimal_shard};
use crate::experiment::point::run_point;
use crate::experiment::session::{catch_panic, load_records, new_session_in, Session};
use crate::experiment::summary::summary_table;
use crate::sim::Backend;
use std::path::{Path, PathBuf};

pub use crate::analysis::checked_agreement;
pub use crate::experiment::folder::write_atomic;
pub use crate::experiment::optimal::{run_optimal, OptimalRecord};
pub use crate::experiment::point::resolve_point;
pub use crate::experiment::records::{
    non_finite, BackwardResult, Curve, CurveRow, Hooks, PointRecord, PointSummary, RunReport,
    XiFit, XiScaling,
};
pub use crate::experiment::session::read_folder;
pub use crate::experiment::summary::sig;

/// meta.json's `"kernel"`: this session's variants (`now`), after those
/// of the sessions before a resume (`before`) where they differ —
/// `"splitk; after resume: tiled-int64"` — so no point loses the record of
/// the kernel that ran it.
fn kernel_record(before: Option<&str>, now: Option<String>) -> Option<String> {
    match (before, now) {
        (Some(b), Some(n)) if b != n && !b.ends_with(&format!("; after resume: {n}")) => {
            Some(format!("{b}; after resume: {n}"))
        }
        (Some(b), Some(_)) => Some(b.to_string()),
        (b, None) => b.map(str::to_string),
        (None, n) => n,
    }
}

/// Runs the points not yet held, then finishes the folder.
fn execute(
    mut session: Session<'_>,
    points: &[RunPoint],
    backend: &mut dyn Backend,
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    let mut complete = true;
    // The kernel record of the sessions before a resume, kept beside this
    // session's.
    let before = session.commit.kernel.clone();
    let todo: Vec<&RunPoint> = points
        .iter()
        .filter(|p| !session.records.contains_key(&p.index))
        .collect();
    for p in todo {
        if hooks.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            complete = false;
            break;
        }
        let outcome = catch_panic(|| run_point(p, session.cfg, backend, hooks, points.len()))
            .and_then(|o| match o {
                Some(s) => {
                    // The layer kernel variant(s) that ran so far, for meta.json.
                    session.commit.kernel = kernel_record(before.as_deref(), backend.info().kernel);
                    session.add(&s).map(|()| Some(s))
                }
                None => Ok(None),
            });
        match outcome {
            Ok(Some(s)) => (hooks.point_finished)(&s),
            Ok(None) => {
                complete = false;
                break;
            }
            Err(e) => {
                let e = match e {
                    Error::Folder(_) | Error::TooLarge(_) => e,
                    // A value outside what the point allows (e.g. a forced
                    // kernel variant at this size) is not a numerical failure.
                    e @ Error::Invalid { .. } => {
                        Error::Config(format!("point {} ({}): {e}", p.index, p.label()))
                    }
                    other => {
                        Error::Numerical(format!("point {} ({}): {other}", p.index, p.label()))
                    }
                };
                session.fail(Some(p.index), &e);
                return Err(e);
            }
        }
    }
    let complete = complete && session.records.len() == points.len();
    let status = if complete { "complete" } else { "interrupted" };
    let (done, sc) = match session.finish(status) {
        Ok(x) => x,
        Err(e) => {
            session.fail(None, &e);
            return Err(e);
        }
    };
    let table = summary_table(&done, &sc);
    Ok(RunReport {
        folder: session.folder,
        complete,
        points: done,
        scaling: sc,
        table,
    })
}

/// Runs a simulation experiment into a new results folder under `out_root`.
///
/// The sweep is planned first (point limit, sizes, this machine's memory);
/// nothing is created when the plan is refused. Each finished point is
/// committed to the folder; Ctrl-C (or SIGTERM/SIGHUP in the CLI) keeps the
/// finished points and marks the folder `interrupted`; a failure marks it
/// `failed` with the error and the point, and is returned.
pub fn run_experiment(
    cfg: &Config,
    out_root: &Path,
    backend: &mut dyn Backend,
    backend_note: &str,
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    if cfg.kind == Kind::Optimal {
        return run_optimal(cfg, out_root);
    }
    if cfg.kind == Kind::Training {
        return crate::experiment::training::run_training(cfg, out_root, hooks);
    }
    let info = backend.info();
    crate::experiment::plan::plan_run(cfg, info.backend == "gpu")?;
    let points = cfg.points()?;
    let dir = folder::create(out_root, &cfg.name)?;
    run_into(cfg, dir, &points, backend, backend_note, hooks)
}

/// Continues an unfinished results folder (interrupted, failed, or killed
/// while running): removes what its commit record does not name, runs only
/// the missing points, and rebuilds the aggregates. The files end identical
/// (apart from timings) to those of an uninterrupted run. `backend` must be
/// the kind named in the folder's config.
///
/// The folder is locked first (a second process is refused, see
/// [`crate::experiment::lock`]); everything is read and checked before
/// anything is removed: a committed point whose record is missing, does not
/// read back or belongs to another run is run again (with a warning on
/// stderr), so no damaged record makes a folder unresumable.
pub fn resume_experiment(
    dir: &Path,
    backend: &mut dyn Backend,
    backend_note: &str,
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    // Read once to know it is a results folder, then again under the lock.
    read_folder(dir)?;
    let lock = crate::experiment::lock::FolderLock::acquire(dir)?;
    let (cfg, mut commit) = read_folder(dir)?;
    let this = env!("CARGO_PKG_VERSION");
    if commit.version != this {
        // As merge refuses shards of two versions: one folder's points are
        // computed by one version of the code.
        return Err(Error::Folder(format!(
            "{} was written by quantdepth {}, this is quantdepth {this}: resuming would mix \
             points computed by two versions; finish it with quantdepth {}, or run its \
             config.toml again for a new folder",
            dir.display(),
            commit.version,
            commit.version
        )));
    }
    if commit.status == "running" && !commit.is_stale() {
        return Err(Error::Folder(format!(
            "{} is being run by process {} on {}: wait for it, or stop it first",
            dir.display(),
            commit.pid,
            if commit.host.is_empty() {
                "this machine"
            } else {
                &commit.host
            }
        )));
    }
    if cfg.kind == Kind::Training {
        return crate::experiment::training::resume_training(dir, hooks);
    }
    // shard.json is checked (bounds, its points against the config) before
    // anything in the folder is deleted.
    crate::experiment::shard::read_checked(dir, &cfg)?;
    let held: std::collections::BTreeSet<usize> = commit.points.iter().copied().collect();
    commit.sessions += 1;
    commit.error = None;
    commit.failed_point = None;
    if cfg.kind == Kind::Optimal {
        let shard = crate::experiment::shard::ShardFile::read(dir)?;
        folder::clean_leftovers(dir, &held)?;
        let mut s = Session::new(dir.to_path_buf(), &cfg, commit);
        s.lock = Some(lock);
        s.commit("running")?;
        if let Some(sf) = shard {
            return optimal_shard(s, &cfg, &sf.points);
        }
        return optimal_into(s, &cfg);
    }
    let info = backend.info();
    if info.backend != commit.backend {
        return Err(Error::Folder(format!(
            "{} was run on the {} backend; resuming on {} would not give the same numbers: \
             resume with backend {}",
            dir.display(),
            commit.backend,
            info.backend,
            commit.backend
        )));
    }
    commit.backend_note = backend_note.to_string();
    crate::experiment::plan::plan_run(&cfg, info.backend == "gpu")?;
    let points = cfg.points()?;
    let mut session = Session::new(dir.to_path_buf(), &cfg, commit);
    session.lock = Some(lock);
    for problem in load_records(&mut session, &points, &held)? {
        eprintln!("warning: {problem}; its point is run again");
    }
    // A shard folder runs only its shard's points.
    let points = crate::experiment::shard::restrict(dir, &cfg, points)?;
    // Only now, with every record read and checked: the leftovers go
    // (the records just refused among them).
    let kept: std::collections::BTreeSet<usize> = session.records.keys().copied().collect();
    folder::clean_leftovers(dir, &kept)?;
    session.commit("running")?;
    execute(session, &points, backend, hooks)
}

/// Runs shard `shard` of a simulation sweep into the shard folder
/// `<out_root>/<name>-shard-K-of-M` (see [`crate::experiment::shard`]):
/// only the points assigned to it, each exactly as an unsharded run
/// computes it. `quantdepth merge` combines the shard folders.
pub fn run_shard(
    cfg: &Config,
    out_root: &Path,
    shard: crate::experiment::shard::Shard,
    backend: &mut dyn Backend,
    backend_note: &str,
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    use crate::experiment::shard::{create_folder, shard_points, sweep_costs};
    if cfg.kind == Kind::Optimal {
        let mine = shard_points(&sweep_costs(cfg)?, shard);
        let dir = create_folder(out_root, &cfg.name, shard, mine.clone())?;
        let s = new_session_in(cfg, dir, "theory", "-", "theory only", mine.len())?;
        return optimal_shard(s, cfg, &mine);
    }
    if cfg.kind == Kind::Training {
        return crate::experiment::training::run_training_shard(cfg, out_root, shard, hooks);
    }
    let info = backend.info();
    crate::experiment::plan::plan_run(cfg, info.backend == "gpu")?;
    let points = cfg.points()?;
    let mine = shard_points(&sweep_costs(cfg)?, shard);
    let dir = create_folder(out_root, &cfg.name, shard, mine.clone())?;
    let mine: std::collections::BTreeSet<usize> = mine.into_iter().collect();
    let points: Vec<RunPoint> = points
        .into_iter()
        .filter(|p| mine.contains(&p.index))
        .collect();
    run_into(cfg, dir, &points, backend, backend_note, hooks)
}

/// Runs `points` of `cfg` into the new, empty folder `dir`: config.toml and
/// a first commit record, then the point loop.
fn run_into(
    cfg: &Config,
    dir: PathBuf,
    points: &[RunPoint],
    backend: &mut dyn Backend,
    backend_note: &str,
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    let info = backend.info();
    let session = new_session_in(
        cfg,
        dir,
        &info.backend,
        &info.adapter,
        backend_note,
        points.len(),
    )?;
    execute(session, points, backend, hooks)
}

/// Finishes a folder whose commit record names every point of its sweep
/// (a merged folder): rebuilds the aggregates, the ξ scaling and its plots
/// from the point records, and marks it complete.
pub fn finish_folder(dir: &Path) -> Result<RunReport> {
    let (cfg, commit) = read_folder(dir)?;
    if cfg.kind == Kind::Optimal {
        return finish_optimal(dir, &cfg, commit);
    }
    if cfg.kind == Kind::Training {
        return crate::experiment::training::finish_training(dir);
    }
    let points = cfg.points()?;
    let held: std::collections::BTreeSet<usize> = commit.points.iter().copied().collect();
    if held.len() != points.len() {
        return Err(Error::Folder(format!(
            "{} holds {} of its {} points: it cannot be finished",
            dir.display(),
            held.len(),
            points.len()
        )));
    }
    let mut session = Session::new(dir.to_path_buf(), &cfg, commit);
    if let Some(problem) = load_records(&mut session, &points, &held)?.first() {
        return Err(Error::Folder(problem.clone()));
    }
    let (done, sc) = session.finish("complete")?;
    let table = summary_table(&done, &sc);
    Ok(RunReport {
        folder: dir.to_path_buf(),
        complete: true,
        points: done,
        scaling: sc,
        table,
    })
}

#[cfg(test)]
mod tests {
    use super::kernel_record;

    /// A resumed run keeps the earlier sessions' kernel record and adds its
    /// own where it differs; a repeat of the same session's variant adds
    /// nothing.
    #[test]
    fn kernel_record_keeps_the_sessions_before_a_resume() {
        let rec = |b: Option<&str>, n: Option<&str>| kernel_record(b, n.map(str::to_string));
        assert_eq!(rec(None, Some("splitk")).as_deref(), Some("splitk"));
        assert_eq!(
            rec(Some("splitk"), Some("splitk")).as_deref(),
            Some("splitk")
        );
        assert_eq!(
            rec(Some("splitk"), Some("tiled-int64")).as_deref(),
            Some("splitk; after resume: tiled-int64")
        );
        assert_eq!(
            rec(
                Some("splitk; after resume: tiled-int64"),
                Some("tiled-int64")
            )
            .as_deref(),
            Some("splitk; after resume: tiled-int64")
        );
        assert_eq!(rec(Some("splitk"), None).as_deref(), Some("splitk"));
        assert_eq!(rec(None, None), None);
    }
}
