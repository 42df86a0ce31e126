//! The `[training]` section checked and expanded into points (without the
//! data), and a point resolved by the theory: σ_w, ξ, depth, learning rate.

use crate::error::{Error, Result};
use crate::experiment::config::values::{
    given, ints_in, positive, positive_list, NumOrStr, SigmaW,
};
use crate::experiment::config::{Config, Kind};
use crate::train::data::{CLASSES, FASHION_MNIST_DIR};
use crate::train::model::{theory_init, Init, ModelSpec, Params, Phi, Preset};
use serde::Serialize;
use std::path::PathBuf;

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

/// The first layer's weight scale s: W₁ ~ N(0, s²/input_dim). The pixels are
/// normalized to mean 0 and mean square 1 over the training set, so layer 1's
/// pre-activations start with variance ≈ s².
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum InputSigma {
    /// s = σ_w, as every other layer (the default).
    SigmaW,
    /// s = √q*: layer 1 starts at the fixed point q* of the theory.
    QStar,
    /// A given s.
    Value(f64),
}

impl InputSigma {
    /// Parses `training.input_sigma`.
    pub fn parse(v: Option<&NumOrStr>) -> Result<Self> {
        const WANT: &str = "\"sigma_w\" (W₁ with σ_w, the default), \"q_star\" (layer 1 starts at q*) or a finite number > 0";
        match v {
            None => Ok(InputSigma::SigmaW),
            Some(NumOrStr::Num(x)) if x.is_finite() && *x > 0.0 => Ok(InputSigma::Value(*x)),
            Some(NumOrStr::Num(x)) => Err(Error::invalid("training.input_sigma", x, WANT)),
            Some(NumOrStr::Str(s)) => match s.as_str() {
                "sigma_w" => Ok(InputSigma::SigmaW),
                "q_star" => Ok(InputSigma::QStar),
                other => Err(Error::invalid(
                    "training.input_sigma",
                    format!("\"{other}\""),
                    WANT,
                )),
            },
        }
    }

    /// The scale for a network initialized as `init`.
    pub fn value(&self, init: &Init) -> f64 {
        match *self {
            InputSigma::SigmaW => init.sigma_w,
            InputSigma::QStar => init.q_star.sqrt(),
            InputSigma::Value(s) => s,
        }
    }
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
    /// The first layer's weight scale.
    pub input_sigma: InputSigma,
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
    let states = ints_in(
        "training.states",
        given("training.states", &t.states, "give the N values to train")?,
        (2, 1 << 16),
        "N between 2 and 65536",
    )?;
    let depths: Vec<DepthSpec> = match (&t.depth, &t.depth_per_xi) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "training.depth",
                "(with depth_per_xi)",
                "give depth or depth_per_xi, not both",
            ))
        }
        (Some(ax), None) => ints_in(
            "training.depth",
            ax,
            (2, 100_000),
            "between 2 (input → n → classes) and 100000 weight layers",
        )?
        .into_iter()
        .map(DepthSpec::Layers)
        .collect(),
        (None, Some(k)) => {
            positive_list("training.depth_per_xi", k, "give at least one value")?;
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
    let per_doubling = t.bracket_per_doubling.unwrap_or(4);
    if !(1..=64).contains(&per_doubling) {
        return Err(Error::invalid(
            "training.bracket_per_doubling",
            per_doubling,
            "between 1 and 64 depths per doubling (4 or more resolve a crossing)",
        ));
    }
    let bracketed = match &t.bracket_from {
        Some(f) => crate::experiment::training::grid::bracket_from_folder(
            std::path::Path::new(f),
            per_doubling,
        )?,
        None => Default::default(),
    };
    let widths = ints_in(
        "training.width",
        given("training.width", &t.width, "give the hidden width n")?,
        (2, 1 << 16),
        "between 2 and 65536",
    )?;
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
    positive_list("training.sigma_w_ratio", &ratios, "give at least one value")?;
    let lrs = t.lr.clone().unwrap_or_else(|| vec![1e-3]);
    positive_list("training.lr", &lrs, "give at least one learning rate")?;
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
            positive_list("training.epochs", e, "give at least one length")?;
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
    let input_sigma = InputSigma::parse(t.input_sigma.as_ref())?;
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
        let mut depths = depths.clone();
        for &d in bracketed.get(&n).into_iter().flatten() {
            if !depths.contains(&DepthSpec::Layers(d)) {
                depths.push(DepthSpec::Layers(d));
            }
        }
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
        input_sigma,
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

    /// The initial parameters of a point's network: [`Params::init`] with the
    /// first layer rescaled from σ_w to the config's `input_sigma`.
    pub fn params(&self, spec: &ModelSpec, init: &Init, seed: u64) -> Params<f32> {
        let mut p = Params::init(spec, seed);
        let s = self.input_sigma.value(init);
        if s != spec.sigma_w {
            let f = (s / spec.sigma_w) as f32;
            p.weights[0].iter_mut().for_each(|w| *w *= f);
        }
        p
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
