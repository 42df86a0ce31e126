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
//! bracket_from = "results/coarse"   # add per N ≥ 4 depths per doubling around a previous run's crossing
//! width = 128
//! sigma_w = ["opt"]         # "opt", "opt±x" or numbers
//! sigma_w_ratio = [1.0]     # multiplies σ_w^opt
//! input_sigma = "sigma_w"   # first-layer scale: "sigma_w", "q_star" or a number
//! lr = [0.01]               # learning rates
//! momentum = 0.5
//! batch = 32
//! steps = [200, 800]        # training lengths (or epochs = [1.0]); each is a report
//! seeds = 3                 # networks per cell (seed, seed + 1, …)
//! eval_train = 2000         # training images evaluated for train_acc
//! eval_test = 2000          # test images evaluated for test_acc
//! checkpoint_seconds = 300  # a point's state saved every 300 s of training (and on a signal)
//! concurrent = 2            # networks trained at once on the CPU, one thread each (leave out: one per thread up to width 1024)
//! ```
//!
//! Output beside `config.toml` and `meta.json`: `training.csv` (one row per
//! network and report step) and `summary.json` (per network: init, timings,
//! reports; per N, learning rate and length: the empirical trainable depth
//! L_emp with a 95 % interval from seeds, ξ and L_emp/ξ; the exponent of
//! L_emp against N + 1 beside ξ's), and the plots `heatmap-*` (test accuracy
//! over N and depth with κξ lines) and `collapse-*` (accuracy against depth/ξ).
//!
//! The files: [`plan`](mod@plan) (the `[training]` section checked and expanded into
//! points, each resolved by the theory before anything is written),
//! [`budget`] (the memory plan of the largest network against this
//! machine's), [`execute`] (training the points, the results folder),
//! [`checkpoint`] (a point's state saved part-way, read back by `run
//! --resume`), [`folder`] (resume, shards and merge of training folders),
//! [`analysis`] (the trainable depth L_emp and its exponent, the terminal
//! table); the plots are in `experiment::plots::training`.

pub mod analysis;
pub mod boundary;
pub mod budget;
pub mod checkpoint;
pub mod cost;
pub mod curves;
pub mod execute;
pub mod folder;
pub mod grid;
pub mod parallel;
pub mod plan;
pub mod points;

pub use analysis::{divergence, study, Settling, Slope, Study, TrainableDepth, TrainedPoint};
pub use cost::sweep_costs;
pub use execute::{open_train_backend, run_training};
pub use folder::{finish_training, resume_training, run_training_shard};
pub use plan::{
    plan, validate, DepthSpec, InputSigma, Lengths, Plan, Resolved, TrainPoint, MAX_STEPS,
};

use crate::experiment::config::values::{IntAxis, NumOrStr};
use serde::{Deserialize, Serialize};

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
    /// A previous run's results folder: per N, depths bracketing its
    /// transition are added to `depth` (`grid::bracket_from_folder`).
    pub bracket_from: Option<String>,
    /// Depths per doubling of the bracketing depths (default 4).
    pub bracket_per_doubling: Option<usize>,
    /// Widths.
    pub width: Option<IntAxis>,
    /// σ_w: "opt", "opt±x" or numbers (default ["opt"]).
    pub sigma_w: Option<Vec<NumOrStr>>,
    /// Multipliers of σ_w^opt (default [1.0]).
    pub sigma_w_ratio: Option<Vec<f64>>,
    /// σ_b (default 0).
    pub sigma_b: Option<f64>,
    /// First-layer weight scale: "sigma_w" (default, W₁ ~ N(0, σ_w²/784)),
    /// "q_star" (layer 1 starts at q*) or a number.
    pub input_sigma: Option<NumOrStr>,
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
    /// Seconds of training between a point's checkpoints (default 300).
    pub checkpoint_seconds: Option<f64>,
    /// Steps between a point's checkpoints (default: by time only).
    pub checkpoint_steps: Option<usize>,
    /// Keep each point's checkpoint after it completes (default false).
    pub keep_checkpoints: Option<bool>,
    /// Networks trained at once on the CPU backend, each on one thread
    /// (default: one per thread when every network is at most 1024 wide,
    /// else 1; see [`parallel`]).
    pub concurrent: Option<usize>,
}
