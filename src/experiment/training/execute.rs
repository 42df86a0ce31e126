//! Training the points of a plan on the data, one after another, and the
//! results folder: `training.csv` and `summary.json` rewritten after every
//! point, the commit record after them, the plots at the end.

use crate::error::{Error, Result};
use crate::experiment::config::Config;
use crate::experiment::folder::{write_atomic, write_json, Commit};
#[cfg(feature = "plots")]
use crate::experiment::plots;
use crate::experiment::records::{Hooks, RunReport};
use crate::experiment::session::{start_folder, timestamp};
use crate::experiment::training::analysis::{study, table, Study, TrainedPoint};
use crate::experiment::training::plan::{plan, Plan};
use crate::train::data::Dataset;
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
        "point,states,depth,width,sigma_w,sigma_w_ratio,lr,seed,step,train_acc,test_acc,loss,test_loss,xi,depth_over_xi,input_sigma,train_tie_rate,test_tie_rate\n",
    );
    for p in points {
        for r in &p.reports {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
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
                p.input_sigma,
                r.train_tie_rate,
                r.test_tie_rate
            );
        }
    }
    s
}

/// Writes training.csv and summary.json of the points trained so far;
/// returns their analysis.
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

/// Runs a training experiment into a new results folder under `out_root`.
pub fn run_training(cfg: &Config, out_root: &Path, hooks: &Hooks<'_>) -> Result<RunReport> {
    let plan = plan(cfg)?;
    let mut data = Dataset::load(&plan.data)?;
    if let Some(k) = plan.train_subset {
        data.train = data.train.take(k);
    }
    let lengths = plan.length_steps(data.train.len());
    let eval_images = (
        plan.eval_train.min(data.train.len()),
        plan.eval_test.min(data.test.len()),
    );
    let max_steps = *lengths.last().expect("at least one length");
    // A report after the last step cannot be honoured: refused, never dropped.
    if let Some(&s) = plan.report_at.iter().find(|s| **s > max_steps) {
        return Err(Error::invalid(
            "training.report_at",
            s,
            &format!(
                "steps from 0 (before training) to the longest training length, {max_steps} steps"
            ),
        ));
    }
    let mut report_at: Vec<usize> = lengths
        .iter()
        .chain(plan.report_at.iter())
        .copied()
        .collect();
    report_at.sort_unstable();
    report_at.dedup();
    let (mut backend, note) = open_train_backend(cfg.backend())?;
    let desc = backend.describe();
    let (folder, mut commit) = start_folder(
        cfg,
        out_root,
        desc.split(' ').next().unwrap_or("cpu"),
        &desc,
        &note,
        plan.points.len(),
    )?;
    let clock = Instant::now();
    // The commit record, written after the files it describes.
    let record = |commit: &mut Commit, status: &str, done: &[TrainedPoint]| -> Result<()> {
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
        commit.wall_seconds = clock.elapsed().as_secs_f64();
        commit.write(&folder)
    };
    let mut done: Vec<TrainedPoint> = Vec::new();
    let mut complete = true;
    for p in &plan.points {
        let (init, depth, lr) = plan.resolve(p)?;
        let spec = plan.model(p, &init, depth, data.train.dim);
        spec.validate()?;
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
        let params = plan.params(&spec, &init, p.seed);
        let progress = |s: usize| (hooks.layers)(s as u64);
        let out = match train(
            backend.as_mut(),
            &spec,
            &params,
            &data,
            &proto,
            p.seed,
            &progress,
            hooks.cancel,
        ) {
            Ok(o) => o,
            Err(e) => {
                commit.error = Some(e.to_string());
                commit.failed_point = Some(p.index);
                // Best effort: the training error is what the caller reports.
                let _ = record(&mut commit, "failed", &done);
                return Err(e);
            }
        };
        if !out.complete {
            complete = false;
            break;
        }
        let diverged = out
            .reports
            .iter()
            .any(|r| !(r.loss.is_finite() && r.test_loss.is_finite()));
        done.push(TrainedPoint {
            point: p.clone(),
            input_sigma: plan.input_sigma.value(&init),
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
            diverged,
        });
        write_results(&folder, &plan, &lengths, eval_images, &done, &desc)?;
        record(&mut commit, "running", &done)?;
    }
    let st = write_results(&folder, &plan, &lengths, eval_images, &done, &desc)?;
    let mut note = note.clone();
    let diverged: Vec<usize> = done
        .iter()
        .filter(|p| p.diverged)
        .map(|p| p.point.index)
        .collect();
    if !diverged.is_empty() {
        note.push_str(&format!(
            "\nwarning: training diverged (non-finite loss) at points {diverged:?}: their loss is NaN or inf in training.csv; a lower training.lr avoids it"
        ));
    }
    #[cfg(feature = "plots")]
    if cfg.outputs.plots.unwrap_or(true) {
        let png = cfg.outputs.png.unwrap_or(true);
        crate::experiment::folder::write_plots(&folder, |stage| {
            plots::trainability::run_plots(stage, png, &plan, &st, &done)
        })?;
    }
    record(
        &mut commit,
        if complete { "complete" } else { "interrupted" },
        &done,
    )?;
    Ok(RunReport {
        folder,
        complete,
        points: Vec::new(),
        scaling: Vec::new(),
        table: format!("{note}\n{}", table(&st)),
    })
}
