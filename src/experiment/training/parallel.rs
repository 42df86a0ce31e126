//! Many networks at once on the CPU: a trainability grid is hundreds of
//! small independent networks, and splitting each small product's rows
//! over threads is the least efficient way to use the cores. With
//! `training.concurrent = K` (default: one per thread of the pool when
//! every network is at most [`AUTO_MAX_WIDTH`] wide), K workers each take
//! the next point in sweep order and train it on one thread with a backend
//! of its own; the main thread commits each finished point (record,
//! training.csv, summary.json, commit record) as it arrives. A point's bits
//! do not depend on which worker trained it nor on the thread count (each
//! product's element is one k-ordered sum whichever thread computes it:
//! tests/train_fused.rs), so the files equal a one-at-a-time run's
//! (tests/checkpoint.rs). Checkpoints and Ctrl-C work as for one point at a
//! time: the cancel flag reaches every worker at once, and each saves its
//! point's checkpoint where it stopped. After an error no worker takes a
//! new point; the points in training finish (they are not committed: the
//! folder is marked failed, and a resume trains them again).

use crate::error::{Error, Result};
use crate::experiment::records::Hooks;
use crate::experiment::training::plan::TrainPoint;
use crate::experiment::training::points::{
    commit_point, train_work, Job, TrainRecord, TrainSession,
};
use crate::train::CpuTrainBackend;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// The widest network for which `concurrent` defaults to one network per
/// thread; wider ones default to one at a time with every thread on its
/// products (there the row split is efficient and memory per network large).
pub const AUTO_MAX_WIDTH: usize = 1024;

/// Most networks at once a config may ask for.
pub const MAX_CONCURRENT: usize = 1024;

/// How many networks train at once: `asked` (the config's
/// `training.concurrent`, checked), else the default rule; at most one per
/// point to train, at most as many as fit in `available` bytes of memory
/// at `per_network` bytes each; always 1 on the GPU.
pub fn concurrency(
    asked: Option<usize>,
    gpu: bool,
    threads: usize,
    widest: usize,
    points: usize,
    per_network: u64,
    available: Option<u64>,
) -> Result<usize> {
    if let Some(k) = asked {
        if !(1..=MAX_CONCURRENT).contains(&k) {
            return Err(Error::invalid(
                "training.concurrent",
                k,
                &format!(
                    "networks trained at once on the CPU backend, 1 to {MAX_CONCURRENT} \
                     (leave it out: one per thread when every network is at most \
                     {AUTO_MAX_WIDTH} wide)"
                ),
            ));
        }
    }
    if gpu {
        return Ok(1);
    }
    let k = asked.unwrap_or(if widest <= AUTO_MAX_WIDTH { threads } else { 1 });
    let k = k.min(points).max(1);
    match available {
        Some(have) if per_network > 0 && (k as u64).saturating_mul(per_network) > have => {
            let fit = (have / per_network).max(1) as usize;
            if asked.is_some() {
                return Err(Error::TooLarge(format!(
                    "training.concurrent = {k} networks at once need about {} MiB of memory, \
                     but {} MiB are available: at most {fit} at once here",
                    (k as u64 * per_network) >> 20,
                    have >> 20
                )));
            }
            Ok(fit.min(k))
        }
        _ => Ok(k),
    }
}

/// What a worker reports: the point (its position in the pending list) and
/// its record (`None`: stopped part-way), with warnings.
type Done = (usize, Result<(Option<TrainRecord>, Vec<String>)>);

/// Trains `pending` with `workers` workers (each one thread, its own CPU
/// backend running `kernel`) and commits each finished point to `s`.
/// Returns whether the run was stopped (Ctrl-C) before every point
/// finished; after an error (returned with the point it came from) no
/// worker takes another point.
pub(crate) fn train_concurrently(
    job: &Job<'_>,
    s: &mut TrainSession,
    pending: &[&TrainPoint],
    workers: usize,
    kernel: crate::sim::gemm::Kernel,
    hooks: &Hooks<'_>,
    notes: &mut Vec<String>,
) -> std::result::Result<bool, (Option<usize>, Error)> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Done>();
    let folder = s.folder.clone();
    let hash = s.commit.config_hash.clone();
    let mut failure: Option<(Option<usize>, Error)> = None;
    let mut stopped = false;
    std::thread::scope(|scope| {
        for w in 0..workers {
            let tx = tx.clone();
            let (next, stop, folder, hash) = (&next, &stop, &folder, &hash);
            scope.spawn(move || {
                let pool = match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send((
                            usize::MAX,
                            Err(Error::Numerical(format!("a worker's thread pool: {e}"))),
                        ));
                        return;
                    }
                };
                let mut backend = CpuTrainBackend::with_kernel(kernel);
                // One bar shows a point's steps: the first worker's.
                let progress = |step: usize| {
                    if w == 0 {
                        (hooks.layers)(step as u64)
                    }
                };
                while !stop.load(Ordering::SeqCst) && !hooks.cancel.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(p) = pending.get(i) else { break };
                    let r = pool.install(|| {
                        train_work(
                            job,
                            folder,
                            hash,
                            p,
                            &mut backend,
                            hooks.point_started,
                            &progress,
                            hooks.cancel,
                        )
                    });
                    let halted = !matches!(r, Ok((Some(_), _)));
                    if tx.send((i, r)).is_err() || halted {
                        break;
                    }
                }
            });
        }
        drop(tx);
        while let Ok((i, r)) = rx.recv() {
            let point = pending.get(i).map(|p| p.index);
            match r {
                Ok((Some(rec), mut w)) => {
                    notes.append(&mut w);
                    if failure.is_none() {
                        if let Err(e) = commit_point(job, s, pending[i], rec) {
                            stop.store(true, Ordering::SeqCst);
                            failure = Some((point, e));
                        }
                    }
                }
                Ok((None, mut w)) => {
                    notes.append(&mut w);
                    stopped = true;
                }
                Err(e) => {
                    stop.store(true, Ordering::SeqCst);
                    if failure.is_none() {
                        failure = Some((point, e));
                    }
                }
            }
        }
    });
    match failure {
        Some(f) => Err(f),
        None => Ok(stopped || hooks.cancel.load(Ordering::SeqCst)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rule_memory_cap_and_refusals() {
        // One per thread up to the point count, for narrow networks only.
        assert_eq!(
            concurrency(None, false, 8, 128, 100, 1 << 20, None).unwrap(),
            8
        );
        assert_eq!(
            concurrency(None, false, 8, 128, 3, 1 << 20, None).unwrap(),
            3
        );
        assert_eq!(
            concurrency(None, false, 8, 2048, 100, 1 << 20, None).unwrap(),
            1
        );
        assert_eq!(
            concurrency(None, true, 8, 128, 100, 1 << 20, None).unwrap(),
            1
        );
        // Memory: 8 × 1 MiB in 3.5 MiB → 3 at once by default; refused when asked.
        assert_eq!(
            concurrency(None, false, 8, 128, 100, 1 << 20, Some(7 << 19)).unwrap(),
            3
        );
        let e = concurrency(Some(8), false, 8, 128, 100, 1 << 20, Some(7 << 19))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 3 at once"), "{e}");
        let e = concurrency(Some(0), false, 8, 128, 100, 1, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("training.concurrent") && e.contains("1 to 1024"),
            "{e}"
        );
        assert_eq!(
            concurrency(Some(4), false, 2, 4096, 100, 1, None).unwrap(),
            4
        );
    }
}
