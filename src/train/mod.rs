//! Training deep quantized networks on images: the paper's trainability
//! experiment (Figure 3).
//!
//! Training is its own workload: weights are stored and updated (unlike the
//! simulator, which generates them). It shares with the simulator only the
//! quantizer ([`crate::activation::Quantizer`]), the theory-derived
//! initialization ([`crate::setup`], [`crate::theory::optimal`],
//! [`crate::theory::backward::unit_slope`]) and the RNG ([`crate::rng`]).
//!
//! * [`data`]: IDX files (MNIST, Fashion-MNIST), normalization, shuffling.
//!
//! Training can stop between any two steps and continue from a [`Snapshot`]
//! (weights, momentum, the loss accumulated since the last report, the
//! reports so far) to the same bits as an uninterrupted run: the batches
//! come from per-(seed, epoch) permutations ([`data::permutation`]) and the
//! step uses no random numbers, so the step count fixes the data order.

pub mod cpu;
pub mod data;
mod fused;
pub mod gemm;
pub mod gpu;
pub mod model;

use crate::error::{Error, Result};
use crate::train::cpu::Trainer;
use crate::train::data::{permutation, Dataset, Split};
use crate::train::model::{ModelSpec, Params};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A device that trains one network: the CPU ([`CpuTrainBackend`]) or a GPU
/// (`gpu::GpuTrainBackend`).
pub trait TrainBackend {
    /// "cpu" or "gpu", with the adapter.
    fn describe(&self) -> String;
    /// Loads a network and zeroes the momentum.
    fn load(&mut self, spec: &ModelSpec, params: &Params<f32>) -> Result<()>;
    /// One SGD step on a batch (`x`: input_dim × B, feature-major).
    fn step(&mut self, x: &[f32], labels: &[u8], lr: f32, momentum: f32) -> Result<()>;
    /// Σ of the per-input training losses and the number of inputs since
    /// the last call.
    fn take_loss(&mut self) -> Result<(f64, usize)>;
    /// Loss sum and correct predictions of a batch, without training.
    fn evaluate(&mut self, x: &[f32], labels: &[u8]) -> Result<cpu::BatchLoss>;
    /// The current weights and biases.
    fn params(&mut self) -> Result<Params<f32>>;
    /// Everything a later step depends on: weights, momentum and the loss
    /// accumulated since the last [`TrainBackend::take_loss`].
    fn save_state(&mut self) -> Result<BackendState>;
    /// Loads a network in the state `save_state` returned (on a backend of
    /// the same kind), so that the next steps give the same bits as they
    /// would have on the backend that saved it.
    fn restore_state(&mut self, spec: &ModelSpec, state: &BackendState) -> Result<()>;
    /// The largest batch a step or an evaluation takes (the GPU's buffers
    /// hold a fixed number of inputs).
    fn max_batch(&self) -> usize {
        usize::MAX
    }
}

/// A backend's training state between two steps (see
/// [`TrainBackend::save_state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendState {
    /// Weights and biases.
    pub params: Params<f32>,
    /// Momentum buffers, in the shapes of `params`.
    pub velocity: Params<f32>,
    /// The loss accumulator since the last report, as the backend keeps it:
    /// one f64 sum on the CPU; on the GPU one f32 sum per batch position
    /// (each exact in f64).
    pub loss_sums: Vec<f64>,
    /// Inputs the accumulator holds.
    pub loss_inputs: usize,
}

impl BackendState {
    /// Checks the shapes against `spec` (`loss_slots`: the accumulator's
    /// length the backend keeps).
    pub fn check(&self, spec: &ModelSpec, loss_slots: usize) -> Result<()> {
        let fits = |p: &Params<f32>| {
            p.weights.len() == spec.depth
                && p.biases.len() == spec.depth
                && (0..spec.depth).all(|l| {
                    let (i, o) = spec.layer_shape(l);
                    p.weights[l].len() == i * o && p.biases[l].len() == o
                })
        };
        if !fits(&self.params) || !fits(&self.velocity) || self.loss_sums.len() != loss_slots {
            return Err(Error::invalid(
                "training state",
                "(shapes)",
                "weights, momentum and loss sums in the shapes of the network and backend",
            ));
        }
        Ok(())
    }
}

/// The CPU backend: [`cpu::Trainer`] in f32, stepped by the fused products
/// of [`gemm`] (the micro-kernel [`crate::sim::gemm::Kernel::detect`] picks).
#[derive(Debug)]
pub struct CpuTrainBackend {
    trainer: Option<Trainer<f32>>,
    loss: (f64, usize),
    kernel: crate::sim::gemm::Kernel,
}

impl Default for CpuTrainBackend {
    fn default() -> Self {
        CpuTrainBackend::with_kernel(crate::sim::gemm::Kernel::detect())
    }
}

impl CpuTrainBackend {
    /// A backend running `kernel` (one of [`crate::sim::gemm::Kernel::available`]).
    pub fn with_kernel(kernel: crate::sim::gemm::Kernel) -> Self {
        CpuTrainBackend {
            trainer: None,
            loss: (0.0, 0),
            kernel,
        }
    }
}

impl CpuTrainBackend {
    fn t(&mut self) -> Result<&mut Trainer<f32>> {
        self.trainer
            .as_mut()
            .ok_or_else(|| Error::Numerical("no network loaded".into()))
    }
}

impl TrainBackend for CpuTrainBackend {
    fn describe(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }
    fn load(&mut self, spec: &ModelSpec, params: &Params<f32>) -> Result<()> {
        spec.validate()?;
        self.trainer = Some(Trainer::new(spec, params.clone()));
        self.loss = (0.0, 0);
        Ok(())
    }
    fn step(&mut self, x: &[f32], labels: &[u8], lr: f32, momentum: f32) -> Result<()> {
        let kernel = self.kernel;
        let l = self.t()?.step_fused(kernel, x, labels, lr, momentum);
        self.loss.0 += l.loss_sum;
        self.loss.1 += labels.len();
        Ok(())
    }
    fn take_loss(&mut self) -> Result<(f64, usize)> {
        Ok(std::mem::take(&mut self.loss))
    }
    fn evaluate(&mut self, x: &[f32], labels: &[u8]) -> Result<cpu::BatchLoss> {
        let kernel = self.kernel;
        Ok(self.t()?.evaluate_fused(kernel, x, labels))
    }
    fn params(&mut self) -> Result<Params<f32>> {
        Ok(self.t()?.params.clone())
    }
    fn save_state(&mut self) -> Result<BackendState> {
        let loss = self.loss;
        let t = self.t()?;
        Ok(BackendState {
            params: t.params.clone(),
            velocity: t.velocity.clone(),
            loss_sums: vec![loss.0],
            loss_inputs: loss.1,
        })
    }
    fn restore_state(&mut self, spec: &ModelSpec, state: &BackendState) -> Result<()> {
        spec.validate()?;
        state.check(spec, 1)?;
        let mut t = Trainer::new(spec, state.params.clone());
        t.velocity = state.velocity.clone();
        self.trainer = Some(t);
        self.loss = (state.loss_sums[0], state.loss_inputs);
        Ok(())
    }
}

/// The batch of images `idx` of `split`, feature-major (dim × B), and their labels.
pub fn gather(split: &Split, idx: &[u32], x: &mut Vec<f32>, y: &mut Vec<u8>) {
    let b = idx.len();
    x.clear();
    x.resize(split.dim * b, 0.0);
    y.clear();
    for (j, &i) in idx.iter().enumerate() {
        let img = split.image(i as usize);
        for (p, &v) in img.iter().enumerate() {
            x[p * b + j] = v;
        }
        y.push(split.labels[i as usize]);
    }
}

/// How one network is trained and evaluated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Protocol {
    /// Learning rate η.
    pub lr: f64,
    /// Momentum μ.
    pub momentum: f64,
    /// Batch size.
    pub batch: usize,
    /// Training steps.
    pub steps: usize,
    /// Steps after which train and test accuracy are measured (ascending, the last = `steps`).
    pub report_at: Vec<usize>,
    /// Training images evaluated for the train accuracy (the first of the set).
    pub eval_train: usize,
    /// Test images evaluated (the first of the set).
    pub eval_test: usize,
    /// Batch size of evaluation.
    pub eval_batch: usize,
}

/// Accuracy and loss after some steps of training.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Steps done.
    pub step: usize,
    /// Accuracy on the training subset.
    pub train_acc: f64,
    /// Accuracy on the test subset.
    pub test_acc: f64,
    /// Mean training loss over the steps since the previous report.
    pub loss: f64,
    /// Mean loss on the test subset.
    pub test_loss: f64,
    /// Fraction of the evaluated training images whose largest logit is shared
    /// by two or more classes (the accuracies credit such an input 1/k).
    pub train_tie_rate: f64,
    /// The same on the test subset.
    pub test_tie_rate: f64,
}

/// The outcome of training one network.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainOutcome {
    /// One entry per reached report step.
    pub reports: Vec<Report>,
    /// Seconds spent in training steps (evaluation excluded).
    pub train_seconds: f64,
    /// Seconds spent evaluating.
    pub eval_seconds: f64,
    /// Multiply-adds of the training steps (forward + backward data + weight gradient).
    pub train_macs: f64,
    /// True when every step ran.
    pub complete: bool,
    /// Mean loss of the untrained network on the first training batch (the
    /// reference of divergence detection).
    pub initial_loss: f64,
}

fn evaluate_split(
    backend: &mut dyn TrainBackend,
    split: &Split,
    count: usize,
    eval_batch: usize,
) -> Result<(f64, f64, f64)> {
    let n = count.min(split.len());
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let (mut loss, mut correct, mut ties) = (0.0, 0.0, 0usize);
    let idx: Vec<u32> = (0..n as u32).collect();
    for chunk in idx.chunks(eval_batch.clamp(1, backend.max_batch())) {
        gather(split, chunk, &mut x, &mut y);
        let r = backend.evaluate(&x, &y)?;
        loss += r.loss_sum;
        correct += r.correct;
        ties += r.ties;
    }
    Ok((correct / n as f64, loss / n as f64, ties as f64 / n as f64))
}

/// Where a network's training stands between two steps: what a checkpoint
/// holds, and what [`train_from`] continues from.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Steps done.
    pub step: usize,
    /// The backend's state after them.
    pub state: BackendState,
    /// Reports, timings and multiply-adds so far (`complete` false).
    pub outcome: TrainOutcome,
}

/// When and where training saves its snapshots.
pub trait Checkpoints {
    /// Whether a snapshot is due after `step` steps.
    fn due(&mut self, step: usize) -> bool;
    /// Saves a snapshot (also when training is cancelled mid-way).
    fn save(&mut self, snap: &Snapshot) -> Result<()>;
}

/// Training without checkpoints.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCheckpoints;

impl Checkpoints for NoCheckpoints {
    fn due(&mut self, _: usize) -> bool {
        false
    }
    fn save(&mut self, _: &Snapshot) -> Result<()> {
        Ok(())
    }
}

/// Trains one network from `params` on `data` under `proto`, drawing the
/// batches from the seed's shuffles (a new permutation every epoch),
/// evaluating at the report steps. `progress` gets the steps done.
#[allow(clippy::too_many_arguments)]
pub fn train(
    backend: &mut dyn TrainBackend,
    spec: &ModelSpec,
    params: &Params<f32>,
    data: &Dataset,
    proto: &Protocol,
    seed: u64,
    progress: &dyn Fn(usize),
    cancel: &AtomicBool,
) -> Result<TrainOutcome> {
    train_from(
        backend,
        spec,
        params,
        data,
        proto,
        seed,
        progress,
        cancel,
        None,
        &mut NoCheckpoints,
    )
}

/// [`train`], continuing from `start` when given (a snapshot of the same
/// network, protocol and seed: `params` is then not used), and saving
/// snapshots through `checkpoints` when they are due and when `cancel` stops
/// training part-way. The result is the same, bit for bit, however often
/// training stopped and continued.
#[allow(clippy::too_many_arguments)]
pub fn train_from(
    backend: &mut dyn TrainBackend,
    spec: &ModelSpec,
    params: &Params<f32>,
    data: &Dataset,
    proto: &Protocol,
    seed: u64,
    progress: &dyn Fn(usize),
    cancel: &AtomicBool,
    start: Option<&Snapshot>,
    checkpoints: &mut dyn Checkpoints,
) -> Result<TrainOutcome> {
    if data.train.dim != spec.input_dim {
        return Err(Error::invalid(
            "training input_dim",
            spec.input_dim,
            &format!("the data's images have {} pixels", data.train.dim),
        ));
    }
    if proto.batch == 0 || proto.batch > data.train.len() {
        return Err(Error::invalid(
            "training.batch",
            proto.batch,
            &format!("between 1 and the {} training images", data.train.len()),
        ));
    }
    if proto.batch > backend.max_batch() {
        return Err(Error::invalid(
            "training.batch",
            proto.batch,
            &format!(
                "at most {} on this backend ({})",
                backend.max_batch(),
                backend.describe()
            ),
        ));
    }
    if proto.report_at.windows(2).any(|w| w[0] >= w[1])
        || proto.report_at.last().is_some_and(|&s| s > proto.steps)
    {
        return Err(Error::invalid(
            "training report steps",
            format!("{:?}", proto.report_at),
            &format!(
                "strictly ascending steps between 0 (before training) and the {} steps trained",
                proto.steps
            ),
        ));
    }
    let mut out = TrainOutcome {
        reports: Vec::new(),
        train_seconds: 0.0,
        eval_seconds: 0.0,
        train_macs: 0.0,
        complete: false,
        initial_loss: f64::NAN,
    };
    let mut first = 0;
    match start {
        Some(s) => {
            let expected: Vec<usize> = proto
                .report_at
                .iter()
                .copied()
                .take_while(|&r| r <= s.step)
                .collect();
            let got: Vec<usize> = s.outcome.reports.iter().map(|r| r.step).collect();
            if s.step == 0 || s.step >= proto.steps || got != expected {
                return Err(Error::invalid(
                    "training snapshot",
                    format!("step {} with reports at {got:?}", s.step),
                    &format!(
                        "a step in 1..{} with the reports at {expected:?}",
                        proto.steps
                    ),
                ));
            }
            backend.restore_state(spec, &s.state)?;
            out = s.outcome.clone();
            out.complete = false;
            first = s.step;
            progress(first);
        }
        None => backend.load(spec, params)?,
    }
    let per_epoch = data.train.len() / proto.batch;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    if first == 0 {
        // The reference of divergence detection (a resumed point has it in
        // its snapshot).
        let first_batch: Vec<u32> = (0..proto.batch as u32).collect();
        gather(&data.train, &first_batch, &mut x, &mut y);
        let l = backend.evaluate(&x, &y)?;
        out.initial_loss = l.loss_sum / proto.batch as f64;
    }
    let mut perm = Vec::new();
    let mut next_report = out.reports.len();
    // Step 0: the network as initialized; its `loss` is the training loss of
    // the evaluated training images (no steps have been taken to average over).
    if first == 0 && proto.report_at.first() == Some(&0) {
        let t1 = Instant::now();
        let (train_acc, loss, train_tie_rate) =
            evaluate_split(backend, &data.train, proto.eval_train, proto.eval_batch)?;
        let (test_acc, test_loss, test_tie_rate) =
            evaluate_split(backend, &data.test, proto.eval_test, proto.eval_batch)?;
        out.eval_seconds += t1.elapsed().as_secs_f64();
        out.reports.push(Report {
            step: 0,
            train_acc,
            test_acc,
            loss,
            test_loss,
            train_tie_rate,
            test_tie_rate,
        });
        next_report = 1;
    }
    let step_macs = spec.step_macs() * proto.batch as f64;
    for step in first..proto.steps {
        if cancel.load(Ordering::Relaxed) {
            if step > first {
                checkpoints.save(&Snapshot {
                    step,
                    state: backend.save_state()?,
                    outcome: out.clone(),
                })?;
            }
            return Ok(out);
        }
        let (epoch, k) = (step / per_epoch, step % per_epoch);
        if k == 0 || perm.is_empty() {
            perm = permutation(data.train.len(), seed, epoch as u32);
        }
        gather(
            &data.train,
            &perm[k * proto.batch..(k + 1) * proto.batch],
            &mut x,
            &mut y,
        );
        let t0 = Instant::now();
        backend.step(&x, &y, proto.lr as f32, proto.momentum as f32)?;
        out.train_macs += step_macs;
        if proto.report_at.get(next_report) == Some(&(step + 1)) {
            let (ls, lc) = backend.take_loss()?;
            out.train_seconds += t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let (train_acc, _, train_tie_rate) =
                evaluate_split(backend, &data.train, proto.eval_train, proto.eval_batch)?;
            let (test_acc, test_loss, test_tie_rate) =
                evaluate_split(backend, &data.test, proto.eval_test, proto.eval_batch)?;
            out.eval_seconds += t1.elapsed().as_secs_f64();
            out.reports.push(Report {
                step: step + 1,
                train_acc,
                test_acc,
                loss: ls / lc.max(1) as f64,
                test_loss,
                train_tie_rate,
                test_tie_rate,
            });
            next_report += 1;
        } else {
            out.train_seconds += t0.elapsed().as_secs_f64();
        }
        progress(step + 1);
        if step + 1 < proto.steps && checkpoints.due(step + 1) {
            checkpoints.save(&Snapshot {
                step: step + 1,
                state: backend.save_state()?,
                outcome: out.clone(),
            })?;
        }
    }
    out.complete = true;
    Ok(out)
}
