//! Training folders beyond a single run: `run --resume` (the missing points,
//! each from its checkpoint where one is usable), shards (`run --shard K/M`,
//! a Slurm array task, balanced by [`sweep_costs`]) and `merge` (a folder
//! rebuilt from the shards' point records through the same writers as a
//! run).

use crate::error::{Error, Result};
use crate::experiment::config::Config;
use crate::experiment::folder::{self, read_record};
use crate::experiment::records::{Hooks, RunReport};
use crate::experiment::session::{new_session_in, read_folder};
use crate::experiment::shard::{create_folder, shard_points, Shard, ShardFile, SHARD_FILE};
use crate::experiment::training::checkpoint;
use crate::experiment::training::cost::sweep_costs;
use crate::experiment::training::execute::{prepare, train_points};
use crate::experiment::training::plan::{plan, Plan, TrainPoint};
use crate::experiment::training::points::{trained_point, TrainRecord, TrainSession};
use std::collections::BTreeSet;
use std::path::Path;

/// The points a training folder runs: its shard's (recomputed from the
/// config, and checked against shard.json) or all.
fn folder_points(dir: &Path, cfg: &Config, plan: &Plan) -> Result<Vec<TrainPoint>> {
    let Some(sf) = ShardFile::read(dir)? else {
        return Ok(plan.points.clone());
    };
    let expected = shard_points(&sweep_costs(cfg)?, sf.shard);
    if expected != sf.points {
        return Err(Error::Folder(format!(
            "{}/{} lists points {:?} for shard {}, but its config assigns {:?}: \
             the folder was written by another version of the shard split",
            dir.display(),
            SHARD_FILE,
            sf.points,
            sf.shard,
            expected
        )));
    }
    Ok(plan
        .points
        .iter()
        .filter(|p| sf.points.contains(&p.index))
        .cloned()
        .collect())
}

/// Loads the records of the points `s.commit` names into `s`.
fn load_records(s: &mut TrainSession, plan: &Plan) -> Result<()> {
    let held: Vec<usize> = s.commit.points.clone();
    for i in held {
        let Some(p) = plan.points.get(i) else {
            return Err(Error::Folder(format!(
                "meta.json names point {i}, but the sweep has {} points",
                plan.points.len()
            )));
        };
        let rec: TrainRecord = read_record(&s.folder, i)?;
        if rec.config_hash != s.commit.config_hash || rec.index != i {
            return Err(Error::Folder(format!(
                "{} belongs to another run",
                folder::record_path(&s.folder, i).display()
            )));
        }
        s.done.insert(i, (trained_point(plan, p, &rec)?, rec));
    }
    Ok(())
}

/// Continues an unfinished training folder (interrupted, failed, or killed):
/// removes what its commit record does not name (checkpoints stay), trains
/// the missing points — each from its checkpoint where one is usable — and
/// rewrites training.csv, summary.json and the plots. The files end as an
/// uninterrupted run writes them (timings apart). Runs on the backend the
/// folder ran on.
pub fn resume_training(dir: &Path, hooks: &Hooks<'_>) -> Result<RunReport> {
    let (cfg, mut commit) = read_folder(dir)?;
    let held: BTreeSet<usize> = commit.points.iter().copied().collect();
    let kind = commit.backend.clone();
    let wanted = match cfg.backend() {
        "auto" => kind.as_str(),
        b => b,
    };
    if wanted != kind || !matches!(kind.as_str(), "cpu" | "gpu") {
        return Err(Error::Folder(format!(
            "{} was trained on the {kind} backend and its config names {}: resuming on \
             another would not give the same numbers",
            dir.display(),
            cfg.backend()
        )));
    }
    let mut prep = prepare(&cfg, &kind, hooks.cancel)?;
    if prep.kind() != kind {
        return Err(Error::Folder(format!(
            "{} was trained on the {kind} backend; this machine opened {}",
            dir.display(),
            prep.desc
        )));
    }
    if kind == "gpu" && commit.adapter != prep.desc {
        prep.note.push_str(&format!(
            "\nwarning: {} was trained on {}, this session on {}: the points trained from \
             here may differ in the last bits from a run on one adapter",
            dir.display(),
            commit.adapter,
            prep.desc
        ));
    }
    folder::clean_leftovers(dir, &held)?;
    checkpoint::clean_temporaries(dir)?;
    commit.sessions += 1;
    commit.error = None;
    commit.failed_point = None;
    commit.backend_note = prep.note.clone();
    let todo = folder_points(dir, &cfg, &prep.plan)?;
    commit.points_total = todo.len();
    let mut s = TrainSession::new(dir.to_path_buf(), commit);
    load_records(&mut s, &prep.plan)?;
    s.record("running")?;
    train_points(&cfg, &mut prep, s, &todo, hooks)
}

/// Runs shard `shard` of a training sweep into the shard folder
/// `<out_root>/<name>-shard-K-of-M`: only its points, each exactly as an
/// unsharded run trains it.
pub fn run_training_shard(
    cfg: &Config,
    out_root: &Path,
    shard: Shard,
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    let mut prep = prepare(cfg, cfg.backend(), hooks.cancel)?;
    let mine = shard_points(&sweep_costs(cfg)?, shard);
    let dir = create_folder(out_root, &cfg.name, shard, mine.clone())?;
    let session = new_session_in(cfg, dir, prep.kind(), &prep.desc, &prep.note, mine.len())?;
    let todo: Vec<TrainPoint> = prep
        .plan
        .points
        .iter()
        .filter(|p| mine.contains(&p.index))
        .cloned()
        .collect();
    let s = TrainSession::new(session.folder.clone(), session.commit.clone());
    train_points(cfg, &mut prep, s, &todo, hooks)
}

/// Finishes a training folder whose commit record names every point of its
/// sweep (a merged folder): training.csv, summary.json and the plots from
/// the point records, through the writers of a run; marks it complete.
pub fn finish_training(dir: &Path) -> Result<RunReport> {
    let (cfg, commit) = read_folder(dir)?;
    let plan = plan(&cfg)?;
    let mut s = TrainSession::new(dir.to_path_buf(), commit);
    load_records(&mut s, &plan)?;
    if s.done.len() != plan.points.len() {
        return Err(Error::Folder(format!(
            "{} holds {} of its {} points: it cannot be finished",
            dir.display(),
            s.done.len(),
            plan.points.len()
        )));
    }
    let (first, lengths) = s
        .done
        .values()
        .next()
        .map(|(_, r)| (r.index, r.lengths.clone()))
        .unwrap_or_default();
    if let Some((_, r)) = s.done.values().find(|(_, r)| r.lengths != lengths) {
        return Err(Error::Folder(format!(
            "point {} was trained to lengths {:?}, point {first} to {lengths:?}: the shards \
             read different data",
            r.index, r.lengths
        )));
    }
    let table = s.finish(&cfg, &plan, &lengths, "", "complete")?;
    Ok(RunReport {
        folder: dir.to_path_buf(),
        complete: true,
        points: Vec::new(),
        scaling: Vec::new(),
        table,
    })
}
