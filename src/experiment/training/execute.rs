//! Training the points of a plan on the data: the backend opened, the
//! plan checked against this machine (memory, how many networks at once),
//! then the points trained one after another or several at once
//! ([`crate::experiment::training::parallel`]), each committed to the
//! results folder as it finishes ([`crate::experiment::training::points`]);
//! checkpoints of the points in training (see
//! [`crate::experiment::training::checkpoint`]); the plots at the end. A
//! fresh run, a resumed one and a shard (see
//! [`crate::experiment::training::folder`]) go through [`train_points`].

use crate::error::{Error, Result};
use crate::experiment::config::Config;
use crate::experiment::records::{Hooks, RunReport};
use crate::experiment::session::start_folder;
use crate::experiment::training::budget::plan_memory;
use crate::experiment::training::checkpoint::Policy;
use crate::experiment::training::parallel::{concurrency, train_concurrently};
use crate::experiment::training::plan::{plan, Plan, TrainPoint};
pub use crate::experiment::training::points::TrainRecord;
use crate::experiment::training::points::{commit_point, train_work, Job, TrainSession};
use crate::train::data::Dataset;
use crate::train::{CpuTrainBackend, TrainBackend};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicBool;

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

/// What training a config needs besides a folder: the plan, the data, the
/// lengths and report steps, and the backend.
pub(crate) struct Prepared {
    pub(crate) plan: Plan,
    pub(crate) data: Dataset,
    pub(crate) lengths: Vec<usize>,
    pub(crate) report_at: Vec<usize>,
    pub(crate) max_steps: usize,
    /// Training and test images evaluated at each report.
    pub(crate) eval_images: (usize, usize),
    pub(crate) policy: Policy,
    pub(crate) backend: Box<dyn TrainBackend>,
    /// Networks trained at once (CPU: one thread each; see `parallel`).
    pub(crate) concurrent: usize,
    /// The backend as summary.json describes it.
    pub(crate) desc: String,
    /// Which backend was taken, and why, and the memory plan.
    pub(crate) note: String,
}

impl Prepared {
    /// "cpu" or "gpu".
    pub(crate) fn kind(&self) -> &str {
        self.desc.split(' ').next().unwrap_or("cpu")
    }
}

/// Plans `cfg`, loads its data and opens its backend (`backend`: the
/// config's, or the one a resumed folder ran on). Every point is resolved by
/// the theory and checked, and the largest network's memory planned against
/// this machine's, before anything is written (`cancel` stops a slow
/// resolution).
pub(crate) fn prepare(cfg: &Config, backend: &str, cancel: &AtomicBool) -> Result<Prepared> {
    let plan = plan(cfg)?;
    let policy = Policy::of(cfg)?;
    let mut data = Dataset::load(&plan.data)?;
    if let Some(k) = plan.train_subset {
        data.train = data.train.take(k);
    }
    let lengths = plan.length_steps(data.train.len())?;
    let max_steps = *lengths.last().expect("at least one length");
    let resolved = plan.resolve_all(data.train.dim, cancel)?;
    let eval_images = (
        plan.eval_train.min(data.train.len()),
        plan.eval_test.min(data.test.len()),
    );
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
    let (backend, note) = open_train_backend(backend)?;
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
    let gpu = desc.starts_with("gpu");
    let concurrent = concurrency(
        cfg.training.as_ref().and_then(|t| t.concurrent),
        gpu,
        rayon::current_num_threads(),
        resolved.iter().map(|r| r.spec.width).max().unwrap_or(0),
        resolved.len(),
        memory.largest.host,
        memory.available_bytes,
    )?;
    let mut note = format!("{note}\n{}", memory.describe());
    let mut desc = desc;
    if concurrent > 1 {
        desc = format!("cpu ({concurrent} networks at once, one thread each)");
        let _ = write!(
            note,
            "\n{concurrent} networks trained at once, one thread each (training.concurrent)"
        );
    }
    Ok(Prepared {
        plan,
        data,
        lengths,
        report_at,
        max_steps,
        eval_images,
        policy,
        backend,
        concurrent,
        desc,
        note,
    })
}

/// Trains the points of `todo` not yet held by `s`, one after another:
/// each from its checkpoint when one is there and usable, committed to the
/// folder when done; then finishes the folder (complete when every point of
/// `total` is held, interrupted when cancelled). An error marks the folder
/// failed.
pub(crate) fn train_points(
    cfg: &Config,
    prep: &mut Prepared,
    mut s: TrainSession,
    todo: &[TrainPoint],
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    let mut notes = vec![prep.note.clone()];
    let mut cancelled = false;
    // A kill between a point's commit and the removal of its checkpoint
    // leaves the checkpoint of a finished point: nothing would remove it.
    if !prep.policy.keep {
        for &i in s.done.keys() {
            if let Err(e) = crate::experiment::training::checkpoint::remove(&s.folder, i) {
                return Err(s.fail(None, e));
            }
        }
    }
    let concurrent = prep.concurrent;
    if concurrent > 1 {
        let pending: Vec<&TrainPoint> = todo
            .iter()
            .filter(|p| !s.done.contains_key(&p.index))
            .collect();
        let (job, _) = job_of(prep);
        let kernel = crate::sim::gemm::Kernel::detect();
        match train_concurrently(
            &job, &mut s, &pending, concurrent, kernel, hooks, &mut notes,
        ) {
            Ok(stopped) => cancelled = stopped,
            Err((point, e)) => return Err(s.fail(point, e)),
        }
    }
    for p in todo {
        if concurrent > 1 || s.done.contains_key(&p.index) {
            continue;
        }
        match train_one(prep, &mut s, p, hooks, &mut notes) {
            Ok(true) => {}
            Ok(false) => {
                cancelled = true;
                break;
            }
            Err(e) => return Err(s.fail(Some(p.index), e)),
        }
    }
    let complete = !cancelled && todo.iter().all(|p| s.done.contains_key(&p.index));
    let status = if complete { "complete" } else { "interrupted" };
    let table = match s.finish(cfg, &prep.plan, &prep.lengths, &prep.desc, status) {
        Ok(t) => t,
        Err(e) => return Err(s.fail(None, e)),
    };
    let diverged: Vec<String> = s
        .done
        .values()
        .filter_map(|(p, _)| {
            p.divergence
                .as_ref()
                .map(|d| format!("{} ({d})", p.point.index))
        })
        .collect();
    if !diverged.is_empty() {
        notes.push(format!(
            "warning: training diverged at point(s) {}: marked diverged in training.csv and \
             summary.json; a lower training.lr avoids it",
            diverged.join(", ")
        ));
    }
    Ok(RunReport {
        folder: s.folder,
        complete,
        points: Vec::new(),
        scaling: Vec::new(),
        table: format!("{}\n{table}", notes.join("\n")),
    })
}

/// Trains point `p` (from its checkpoint where usable) and commits it;
/// false when cancelled part-way (its checkpoint then holds where it stopped).
fn train_one(
    prep: &mut Prepared,
    s: &mut TrainSession,
    p: &TrainPoint,
    hooks: &Hooks<'_>,
    notes: &mut Vec<String>,
) -> Result<bool> {
    let (job, backend) = job_of(prep);
    let progress = |step: usize| (hooks.layers)(step as u64);
    let (rec, mut warnings) = train_work(
        &job,
        &s.folder,
        &s.commit.config_hash,
        p,
        backend,
        hooks.point_started,
        &progress,
        hooks.cancel,
    )?;
    notes.append(&mut warnings);
    match rec {
        Some(rec) => {
            commit_point(&job, s, p, rec)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Runs a training experiment into a new results folder under `out_root`.
pub fn run_training(cfg: &Config, out_root: &Path, hooks: &Hooks<'_>) -> Result<RunReport> {
    let mut prep = prepare(cfg, cfg.backend(), hooks.cancel)?;
    let (folder, commit, _lock) = start_folder(
        cfg,
        out_root,
        prep.kind(),
        &prep.desc,
        &prep.note,
        prep.plan.points.len(),
    )?;
    let todo = prep.plan.points.clone();
    train_points(
        cfg,
        &mut prep,
        TrainSession::new(folder, commit),
        &todo,
        hooks,
    )
}

/// The shared part of `prep` ([`Job`]) and its backend, borrowed side by side.
fn job_of(prep: &mut Prepared) -> (Job<'_>, &mut dyn TrainBackend) {
    (
        Job {
            plan: &prep.plan,
            data: &prep.data,
            lengths: &prep.lengths,
            report_at: &prep.report_at,
            max_steps: prep.max_steps,
            eval_images: prep.eval_images,
            policy: prep.policy,
            desc: &prep.desc,
        },
        prep.backend.as_mut(),
    )
}
