//! Training the points of a plan on the data, one after another, and the
//! results folder: `training.csv` and `summary.json` rewritten after every
//! point, the commit record after them, the plots at the end.

use crate::error::{Error, Result};
use crate::experiment::config::Config;
#[cfg(feature = "plots")]
use crate::experiment::folder::write_plots;
use crate::experiment::folder::{write_atomic, write_json, Commit};
#[cfg(feature = "plots")]
use crate::experiment::plots;
use crate::experiment::records::{Hooks, RunReport};
use crate::experiment::session::{start_folder, timestamp};
use crate::experiment::training::analysis::{
    divergence, exponents, table, trainable_depths, Exponent, TrainableDepth, TrainedPoint,
};
use crate::experiment::training::budget::plan_memory;
use crate::experiment::training::plan::{plan, Plan, Resolved};
use crate::train::data::Dataset;
use crate::train::model::Params;
use crate::train::{train, CpuTrainBackend, Protocol, TrainBackend};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// Opens the training backend a user named, as the simulator's
/// `open_backend`: "cpu"; "gpu" (a hardware GPU, else the software adapter);
/// "auto" (a hardware GPU, else the CPU). Returns it with a note saying which.
pub fn open_train_backend(name: &str) -> Result<(Box<dyn TrainBackend>, String)> {
    use crate::sim::gpu::AdapterPolicy;
    use crate::train::gpu::GpuTrainBackend;
    match name {
        "cpu" => Ok((Box::new(CpuTrainBackend::default()), "backend cpu".into())),
        "gpu" => {
            let b = GpuTrainBackend::new(AdapterPolicy::PreferHardware)?;
            let note = if b.context().is_software() {
                format!(
                    "backend gpu: no hardware GPU; using the software adapter {} (correct but slow)",
                    b.context().describe()
                )
            } else {
                format!("backend gpu: {}", b.context().describe())
            };
            Ok((Box::new(b), note))
        }
        "auto" => match GpuTrainBackend::new(AdapterPolicy::HardwareOnly) {
            Ok(b) => {
                let note = format!("backend auto: took the GPU {}", b.context().describe());
                Ok((Box::new(b), note))
            }
            Err(e) => Ok((
                Box::new(CpuTrainBackend::default()),
                format!("backend auto: no hardware GPU ({e}); took the CPU backend"),
            )),
        },
        other => Err(Error::invalid("backend", other, "one of auto, cpu, gpu")),
    }
}

/// training.csv: one row per network and report step.
fn training_csv(points: &[TrainedPoint]) -> String {
    let mut s = String::from(
        "point,states,depth,width,sigma_w,sigma_w_ratio,lr,seed,step,train_acc,test_acc,loss,test_loss,xi,depth_over_xi,lr_config,diverged\n",
    );
    for p in points {
        for r in &p.reports {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
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
                p.diverged
            );
        }
    }
    s
}

/// Writes training.csv and summary.json of the points trained so far;
/// returns their trainable depths and exponents.
fn write_results(
    folder: &Path,
    plan: &Plan,
    lengths: &[usize],
    points: &[TrainedPoint],
    backend: &str,
) -> Result<(Vec<TrainableDepth>, Vec<Exponent>)> {
    write_atomic(
        &folder.join("training.csv"),
        training_csv(points).as_bytes(),
    )?;
    let tds = trainable_depths(points, lengths);
    let ex = exponents(&tds);
    let (macs, secs): (f64, f64) = points.iter().fold((0.0, 0.0), |(m, s), p| {
        (m + p.train_mac_per_s * p.train_seconds, s + p.train_seconds)
    });
    let summary = serde_json::json!({
        "preset": plan.preset,
        "backend": backend,
        "lengths_steps": lengths,
        "points": points,
        "trainable_depth": tds,
        "exponents": ex,
        "throughput": {"train_mac": macs, "train_seconds": secs, "mac_per_s": if secs > 0.0 { macs / secs } else { 0.0 }},
    });
    write_json(&folder.join("summary.json"), &summary)?;
    Ok((tds, ex))
}

/// Runs a training experiment into a new results folder under `out_root`.
///
/// Every point is resolved by the theory, checked, and the largest network's
/// memory planned against this machine's before the folder is created; an
/// error after that marks the commit record failed with the error (never
/// left "running").
pub fn run_training(cfg: &Config, out_root: &Path, hooks: &Hooks<'_>) -> Result<RunReport> {
    let plan = plan(cfg)?;
    let mut data = Dataset::load(&plan.data)?;
    if let Some(k) = plan.train_subset {
        data.train = data.train.take(k);
    }
    let lengths = plan.length_steps(data.train.len())?;
    let max_steps = *lengths.last().expect("at least one length");
    let resolved = plan.resolve_all(data.train.dim, hooks.cancel)?;
    let (backend, note) = open_train_backend(cfg.backend())?;
    let desc = backend.describe();
    let data_bytes = ((data.train.len() + data.test.len()) as u64)
        .saturating_mul(data.train.dim as u64)
        .saturating_mul(4);
    let memory = plan_memory(
        &resolved,
        plan.batch,
        plan.eval_batch.min(backend.max_batch()),
        max_steps,
        desc.starts_with("gpu"),
        data_bytes,
        None,
    )?;
    let (folder, mut commit, _lock) = start_folder(
        cfg,
        out_root,
        desc.split(' ').next().unwrap_or("cpu"),
        &desc,
        &note,
        plan.points.len(),
    )?;
    let run = Run {
        plots: cfg.outputs.plots.unwrap_or(true),
        png: cfg.outputs.png.unwrap_or(true),
        plan: &plan,
        data: &data,
        resolved: &resolved,
        lengths: &lengths,
        folder: &folder,
        desc: &desc,
        clock: Instant::now(),
    };
    match run.train_all(backend, &mut commit, hooks) {
        Ok((complete, table)) => Ok(RunReport {
            folder,
            complete,
            points: Vec::new(),
            scaling: Vec::new(),
            table: format!("{note}\n{}\n{table}", memory.describe()),
        }),
        Err(e) => {
            commit.status = "failed".into();
            commit.complete = false;
            commit.error = Some(e.to_string());
            commit.updated = timestamp();
            commit.wall_seconds = run.clock.elapsed().as_secs_f64();
            // Best effort: the error is what the caller reports.
            let _ = commit.write(&folder);
            Err(e)
        }
    }
}

/// A training run whose folder exists.
#[cfg_attr(not(feature = "plots"), allow(dead_code))]
struct Run<'a> {
    plots: bool,
    png: bool,
    plan: &'a Plan,
    data: &'a Dataset,
    resolved: &'a [Resolved],
    lengths: &'a [usize],
    folder: &'a Path,
    desc: &'a str,
    clock: Instant,
}

impl Run<'_> {
    /// The commit record, written after the files it describes.
    fn record(&self, commit: &mut Commit, status: &str, done: &[TrainedPoint]) -> Result<()> {
        commit.status = status.to_string();
        commit.complete = status == "complete";
        commit.points = done.iter().map(|p| p.point.index).collect();
        commit.points_done = done.len();
        commit.non_finite_points = done
            .iter()
            .filter(|p| p.diverged)
            .map(|p| p.point.index)
            .collect();
        commit.updated = timestamp();
        commit.wall_seconds = self.clock.elapsed().as_secs_f64();
        commit.write(self.folder)
    }

    /// Trains every point; returns whether all ran and the terminal table.
    /// `commit.failed_point` names the point being trained while one is.
    fn train_all(
        &self,
        mut backend: Box<dyn TrainBackend>,
        commit: &mut Commit,
        hooks: &Hooks<'_>,
    ) -> Result<(bool, String)> {
        let (plan, data, lengths, folder, desc) =
            (self.plan, self.data, self.lengths, self.folder, self.desc);
        let max_steps = *lengths.last().expect("at least one length");
        let mut report_at: Vec<usize> = lengths
            .iter()
            .chain(plan.report_at.iter().filter(|s| **s <= max_steps))
            .copied()
            .collect();
        report_at.sort_unstable();
        report_at.dedup();
        let mut done: Vec<TrainedPoint> = Vec::new();
        let mut complete = true;
        for (p, r) in plan.points.iter().zip(self.resolved) {
            let (init, depth, lr, spec) = (r.init.clone(), r.depth, r.lr, &r.spec);
            let label = format!(
                "N={} σw={:.4} n={} L={} ({:.1}ξ) lr={} seed={}",
                p.states,
                init.sigma_w,
                p.width,
                depth,
                depth as f64 / init.xi,
                lr,
                p.seed
            );
            (hooks.point_started)(p.index, plan.points.len(), &label, max_steps as u64);
            commit.failed_point = Some(p.index);
            let proto = Protocol {
                lr,
                momentum: plan.momentum,
                batch: plan.batch,
                steps: max_steps,
                report_at: report_at.clone(),
                eval_train: plan.eval_train,
                eval_test: plan.eval_test,
                eval_batch: plan.eval_batch,
            };
            let params = Params::init(spec, p.seed);
            let progress = |s: usize| (hooks.layers)(s as u64);
            let out = train(
                backend.as_mut(),
                spec,
                &params,
                data,
                &proto,
                p.seed,
                &progress,
                hooks.cancel,
            )?;
            if !out.complete {
                complete = false;
                break;
            }
            let divergence = divergence(&out.reports, out.initial_loss);
            done.push(TrainedPoint {
                point: p.clone(),
                depth,
                depth_over_xi: depth as f64 / init.xi,
                init,
                lr,
                reports: out.reports,
                train_mac_per_s: if out.train_seconds > 0.0 {
                    out.train_macs / out.train_seconds
                } else {
                    0.0
                },
                train_seconds: out.train_seconds,
                eval_seconds: out.eval_seconds,
                initial_loss: out.initial_loss,
                diverged: divergence.is_some(),
                divergence,
            });
            write_results(folder, plan, lengths, &done, desc)?;
            commit.failed_point = None;
            self.record(commit, "running", &done)?;
        }
        commit.failed_point = None;
        let (tds, ex) = write_results(folder, plan, lengths, &done, desc)?;
        let mut note = String::new();
        let diverged: Vec<String> = done
            .iter()
            .filter_map(|p| {
                p.divergence
                    .as_ref()
                    .map(|d| format!("{} ({d})", p.point.index))
            })
            .collect();
        if !diverged.is_empty() {
            note.push_str(&format!(
                "warning: training diverged at point(s) {}: marked diverged in training.csv and \
                 summary.json; a lower training.lr avoids it\n",
                diverged.join(", ")
            ));
        }
        #[cfg(feature = "plots")]
        if self.plots {
            let png = self.png;
            write_plots(folder, |stage| {
                plots::training::run_plots(stage, png, plan, &tds, &done)
            })?;
        }
        self.record(
            commit,
            if complete { "complete" } else { "interrupted" },
            &done,
        )?;
        Ok((complete, format!("{note}{}", table(&tds, &ex))))
    }
}
