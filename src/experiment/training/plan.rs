//! The `[training]` section checked and expanded into points (without the
//! data), and a point resolved by the theory: σ_w, ξ, depth, learning rate.
//!
//! Long because every `[training]` key is checked here, with its message, before
//! the points are expanded and resolved.

use crate::error::{Error, Result};
use crate::experiment::config::values::{
    given, ints_in, positive, positive_list, NumOrStr, SigmaW,
};
use crate::experiment::config::{Config, Kind};
use crate::train::data::{CLASSES, FASHION_MNIST_DIR};
use crate::train::model::{theory_init, Init, ModelSpec, Params, Phi, Preset};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most training steps of one network (10⁹: days of the fastest step on
/// any machine; a longer length is a typo, refused before anything runs).
pub const MAX_STEPS: usize = 1_000_000_000;

/// Checks a learning rate (`key` names it): training runs in f32, so it
/// must be a normal f32, [1.2e-38, 3.4e38] (1e-300 would become 0 and
/// 1e39 infinity).
fn f32_rate(key: &str, v: f64) -> Result<f64> {
    positive(key, v)?;
    let f = v as f32;
    if !(f.is_finite() && f.is_normal()) {
        return Err(Error::invalid(
            key,
            crate::error::fmt_value(v),
            &format!(
                "a learning rate in f32's normal range [{:.1e}, {:.1e}]: training runs in f32, \
                 where {} becomes {f}",
                f32::MIN_POSITIVE,
                f32::MAX,
                crate::error::fmt_value(v)
            ),
        ));
    }
    Ok(v)
}

/// A point resolved by the theory: everything needed to train it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The initialization.
    pub init: Init,
    /// Depth in weight layers.
    pub depth: usize,
    /// Learning rate used (after `lr_deep`).
    pub lr: f64,
    /// The network, checked.
    pub spec: ModelSpec,
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
    for &lr in &lrs {
        f32_rate("training.lr", lr)?;
    }
    let lr_deep = match (t.lr_deep, t.lr_deep_from) {
        (Some(l), Some(d)) => Some((f32_rate("training.lr_deep", l)?, d)),
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
            if let Some(&big) = s.iter().find(|&&x| x > MAX_STEPS) {
                return Err(Error::invalid(
                    "training.steps",
                    big,
                    &format!("at most {MAX_STEPS} steps per network"),
                ));
            }
            Lengths::Steps(s.clone())
        }
        (None, Some(e)) => {
            positive_list("training.epochs", e, "give at least one length")?;
            // An epoch is at least one step: more epochs than MAX_STEPS are
            // more steps (the exact bound is checked with the data).
            if let Some(&big) = e.iter().find(|&&x| x > MAX_STEPS as f64) {
                return Err(Error::invalid(
                    "training.epochs",
                    crate::error::fmt_value(big),
                    &format!("at most {MAX_STEPS} steps per network"),
                ));
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
    let max_bias_states = crate::theory::init::MAX_STATES_WITH_BIAS;
    if let Some(&n) = states
        .iter()
        .find(|&&n| sigma_b > 0.0 && n > max_bias_states)
    {
        return Err(Error::invalid(
            "training.states",
            n,
            &format!(
                "with sigma_b > 0, N is limited to {max_bias_states} (c* > 0 needs the O(N²) \
                 correlation map, minutes per point beyond); use sigma_b = 0 for larger N"
            ),
        ));
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
    plan(cfg)?;
    crate::experiment::training::checkpoint::Policy::of(cfg).map(|_| ())
}

impl Plan {
    /// Resolves every point (its initialization, depth, learning rate and
    /// checked network for images of `input_dim` pixels) before anything is
    /// written: an error names the point. Points sharing N, σ_w and the
    /// ratio share one initialization. Stops with [`Error::Interrupted`]
    /// when `cancel` is set.
    pub fn resolve_all(&self, input_dim: usize, cancel: &AtomicBool) -> Result<Vec<Resolved>> {
        let mut inits: Vec<((usize, SigmaW, u64), Init)> = Vec::new();
        let mut out = Vec::with_capacity(self.points.len());
        for p in &self.points {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let at = |e: Error| -> Error {
                let label = format!(
                    "point {}: N = {}, sigma_w = {}, ratio {}, depth {}",
                    p.index,
                    p.states,
                    p.sigma_w.label(),
                    p.sigma_w_ratio,
                    match p.depth {
                        DepthSpec::Layers(d) => d.to_string(),
                        DepthSpec::PerXi(k) => format!("{k}·ξ"),
                    }
                );
                match e {
                    Error::Invalid {
                        name,
                        value,
                        expected,
                    } => Error::Invalid {
                        name: format!("{name} ({label})"),
                        value,
                        expected,
                    },
                    Error::NoFixedPoint(m) => Error::NoFixedPoint(format!("{m} ({label})")),
                    Error::Numerical(m) => Error::Numerical(format!("{m} ({label})")),
                    other => other,
                }
            };
            let key = (p.states, p.sigma_w, p.sigma_w_ratio.to_bits());
            let init = match inits.iter().find(|(k, _)| *k == key) {
                Some((_, init)) => init.clone(),
                None => {
                    let init = self.init_of(p).map_err(at)?;
                    inits.push((key, init.clone()));
                    init
                }
            };
            let (depth, lr) = self.depth_lr(p, &init).map_err(at)?;
            let spec = self.model(p, &init, depth, input_dim);
            spec.validate().map_err(at)?;
            out.push(Resolved {
                init,
                depth,
                lr,
                spec,
            });
        }
        Ok(out)
    }

    /// Resolves a point: its theory-derived initialization, depth and learning rate.
    pub fn resolve(&self, p: &TrainPoint) -> Result<(Init, usize, f64)> {
        let init = self.init_of(p)?;
        let (depth, lr) = self.depth_lr(p, &init)?;
        Ok((init, depth, lr))
    }

    /// The theory-derived initialization of a point.
    fn init_of(&self, p: &TrainPoint) -> Result<Init> {
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
        Ok(init)
    }

    /// A point's depth and learning rate, given its initialization.
    fn depth_lr(&self, p: &TrainPoint, init: &Init) -> Result<(usize, f64)> {
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
        Ok((depth, lr))
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

    /// Training lengths in steps for `train_len` images, each at most
    /// [`MAX_STEPS`].
    pub fn length_steps(&self, train_len: usize) -> Result<Vec<usize>> {
        let per_epoch = (train_len / self.batch).max(1);
        let mut v: Vec<usize> = match &self.lengths {
            Lengths::Steps(s) => s.clone(),
            Lengths::Epochs(e) => {
                let mut v = Vec::with_capacity(e.len());
                for &x in e {
                    let steps = (x * per_epoch as f64).round();
                    if steps.is_nan() || steps > MAX_STEPS as f64 {
                        return Err(Error::invalid(
                            "training.epochs",
                            crate::error::fmt_value(x),
                            &format!(
                                "at most {MAX_STEPS} steps per network: {} epochs of {per_epoch} \
                                 steps are {steps:.3e}",
                                crate::error::fmt_value(x)
                            ),
                        ));
                    }
                    v.push((steps as usize).max(1));
                }
                v
            }
        };
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }
}
