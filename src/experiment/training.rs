//! `kind = "training"`: train deep quantized networks on MNIST-format images
//! and measure how deep they can be and still train, against the depth
//! scale ξ of the theory (the paper's Figure 3).
//!
//! ```toml
//! name = "trainability"
//! kind = "training"
//! seed = 1
//! backend = "cpu"
//!
//! [training]
//! data = "/usr/share/datasets/fashion-mnist"   # a folder of the four IDX files
//! preset = "theory"         # theory (exact D̃_opt) | paper (fitted D̃, quantized logits)
//! states = [2, 3, 4, 6]     # N (list or "a..b")
//! depth_per_xi = [1, 2, 4, 8, 16]   # depths as multiples of each N's ξ (or depth = [...])
//! width = 128
//! sigma_w = ["opt"]         # "opt", "opt±x" or numbers
//! sigma_w_ratio = [1.0]     # multiplies σ_w^opt
//! lr = [0.01]               # learning rates
//! momentum = 0.5
//! batch = 32
//! steps = [200, 800]        # training lengths (or epochs = [1.0]); each is a report
//! seeds = 3                 # networks per cell (seed, seed + 1, …)
//! eval_train = 2000         # training images evaluated for train_acc
//! eval_test = 2000          # test images evaluated for test_acc
//! ```
//!
//! Output beside `config.toml` and `meta.json`: `training.csv` (one row per
//! network and report step) and `summary.json` (per network: init, timings,
//! reports; per N, learning rate and length: the empirical trainable depth
//! L_emp with a 95 % interval from seeds, ξ and L_emp/ξ; the exponent of
//! L_emp against N + 1 beside ξ's), and the plots `heatmap-*` (test accuracy
//! over N and depth with κξ lines) and `collapse-*` (accuracy against depth/ξ).

use crate::error::{Error, Result};
use crate::experiment::config::{Config, IntAxis, Kind, NumOrStr, SigmaW};
use crate::experiment::folder::Commit;
#[cfg(feature = "plots")]
use crate::experiment::plots::training::{self as training_plots, Cell, Collapse};
use crate::experiment::runner::{start_folder, timestamp, write_atomic, Hooks, RunReport};
use crate::theory::scaling::{linear_fit, LinearFit};
use crate::train::data::{Dataset, CLASSES, FASHION_MNIST_DIR};
use crate::train::model::{theory_init, Init, ModelSpec, Params, Phi, Preset};
use crate::train::{train, CpuTrainBackend, Protocol, Report, TrainBackend};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `[training]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Folder of the IDX files (default: Debian's Fashion-MNIST).
    pub data: Option<String>,
    /// "theory" (default) or "paper".
    pub preset: Option<String>,
    /// N values.
    pub states: Option<IntAxis>,
    /// Depths (weight layers).
    pub depth: Option<IntAxis>,
    /// Depths as multiples of each point's ξ (rounded, at least 2).
    pub depth_per_xi: Option<Vec<f64>>,
    /// Widths.
    pub width: Option<IntAxis>,
    /// σ_w: "opt", "opt±x" or numbers (default ["opt"]).
    pub sigma_w: Option<Vec<NumOrStr>>,
    /// Multipliers of σ_w^opt (default [1.0]).
    pub sigma_w_ratio: Option<Vec<f64>>,
    /// σ_b (default 0).
    pub sigma_b: Option<f64>,
    /// Learning rates.
    pub lr: Option<Vec<f64>>,
    /// Learning rate for deep networks (the paper: 5e-4 from depth 100).
    pub lr_deep: Option<f64>,
    /// Depth from which `lr_deep` applies.
    pub lr_deep_from: Option<usize>,
    /// SGD momentum (default 0.5).
    pub momentum: Option<f64>,
    /// Batch size (default 32).
    pub batch: Option<usize>,
    /// Training lengths in steps.
    pub steps: Option<Vec<usize>>,
    /// Training lengths in epochs (alternative to steps).
    pub epochs: Option<Vec<f64>>,
    /// Extra report steps (accuracy curves).
    pub report_at: Option<Vec<usize>>,
    /// Networks per cell (seeds seed, seed + 1, …; default 1).
    pub seeds: Option<usize>,
    /// Use only the first k training images (default all).
    pub train_subset: Option<usize>,
    /// Training images evaluated (default 10000).
    pub eval_train: Option<usize>,
    /// Test images evaluated (default all).
    pub eval_test: Option<usize>,
    /// Evaluation batch (default 1000).
    pub eval_batch: Option<usize>,
    /// STE threshold t (default 1).
    pub ste_threshold: Option<f64>,
    /// Target backward factor M (default 1).
    pub m: Option<f64>,
    /// Quantize the logits (default: the preset's).
    pub quantize_logits: Option<bool>,
}

/// How a point's depth is given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum DepthSpec {
    /// Weight layers.
    Layers(usize),
    /// Multiples of ξ.
    PerXi(f64),
}

/// One network to train, before the theory fixes its σ_w, ξ and depth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainPoint {
    /// Index in the sweep.
    pub index: usize,
    /// N.
    pub states: usize,
    /// σ_w as given.
    pub sigma_w: SigmaW,
    /// Multiplier of σ_w^opt.
    pub sigma_w_ratio: f64,
    /// Width n.
    pub width: usize,
    /// Depth.
    pub depth: DepthSpec,
    /// Learning rate as given (before `lr_deep`).
    pub lr: f64,
    /// Seed.
    pub seed: u64,
}

/// Everything a training config fixes besides its points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Data folder.
    pub data: PathBuf,
    /// Preset.
    pub preset: Preset,
    /// Points.
    pub points: Vec<TrainPoint>,
    /// Training lengths (steps; epochs resolved when the data is known).
    pub lengths: Lengths,
    /// Protocol without its steps.
    pub momentum: f64,
    /// Batch.
    pub batch: usize,
    /// Extra reports.
    pub report_at: Vec<usize>,
    /// σ_b.
    pub sigma_b: f64,
    /// STE threshold.
    pub ste_threshold: f64,
    /// M.
    pub m: f64,
    /// Quantized logits.
    pub quantize_logits: bool,
    /// Deep learning rate and the depth it starts at.
    pub lr_deep: Option<(f64, usize)>,
    /// Training subset.
    pub train_subset: Option<usize>,
    /// Evaluated train images.
    pub eval_train: usize,
    /// Evaluated test images.
    pub eval_test: usize,
    /// Evaluation batch.
    pub eval_batch: usize,
}

/// Training lengths.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Lengths {
    /// Steps.
    Steps(Vec<usize>),
    /// Epochs.
    Epochs(Vec<f64>),
}

fn positive(key: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::invalid(key, v, "a finite number > 0"))
    }
}

fn int_values(key: &str, ax: &IntAxis) -> Result<Vec<usize>> {
    let v = match ax {
        IntAxis::One(v) => vec![*v],
        IntAxis::List(v) => v.clone(),
        IntAxis::Spec(s) => crate::setup::parse_int_spec(s)
            .map_err(|why| Error::invalid(key, format!("\"{s}\""), &why))?,
    };
    if v.is_empty() {
        return Err(Error::invalid(key, "[]", "give at least one value"));
    }
    Ok(v)
}

/// Checks a training config and expands its sweep (without the data).
pub fn plan(cfg: &Config) -> Result<Plan> {
    if cfg.kind != Kind::Training {
        return Err(Error::invalid(
            "[training]",
            "(present)",
            "a [training] section needs kind = \"training\"",
        ));
    }
    let t = cfg.training.clone().ok_or_else(|| {
        Error::invalid(
            "[training]",
            "(missing)",
            "kind = \"training\" needs a [training] section (states, depth or depth_per_xi, width, steps)",
        )
    })?;
    let preset = match t.preset.as_deref().unwrap_or("theory") {
        "theory" => Preset::Theory,
        "paper" => Preset::Paper,
        other => {
            return Err(Error::invalid(
                "training.preset",
                format!("\"{other}\""),
                "\"theory\" or \"paper\"",
            ))
        }
    };
    let states = int_values(
        "training.states",
        t.states.as_ref().ok_or_else(|| {
            Error::invalid("training.states", "(missing)", "give the N values to train")
        })?,
    )?;
    if let Some(n) = states.iter().find(|n| **n < 2 || **n > 1 << 16) {
        return Err(Error::invalid(
            "training.states",
            n,
            "N between 2 and 65536",
        ));
    }
    let depths: Vec<DepthSpec> = match (&t.depth, &t.depth_per_xi) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "training.depth",
                "(with depth_per_xi)",
                "give depth or depth_per_xi, not both",
            ))
        }
        (Some(ax), None) => {
            let d = int_values("training.depth", ax)?;
            if let Some(x) = d.iter().find(|x| **x < 2 || **x > 100_000) {
                return Err(Error::invalid(
                    "training.depth",
                    x,
                    "between 2 (input → n → classes) and 100000 weight layers",
                ));
            }
            d.into_iter().map(DepthSpec::Layers).collect()
        }
        (None, Some(k)) => {
            if k.is_empty() {
                return Err(Error::invalid(
                    "training.depth_per_xi",
                    "[]",
                    "give at least one value",
                ));
            }
            for &x in k {
                positive("training.depth_per_xi", x)?;
            }
            k.iter().map(|&x| DepthSpec::PerXi(x)).collect()
        }
        (None, None) => {
            return Err(Error::invalid(
                "training.depth",
                "(missing)",
                "give depth = [...] (weight layers) or depth_per_xi = [...]",
            ))
        }
    };
    let widths = int_values(
        "training.width",
        t.width.as_ref().ok_or_else(|| {
            Error::invalid("training.width", "(missing)", "give the hidden width n")
        })?,
    )?;
    if let Some(w) = widths.iter().find(|w| **w < 2 || **w > 1 << 16) {
        return Err(Error::invalid("training.width", w, "between 2 and 65536"));
    }
    let sigma_ws: Vec<SigmaW> = match &t.sigma_w {
        None => vec![SigmaW::Opt(0.0)],
        Some(v) if v.is_empty() => {
            return Err(Error::invalid(
                "training.sigma_w",
                "[]",
                "give at least one value",
            ))
        }
        Some(v) => v
            .iter()
            .map(|x| SigmaW::parse("training.sigma_w", x))
            .collect::<Result<_>>()?,
    };
    for s in &sigma_ws {
        if let SigmaW::Value(v) = s {
            positive("training.sigma_w", *v)?;
        }
    }
    let ratios = t.sigma_w_ratio.clone().unwrap_or_else(|| vec![1.0]);
    if ratios.is_empty() {
        return Err(Error::invalid(
            "training.sigma_w_ratio",
            "[]",
            "give at least one value",
        ));
    }
    for &r in &ratios {
        positive("training.sigma_w_ratio", r)?;
    }
    let lrs = t.lr.clone().unwrap_or_else(|| vec![1e-3]);
    if lrs.is_empty() {
        return Err(Error::invalid(
            "training.lr",
            "[]",
            "give at least one learning rate",
        ));
    }
    for &l in &lrs {
        positive("training.lr", l)?;
    }
    let lr_deep = match (t.lr_deep, t.lr_deep_from) {
        (Some(l), Some(d)) => Some((positive("training.lr_deep", l)?, d)),
        (None, None) => None,
        _ => {
            return Err(Error::invalid(
                "training.lr_deep",
                "(one of lr_deep, lr_deep_from)",
                "give both lr_deep and lr_deep_from, or neither",
            ))
        }
    };
    let momentum = t.momentum.unwrap_or(0.5);
    if !(0.0..1.0).contains(&momentum) {
        return Err(Error::invalid(
            "training.momentum",
            momentum,
            "a number in [0, 1)",
        ));
    }
    let batch = t.batch.unwrap_or(32);
    if batch == 0 || batch > 65536 {
        return Err(Error::invalid(
            "training.batch",
            batch,
            "between 1 and 65536",
        ));
    }
    let lengths = match (&t.steps, &t.epochs) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "training.steps",
                "(with epochs)",
                "give steps or epochs, not both",
            ))
        }
        (Some(s), None) => {
            if s.is_empty() || s.contains(&0) {
                return Err(Error::invalid(
                    "training.steps",
                    format!("{s:?}"),
                    "one or more training lengths ≥ 1 step",
                ));
            }
            Lengths::Steps(s.clone())
        }
        (None, Some(e)) => {
            if e.is_empty() {
                return Err(Error::invalid(
                    "training.epochs",
                    "[]",
                    "give at least one length",
                ));
            }
            for &x in e {
                positive("training.epochs", x)?;
            }
            Lengths::Epochs(e.clone())
        }
        (None, None) => Lengths::Epochs(vec![1.0]),
    };
    let seeds = t.seeds.unwrap_or(1);
    if seeds == 0 || seeds > 1000 {
        return Err(Error::invalid(
            "training.seeds",
            seeds,
            "between 1 and 1000 networks per cell",
        ));
    }
    let sigma_b = t.sigma_b.unwrap_or(0.0);
    if !(sigma_b.is_finite() && sigma_b >= 0.0) {
        return Err(Error::invalid("training.sigma_b", sigma_b, "a number ≥ 0"));
    }
    let ste_threshold = positive("training.ste_threshold", t.ste_threshold.unwrap_or(1.0))?;
    let m = positive("training.m", t.m.unwrap_or(1.0))?;
    for (k, v) in [
        ("training.eval_train", t.eval_train),
        ("training.eval_test", t.eval_test),
        ("training.eval_batch", t.eval_batch),
        ("training.train_subset", t.train_subset),
    ] {
        if v == Some(0) {
            return Err(Error::invalid(k, 0, "at least 1"));
        }
    }
    let mut points = Vec::new();
    for &n in &states {
        for &sw in &sigma_ws {
            for &r in &ratios {
                for &w in &widths {
                    for &d in &depths {
                        for &lr in &lrs {
                            for s in 0..seeds {
                                points.push(TrainPoint {
                                    index: points.len(),
                                    states: n,
                                    sigma_w: sw,
                                    sigma_w_ratio: r,
                                    width: w,
                                    depth: d,
                                    lr,
                                    seed: cfg.seed().wrapping_add(s as u64),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Plan {
        data: PathBuf::from(t.data.clone().unwrap_or_else(|| FASHION_MNIST_DIR.into())),
        preset,
        points,
        lengths,
        momentum,
        batch,
        report_at: t.report_at.clone().unwrap_or_default(),
        sigma_b,
        ste_threshold,
        m,
        quantize_logits: t.quantize_logits.unwrap_or(preset == Preset::Paper),
        lr_deep,
        train_subset: t.train_subset,
        eval_train: t.eval_train.unwrap_or(10_000),
        eval_test: t.eval_test.unwrap_or(usize::MAX),
        eval_batch: t.eval_batch.unwrap_or(1000),
    })
}

/// Config validation for `kind = "training"`.
pub fn validate(cfg: &Config) -> Result<()> {
    plan(cfg).map(|_| ())
}

/// A point as trained: its theory and its reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainedPoint {
    /// The point.
    pub point: TrainPoint,
    /// Its initialization from the theory.
    pub init: Init,
    /// Depth in weight layers.
    pub depth: usize,
    /// depth/ξ.
    pub depth_over_xi: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Reports.
    pub reports: Vec<Report>,
    /// Seconds in training steps.
    pub train_seconds: f64,
    /// Seconds evaluating.
    pub eval_seconds: f64,
    /// Training throughput, multiply-adds per second (forward + backward + weight gradient).
    pub train_mac_per_s: f64,
    /// True when a reported loss is not finite (training diverged; the
    /// accuracies are still what the network scores).
    pub diverged: bool,
}

impl Plan {
    /// Resolves a point: its theory-derived initialization, depth and learning rate.
    pub fn resolve(&self, p: &TrainPoint) -> Result<(Init, usize, f64)> {
        let offset = match p.sigma_w {
            SigmaW::Opt(o) => o,
            SigmaW::Value(_) => 0.0,
        };
        let mut init = theory_init(
            p.states,
            self.preset,
            p.sigma_w_ratio,
            offset,
            self.sigma_b,
            self.ste_threshold,
            self.m,
        )?;
        if let SigmaW::Value(v) = p.sigma_w {
            let base = theory_init(
                p.states,
                self.preset,
                v * p.sigma_w_ratio / init.sigma_w_opt,
                0.0,
                self.sigma_b,
                self.ste_threshold,
                self.m,
            )?;
            init = base;
        }
        let depth = match p.depth {
            DepthSpec::Layers(d) => d,
            DepthSpec::PerXi(k) => {
                let d = (k * init.xi).round();
                if !(d.is_finite() && d < 1e5) {
                    return Err(Error::invalid(
                        "training.depth_per_xi",
                        k,
                        &format!("{k}·ξ = {k}·{:.3} is not a usable depth", init.xi),
                    ));
                }
                (d as usize).max(2)
            }
        };
        let lr = match self.lr_deep {
            Some((l, from)) if depth >= from => l,
            _ => p.lr,
        };
        Ok((init, depth, lr))
    }

    /// The network of a point.
    pub fn model(&self, p: &TrainPoint, init: &Init, depth: usize, input_dim: usize) -> ModelSpec {
        ModelSpec {
            input_dim,
            width: p.width,
            depth,
            classes: CLASSES,
            phi: Phi::Uniform {
                states: p.states as u32,
                spacing: init.spacing,
                amplitude: 1.0,
            },
            ste_slope: init.ste_slope,
            ste_threshold: self.ste_threshold,
            sigma_w: init.sigma_w,
            sigma_b: self.sigma_b,
            quantize_logits: self.quantize_logits,
        }
    }

    /// Training lengths in steps for `train_len` images.
    pub fn length_steps(&self, train_len: usize) -> Vec<usize> {
        let per_epoch = (train_len / self.batch).max(1);
        let mut v: Vec<usize> = match &self.lengths {
            Lengths::Steps(s) => s.clone(),
            Lengths::Epochs(e) => e
                .iter()
                .map(|x| ((x * per_epoch as f64).round() as usize).max(1))
                .collect(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// (x, mean, standard error).
#[cfg(feature = "plots")]
type Point3 = (f64, f64, f64);

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

/// The empirical trainable depth of one cell group (fixed N, σ_w, width,
/// learning rate and training length; depths and seeds vary).
#[derive(Debug, Clone, Serialize)]
pub struct TrainableDepth {
    /// N.
    pub states: usize,
    /// σ_w as given, with the ratio.
    pub sigma_w: String,
    /// Width.
    pub width: usize,
    /// Learning rate (as given).
    pub lr: f64,
    /// Training length (steps).
    pub steps: usize,
    /// ξ of the theory.
    pub xi: f64,
    /// Depths, ascending.
    pub depths: Vec<usize>,
    /// Mean test accuracy per depth over seeds.
    pub test_acc: Vec<f64>,
    /// Its standard error (None with one seed).
    pub test_acc_se: Vec<Option<f64>>,
    /// Per seed: L_emp (None: no crossing within the depths).
    pub l_emp_per_seed: Vec<Option<f64>>,
    /// Geometric mean of L_emp over seeds (when every seed crossed).
    pub l_emp: Option<f64>,
    /// 95 % interval (Student t over seeds of ln L_emp).
    pub l_emp_ci: Option<(f64, f64)>,
    /// L_emp/ξ.
    pub l_emp_over_xi: Option<f64>,
    /// Why L_emp is missing, when it is.
    pub note: Option<String>,
}

/// The exponent of L_emp against N + 1, beside ξ's over the same N.
#[derive(Debug, Clone, Serialize)]
pub struct Exponent {
    /// σ_w, width, lr, steps.
    pub group: String,
    /// N values with an L_emp.
    pub states: Vec<usize>,
    /// Fit of ln L_emp against ln(N + 1).
    pub fit_l_emp: LinearFit,
    /// Fit of ln ξ against ln(N + 1).
    pub fit_xi: LinearFit,
}

/// t_{0.975, df} for df = 1..30 (two-sided 95 %); 1.96 beyond.
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if df == 0 {
        f64::NAN
    } else if df <= 30 {
        T[df - 1]
    } else {
        1.96
    }
}

/// The depth where `acc` (by ascending `depths`) first falls to halfway
/// between its shallowest value and chance, interpolated linearly in ln depth.
/// None when it never does, or when the shallowest network is not above chance.
pub fn halfway_depth(depths: &[usize], acc: &[f64], chance: f64) -> Option<f64> {
    let shallow = *acc.first()?;
    if shallow.is_nan() || shallow <= chance {
        return None;
    }
    let half = 0.5 * (shallow + chance);
    for i in 1..acc.len() {
        if acc[i] <= half {
            let (x0, x1) = ((depths[i - 1] as f64).ln(), (depths[i] as f64).ln());
            let f = (acc[i - 1] - half) / (acc[i - 1] - acc[i]);
            return Some((x0 + f * (x1 - x0)).exp());
        }
    }
    None
}

fn acc_at(p: &TrainedPoint, steps: usize) -> Option<f64> {
    p.reports
        .iter()
        .find(|r| r.step == steps)
        .map(|r| r.test_acc)
}

fn sigma_label(p: &TrainPoint) -> String {
    if p.sigma_w_ratio == 1.0 {
        p.sigma_w.label()
    } else {
        format!("{}×{}", p.sigma_w.label(), p.sigma_w_ratio)
    }
}

/// L_emp per (N, σ_w, width, lr, length) group.
pub fn trainable_depths(points: &[TrainedPoint], lengths: &[usize]) -> Vec<TrainableDepth> {
    let mut groups: BTreeMap<(usize, String, usize, u64, usize), Vec<&TrainedPoint>> =
        BTreeMap::new();
    for p in points {
        for &s in lengths {
            let key = (
                p.point.states,
                sigma_label(&p.point),
                p.point.width,
                p.point.lr.to_bits(),
                s,
            );
            groups.entry(key).or_default().push(p);
        }
    }
    let chance = 1.0 / CLASSES as f64;
    let mut out = Vec::new();
    for ((states, sigma_w, width, lr, steps), ps) in groups {
        let mut depths: Vec<usize> = ps.iter().map(|p| p.depth).collect();
        depths.sort_unstable();
        depths.dedup();
        let mut seeds: Vec<u64> = ps.iter().map(|p| p.point.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        let xi = ps[0].init.xi;
        let acc_of = |d: usize, s: u64| {
            ps.iter()
                .find(|p| p.depth == d && p.point.seed == s)
                .and_then(|p| acc_at(p, steps))
        };
        let mut test_acc = Vec::new();
        let mut test_acc_se = Vec::new();
        for &d in &depths {
            let v: Vec<f64> = seeds.iter().filter_map(|&s| acc_of(d, s)).collect();
            let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
            test_acc.push(m);
            test_acc_se.push((v.len() > 1).then(|| {
                (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / ((v.len() - 1) * v.len()) as f64)
                    .sqrt()
            }));
        }
        let mut l_emp_per_seed = Vec::new();
        for &s in &seeds {
            let pairs: Vec<(usize, f64)> = depths
                .iter()
                .filter_map(|&d| acc_of(d, s).map(|a| (d, a)))
                .collect();
            let (ds, acc): (Vec<usize>, Vec<f64>) = pairs.into_iter().unzip();
            l_emp_per_seed.push(halfway_depth(&ds, &acc, chance));
        }
        let (mut l_emp, mut l_emp_ci, mut note) = (None, None, None);
        if depths.len() < 3 {
            note = Some(format!(
                "{} depths: a trainable depth needs at least 3 (a shallow reference and a crossing)",
                depths.len()
            ));
        } else if test_acc[0] <= chance + 0.02 {
            note = Some(format!(
                "the shallowest network (depth {}) does not train above chance (test accuracy {:.3})",
                depths[0], test_acc[0]
            ));
        } else if l_emp_per_seed.iter().any(|l| l.is_none()) {
            note = Some(format!(
                "for {} of {} seeds the accuracy stays above halfway to chance up to the deepest depth {}: L_emp > {}",
                l_emp_per_seed.iter().filter(|l| l.is_none()).count(),
                seeds.len(),
                depths[depths.len() - 1],
                depths[depths.len() - 1]
            ));
        } else {
            let logs: Vec<f64> = l_emp_per_seed.iter().flatten().map(|l| l.ln()).collect();
            let k = logs.len();
            let m = logs.iter().sum::<f64>() / k as f64;
            l_emp = Some(m.exp());
            if k > 1 {
                let sd =
                    (logs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt();
                let h = t975(k - 1) * sd / (k as f64).sqrt();
                l_emp_ci = Some(((m - h).exp(), (m + h).exp()));
            }
        }
        out.push(TrainableDepth {
            states,
            sigma_w,
            width,
            lr: f64::from_bits(lr),
            steps,
            xi,
            depths,
            test_acc,
            test_acc_se,
            l_emp_per_seed,
            l_emp,
            l_emp_ci,
            l_emp_over_xi: l_emp.map(|l| l / xi),
            note,
        });
    }
    out
}

fn group_key(t: &TrainableDepth) -> String {
    format!(
        "σw={} n={} lr={} steps={}",
        t.sigma_w, t.width, t.lr, t.steps
    )
}

/// Exponents of L_emp and ξ against N + 1 per group (at least 3 N with an L_emp).
pub fn exponents(tds: &[TrainableDepth]) -> Vec<Exponent> {
    let mut groups: BTreeMap<String, Vec<&TrainableDepth>> = BTreeMap::new();
    for t in tds.iter().filter(|t| t.l_emp.is_some()) {
        groups.entry(group_key(t)).or_default().push(t);
    }
    groups
        .into_iter()
        .filter_map(|(group, ts)| {
            let x: Vec<f64> = ts.iter().map(|t| ((t.states + 1) as f64).ln()).collect();
            let yl: Vec<f64> = ts.iter().filter_map(|t| t.l_emp.map(f64::ln)).collect();
            let yx: Vec<f64> = ts.iter().map(|t| t.xi.ln()).collect();
            Some(Exponent {
                group,
                states: ts.iter().map(|t| t.states).collect(),
                fit_l_emp: linear_fit(&x, &yl).ok()?,
                fit_xi: linear_fit(&x, &yx).ok()?,
            })
        })
        .collect()
}

fn training_csv(points: &[TrainedPoint]) -> String {
    let mut s = String::from(
        "point,states,depth,width,sigma_w,sigma_w_ratio,lr,seed,step,train_acc,test_acc,loss,test_loss,xi,depth_over_xi\n",
    );
    for p in points {
        for r in &p.reports {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
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
                p.depth_over_xi
            );
        }
    }
    s
}

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
    write_atomic(
        &folder.join("summary.json"),
        serde_json::to_string_pretty(&summary)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok((tds, ex))
}

#[cfg(feature = "plots")]
fn plots(
    folder: &Path,
    png: bool,
    plan: &Plan,
    tds: &[TrainableDepth],
    points: &[TrainedPoint],
) -> Result<()> {
    let mut groups: BTreeMap<String, Vec<&TrainableDepth>> = BTreeMap::new();
    for t in tds {
        groups.entry(group_key(t)).or_default().push(t);
    }
    for (k, (group, ts)) in groups.iter().enumerate() {
        if ts.iter().all(|t| t.depths.len() < 2) {
            continue;
        }
        let cells: Vec<Cell> = ts
            .iter()
            .flat_map(|t| {
                t.depths.iter().zip(&t.test_acc).map(|(&d, &a)| Cell {
                    states: t.states,
                    depth: d,
                    acc: a,
                })
            })
            .collect();
        let (nmin, nmax) = ts.iter().fold((usize::MAX, 0), |(a, b), t| {
            (a.min(t.states), b.max(t.states))
        });
        // ξ at every N in the range, for the κξ lines (same preset, σ_w^opt).
        let xi_line: Vec<(usize, f64)> = (nmin..=nmax)
            .filter_map(|n| {
                theory_init(
                    n,
                    plan.preset,
                    1.0,
                    0.0,
                    plan.sigma_b,
                    plan.ste_threshold,
                    plan.m,
                )
                .ok()
                .map(|i| (n, i.xi))
            })
            .collect();
        training_plots::heatmap(
            &folder.join(format!("plots/heatmap-{k}")),
            png,
            &format!("test accuracy, {group}"),
            &cells,
            &xi_line,
            &[4.0, 6.0, 9.0],
        )?;
        let curves: Vec<Collapse> = ts
            .iter()
            .map(|t| Collapse {
                label: format!("N = {} (ξ = {:.2})", t.states, t.xi),
                points: t
                    .depths
                    .iter()
                    .zip(&t.test_acc)
                    .zip(&t.test_acc_se)
                    .map(|((&d, &a), se)| (d as f64 / t.xi, a, se.unwrap_or(0.0)))
                    .collect(),
            })
            .collect();
        training_plots::collapse(
            &folder.join(format!("plots/collapse-{k}")),
            png,
            &format!("test accuracy against depth/ξ, {group}"),
            &curves,
            1.0 / CLASSES as f64,
        )?;
    }
    // Accuracy against σ_w/σ_w^opt when the config sweeps it.
    let mut ratios: Vec<f64> = points
        .iter()
        .map(|p| p.init.sigma_w / p.init.sigma_w_opt)
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    if ratios.len() > 2 {
        let mut series: BTreeMap<(usize, usize), Vec<Point3>> = BTreeMap::new();
        let last = points
            .iter()
            .flat_map(|p| p.reports.last())
            .map(|r| r.step)
            .max()
            .unwrap_or(0);
        let mut by: BTreeMap<(usize, usize, u64), Vec<f64>> = BTreeMap::new();
        for p in points {
            if let Some(a) = acc_at(p, last) {
                let r = p.init.sigma_w / p.init.sigma_w_opt;
                by.entry((p.point.states, p.depth, r.to_bits()))
                    .or_default()
                    .push(a);
            }
        }
        for ((n, d, r), v) in by {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let se = if v.len() > 1 {
                (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / ((v.len() - 1) * v.len()) as f64)
                    .sqrt()
            } else {
                0.0
            };
            series
                .entry((n, d))
                .or_default()
                .push((f64::from_bits(r), m, se));
        }
        let curves: Vec<Collapse> = series
            .into_iter()
            .map(|((n, d), pts)| Collapse {
                label: format!("N = {n}, depth {d}"),
                points: pts,
            })
            .collect();
        training_plots::sigma_sweep(
            &folder.join("plots/sigma-sweep"),
            png,
            &format!("test accuracy after {last} steps against σ_w/σ_w^opt"),
            &curves,
            1.0 / CLASSES as f64,
        )?;
    }
    Ok(())
}

fn table(tds: &[TrainableDepth], ex: &[Exponent]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:>4} {:<28} {:>7} {:>8} {:>22} {:>9}  test accuracy by depth",
        "N", "group", "xi", "steps", "L_emp [95% CI]", "L_emp/xi"
    );
    for d in tds {
        let l = match (d.l_emp, d.l_emp_ci) {
            (Some(l), Some((a, b))) => format!("{l:.1} [{a:.1}, {b:.1}]"),
            (Some(l), None) => format!("{l:.1}"),
            _ => "-".into(),
        };
        let accs: Vec<String> = d
            .depths
            .iter()
            .zip(&d.test_acc)
            .map(|(dd, a)| format!("{dd}:{a:.3}"))
            .collect();
        let _ = writeln!(
            t,
            "{:>4} {:<28} {:>7.2} {:>8} {:>22} {:>9}  {}{}",
            d.states,
            format!("σw={} n={} lr={}", d.sigma_w, d.width, d.lr),
            d.xi,
            d.steps,
            l,
            d.l_emp_over_xi.map_or("-".into(), |x| format!("{x:.2}")),
            accs.join(" "),
            d.note
                .as_ref()
                .map_or(String::new(), |n| format!("  ({n})"))
        );
    }
    for e in ex {
        let _ = writeln!(
            t,
            "exponent vs ln(N + 1) ({}): N = {:?}: L_emp {:.3} ± {:.3}, xi {:.3} ± {:.3}",
            e.group,
            e.states,
            e.fit_l_emp.slope,
            e.fit_l_emp.stderr,
            e.fit_xi.slope,
            e.fit_xi.stderr
        );
    }
    t
}

/// Runs a training experiment into a new results folder under `out_root`.
pub fn run_training(cfg: &Config, out_root: &Path, hooks: &Hooks<'_>) -> Result<RunReport> {
    let plan = plan(cfg)?;
    let mut data = Dataset::load(&plan.data)?;
    if let Some(k) = plan.train_subset {
        data.train = data.train.take(k);
    }
    let lengths = plan.length_steps(data.train.len());
    let max_steps = *lengths.last().expect("at least one length");
    let mut report_at: Vec<usize> = lengths
        .iter()
        .chain(plan.report_at.iter().filter(|s| **s <= max_steps))
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
        let params = Params::init(&spec, p.seed);
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
        write_results(&folder, &plan, &lengths, &done, &desc)?;
        record(&mut commit, "running", &done)?;
    }
    let (tds, ex) = write_results(&folder, &plan, &lengths, &done, &desc)?;
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
            plots(stage, png, &plan, &tds, &done)
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
        table: format!("{note}\n{}", table(&tds, &ex)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halfway_depth_interpolates_in_log_depth() {
        // Shallow 0.9, chance 0.1: halfway is 0.5, reached between depths 10
        // (0.7) and 40 (0.3), exactly in the middle: √(10·40) = 20.
        let l = halfway_depth(&[5, 10, 40, 80], &[0.9, 0.7, 0.3, 0.1], 0.1).unwrap();
        assert!((l - 20.0).abs() < 1e-9, "{l}");
        assert_eq!(halfway_depth(&[5, 10], &[0.9, 0.8], 0.1), None);
        assert_eq!(halfway_depth(&[5, 10], &[0.1, 0.1], 0.1), None);
    }
}
