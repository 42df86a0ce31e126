//! A training run's points and its folder: one point trained from its
//! checkpoint ([`train_work`], which touches nothing else of the folder, so
//! that workers can run it side by side), a finished point committed
//! ([`commit_point`]: its record, then `training.csv` and `summary.json`
//! rewritten, then the commit record), and the session that holds the
//! points of a folder ([`TrainSession`]). A fresh run, a resumed one, a
//! shard, a merge and the concurrent workers (`parallel`) all write
//! through these functions.

use crate::error::{Error, Result};
use crate::experiment::config::Config;
use crate::experiment::folder::{self, write_atomic, write_json, Commit};
#[cfg(feature = "plots")]
use crate::experiment::plots;
use crate::experiment::session::timestamp;
use crate::experiment::training::analysis::{divergence, study, table, Study, TrainedPoint};
use crate::experiment::training::checkpoint::{self, Identity, Policy, Saver};
use crate::experiment::training::plan::{Plan, TrainPoint};
use crate::train::data::Dataset;
use crate::train::model::Params;
use crate::train::{train_from, Protocol, Report, TrainBackend};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// training.csv: one row per network and report step.
fn training_csv(points: &[TrainedPoint]) -> String {
    let mut s = String::from(
        "point,states,depth,width,sigma_w,sigma_w_ratio,lr,seed,step,train_acc,test_acc,loss,test_loss,xi,depth_over_xi,lr_config,diverged,input_sigma,train_tie_rate,test_tie_rate\n",
    );
    for p in points {
        for r in &p.reports {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                p.point.index,
                p.point.states,
                p.depth,
                p.point.width,
                p.init.sigma_w,
                p.point.sigma_w_ratio,
                p.lr,
                p.point.seed,
                r.step,
                r.train_acc,
                r.test_acc,
                r.loss,
                r.test_loss,
                p.init.xi,
                p.depth_over_xi,
                p.point.lr,
                p.diverged,
                p.input_sigma,
                r.train_tie_rate,
                r.test_tie_rate
            );
        }
    }
    s
}

/// What a point's record (`points/pointNNN.cbor`) holds: its outcome. The
/// rest of a [`TrainedPoint`] (initialization, depth, learning rate) is
/// recomputed from the config by the theory, as when it was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// config_hash of the folder's config.toml.
    pub config_hash: String,
    /// Point index.
    pub index: usize,
    /// The backend that trained it, as described in summary.json.
    pub backend: String,
    /// The training lengths of the run, in steps.
    pub lengths: Vec<usize>,
    /// Reports.
    pub reports: Vec<Report>,
    /// Seconds in training steps.
    pub train_seconds: f64,
    /// Seconds evaluating.
    pub eval_seconds: f64,
    /// Multiply-adds of the training steps.
    pub train_macs: f64,
    /// Mean loss of the untrained network on the first training batch (the
    /// reference of divergence detection).
    pub initial_loss: f64,
    /// Training and test images evaluated at each report.
    pub eval_images: (usize, usize),
}

/// The point `p` of `plan` as trained, from its record.
pub(crate) fn trained_point(
    plan: &Plan,
    p: &TrainPoint,
    rec: &TrainRecord,
) -> Result<TrainedPoint> {
    let (init, depth, lr) = plan.resolve(p)?;
    let divergence = divergence(&rec.reports, rec.initial_loss);
    let input_sigma = plan.input_sigma.value(&init);
    Ok(TrainedPoint {
        point: p.clone(),
        depth,
        depth_over_xi: depth as f64 / init.xi,
        init,
        lr,
        reports: rec.reports.clone(),
        train_mac_per_s: if rec.train_seconds > 0.0 {
            rec.train_macs / rec.train_seconds
        } else {
            0.0
        },
        train_seconds: rec.train_seconds,
        eval_seconds: rec.eval_seconds,
        input_sigma,
        initial_loss: rec.initial_loss,
        diverged: divergence.is_some(),
        divergence,
    })
}

/// Writes training.csv and summary.json of the points trained so far;
/// returns their analysis (`eval_images`: training and test images
/// evaluated per network).
fn write_results(
    folder: &Path,
    plan: &Plan,
    lengths: &[usize],
    eval_images: (usize, usize),
    points: &[TrainedPoint],
    backend: &str,
) -> Result<Study> {
    write_atomic(
        &folder.join("training.csv"),
        training_csv(points).as_bytes(),
    )?;
    let st = study(points, lengths, eval_images);
    let (macs, secs): (f64, f64) = points.iter().fold((0.0, 0.0), |(m, s), p| {
        (m + p.train_mac_per_s * p.train_seconds, s + p.train_seconds)
    });
    let summary = serde_json::json!({
        "preset": plan.preset,
        "backend": backend,
        "lengths_steps": lengths,
        "points": points,
        "chance": st.chance,
        "replicates": st.replicates,
        "verdict_rule": st.verdict_rule,
        "trainable_depth": st.trainable_depth,
        "slopes": st.slopes,
        "settling": st.settling,
        "throughput": {"train_mac": macs, "train_seconds": secs, "mac_per_s": if secs > 0.0 { macs / secs } else { 0.0 }},
    });
    write_json(&folder.join("summary.json"), &summary)?;
    Ok(st)
}

/// A training session on a results folder: its commit record and the
/// points it holds.
pub(crate) struct TrainSession {
    pub(crate) folder: PathBuf,
    pub(crate) commit: Commit,
    pub(crate) done: BTreeMap<usize, (TrainedPoint, TrainRecord)>,
    pub(crate) clock: Instant,
    pub(crate) wall_before: f64,
}

impl TrainSession {
    pub(crate) fn new(folder: PathBuf, commit: Commit) -> Self {
        TrainSession {
            wall_before: commit.wall_seconds,
            folder,
            commit,
            done: BTreeMap::new(),
            clock: Instant::now(),
        }
    }

    /// The commit record, written after the files it describes.
    pub(crate) fn record(&mut self, status: &str) -> Result<()> {
        let c = &mut self.commit;
        c.status = status.to_string();
        c.complete = status == "complete";
        c.points = self.done.keys().copied().collect();
        c.points_done = c.points.len();
        c.non_finite_points = self
            .done
            .values()
            .filter(|(p, _)| p.diverged)
            .map(|(p, _)| p.point.index)
            .collect();
        c.updated = timestamp();
        c.wall_seconds = self.wall_before + self.clock.elapsed().as_secs_f64();
        c.pid = std::process::id();
        c.host = folder::host_name();
        c.write(&self.folder)
    }

    /// Training and test images evaluated per report, as the points' records
    /// say (the same for every point of a run; (0, 0) when none is held).
    fn eval_images(&self) -> (usize, usize) {
        self.done
            .values()
            .next()
            .map_or((0, 0), |(_, r)| r.eval_images)
    }

    /// The points held, in sweep order.
    fn points(&self) -> Vec<TrainedPoint> {
        self.done.values().map(|(p, _)| p.clone()).collect()
    }

    /// The backends of the points held, as summary.json names them
    /// (`fallback` when none is held).
    fn backends(&self, fallback: &str) -> String {
        let mut seen: Vec<&str> = Vec::new();
        for (_, r) in self.done.values() {
            if !seen.contains(&r.backend.as_str()) {
                seen.push(&r.backend);
            }
        }
        if seen.is_empty() {
            fallback.to_string()
        } else {
            seen.join("; ")
        }
    }

    /// Marks the folder failed with `e` at `point` (best effort: `e` is what
    /// the caller reports) and returns `e`.
    pub(crate) fn fail(&mut self, point: Option<usize>, e: Error) -> Error {
        self.commit.error = Some(e.to_string());
        self.commit.failed_point = point;
        let _ = self.record("failed");
        e
    }

    /// training.csv, summary.json and the plots of the points held, then the
    /// commit record with `status`. Returns the terminal table.
    pub(crate) fn finish(
        &mut self,
        cfg: &Config,
        plan: &Plan,
        lengths: &[usize],
        desc: &str,
        status: &str,
    ) -> Result<String> {
        let done = self.points();
        let st = write_results(
            &self.folder,
            plan,
            lengths,
            self.eval_images(),
            &done,
            &self.backends(desc),
        )?;
        #[cfg(feature = "plots")]
        if cfg.outputs.plots.unwrap_or(true) {
            let png = cfg.outputs.png.unwrap_or(true);
            folder::write_plots(&self.folder, |stage| {
                plots::trainability::run_plots(stage, png, plan, &st, &done)
            })?;
        }
        #[cfg(not(feature = "plots"))]
        let _ = cfg;
        self.record(status)?;
        Ok(table(&st))
    }
}

/// What every point of a run shares: the plan, the data and the protocol,
/// without the backend (so that several workers can train at once, each
/// with its own).
pub(crate) struct Job<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) data: &'a Dataset,
    pub(crate) lengths: &'a [usize],
    pub(crate) report_at: &'a [usize],
    pub(crate) max_steps: usize,
    pub(crate) eval_images: (usize, usize),
    pub(crate) policy: Policy,
    pub(crate) desc: &'a str,
}

impl<'a> Job<'a> {
    /// "cpu" or "gpu".
    pub(crate) fn kind(&self) -> &str {
        self.desc.split(' ').next().unwrap_or("cpu")
    }
}

/// Trains point `p` on `backend` from its checkpoint in `folder` where
/// usable (saving checkpoints there as it goes): its record, or `None` when
/// cancelled part-way, with the warnings to show. Nothing else of the
/// folder is touched, so that workers can run it side by side.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_work(
    job: &Job<'_>,
    folder: &Path,
    config_hash: &str,
    p: &TrainPoint,
    backend: &mut dyn TrainBackend,
    point_started: &(dyn Fn(usize, usize, &str, u64) + Sync),
    progress: &dyn Fn(usize),
    cancel: &AtomicBool,
) -> Result<(Option<TrainRecord>, Vec<String>)> {
    let plan = job.plan;
    let mut notes = Vec::new();
    let (init, depth, lr) = plan.resolve(p)?;
    let spec = plan.model(p, &init, depth, job.data.train.dim);
    spec.validate()?;
    let id = Identity {
        config_hash: config_hash.to_string(),
        point: p.index,
        seed: p.seed,
        backend: job.kind().to_string(),
        steps: job.max_steps,
        images: (job.data.train.len(), job.data.test.len()),
    };
    let start = match checkpoint::load(folder, &id, &spec) {
        Ok(snap) => snap,
        Err(why) => {
            notes.push(format!(
                "warning: the checkpoint of point {} is not used ({why}): the point restarted from its initialization",
                p.index
            ));
            checkpoint::remove(folder, p.index)?;
            None
        }
    };
    let mut label = format!(
        "N={} σw={:.4} n={} L={} ({:.1}ξ) lr={} seed={}",
        p.states,
        init.sigma_w,
        p.width,
        depth,
        depth as f64 / init.xi,
        lr,
        p.seed
    );
    if let Some(snap) = &start {
        let _ = write!(label, " (from its checkpoint at step {})", snap.step);
    }
    point_started(p.index, plan.points.len(), &label, job.max_steps as u64);
    let proto = Protocol {
        lr,
        momentum: plan.momentum,
        batch: plan.batch,
        steps: job.max_steps,
        report_at: job.report_at.to_vec(),
        eval_train: plan.eval_train,
        eval_test: plan.eval_test,
        eval_batch: plan.eval_batch,
    };
    let params = match start {
        Some(_) => Params::zeros(&spec),
        None => plan.params(&spec, &init, p.seed),
    };
    let mut saver = Saver::new(folder, &id, &spec, job.policy);
    let out = train_from(
        backend,
        &spec,
        &params,
        job.data,
        &proto,
        p.seed,
        progress,
        cancel,
        start.as_ref(),
        &mut saver,
    )?;
    if !out.complete {
        return Ok((None, notes));
    }
    Ok((
        Some(TrainRecord {
            config_hash: config_hash.to_string(),
            index: p.index,
            backend: job.desc.to_string(),
            lengths: job.lengths.to_vec(),
            reports: out.reports,
            train_seconds: out.train_seconds,
            eval_seconds: out.eval_seconds,
            train_macs: out.train_macs,
            initial_loss: out.initial_loss,
            eval_images: job.eval_images,
        }),
        notes,
    ))
}

/// Commits a trained point: its record, then training.csv and summary.json
/// of every point held, then the commit record; its checkpoint removed
/// unless kept.
pub(crate) fn commit_point(
    job: &Job<'_>,
    s: &mut TrainSession,
    p: &TrainPoint,
    rec: TrainRecord,
) -> Result<()> {
    folder::write_record(&s.folder, p.index, &rec)?;
    s.done
        .insert(p.index, (trained_point(job.plan, p, &rec)?, rec));
    write_results(
        &s.folder,
        job.plan,
        job.lengths,
        job.eval_images,
        &s.points(),
        &s.backends(job.desc),
    )?;
    s.record("running")?;
    if !job.policy.keep {
        checkpoint::remove(&s.folder, p.index)?;
    }
    Ok(())
}
