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

pub mod cpu;
pub mod data;
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
    /// The largest batch a step or an evaluation takes (the GPU's buffers
    /// hold a fixed number of inputs).
    fn max_batch(&self) -> usize {
        usize::MAX
    }
}

/// The CPU backend: [`cpu::Trainer`] in f32.
#[derive(Debug, Default)]
pub struct CpuTrainBackend {
    trainer: Option<Trainer<f32>>,
    loss: (f64, usize),
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
        let l = self.t()?.step(x, labels, lr, momentum);
        self.loss.0 += l.loss_sum;
        self.loss.1 += labels.len();
        Ok(())
    }
    fn take_loss(&mut self) -> Result<(f64, usize)> {
        Ok(std::mem::take(&mut self.loss))
    }
    fn evaluate(&mut self, x: &[f32], labels: &[u8]) -> Result<cpu::BatchLoss> {
        Ok(self.t()?.evaluate(x, labels))
    }
    fn params(&mut self) -> Result<Params<f32>> {
        Ok(self.t()?.params.clone())
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
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
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

/// Trains one network from `params` on `data` under `proto`, drawing the
/// batches from the seed's shuffles (a new permutation every epoch),
/// evaluating at the report steps. `progress` gets the steps done.
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
    backend.load(spec, params)?;
    let per_epoch = data.train.len() / proto.batch;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let mut out = TrainOutcome {
        reports: Vec::new(),
        train_seconds: 0.0,
        eval_seconds: 0.0,
        train_macs: 0.0,
        complete: false,
    };
    let mut perm = Vec::new();
    let mut next_report = 0;
    // Step 0: the network as initialized; its `loss` is the training loss of
    // the evaluated training images (no steps have been taken to average over).
    if proto.report_at.first() == Some(&0) {
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
    for step in 0..proto.steps {
        if cancel.load(Ordering::Relaxed) {
            return Ok(out);
        }
        let (epoch, k) = (step / per_epoch, step % per_epoch);
        if k == 0 {
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
    }
    out.complete = true;
    Ok(out)
}
