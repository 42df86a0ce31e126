//! Runs an experiment: for each sweep point, theory and simulation side by
//! side, the analysis, and the results folder, written atomically after
//! every point so an interrupted run leaves a valid folder marked incomplete.

use crate::analysis::{agreement, fit_depth_scale_networks, Agreement, DepthScaleFit};
use crate::error::{Error, Result};
use crate::experiment::config::{Config, InputChoice, Kind, RunPoint, SigmaW};
use crate::experiment::folder::{self, Commit};
#[cfg(feature = "plots")]
use crate::experiment::plots::{self, Figure1Panel, Series};
use crate::setup::{ActivationChoice, NetworkChoice, ResolvedNetwork};
use crate::sim::{self, Backend, Control, Inputs, SimSpec};
use crate::theory::optimal::{uniform_optimum, DEFAULT_KAPPA};
use crate::theory::scaling::{linear_fit, scaling, LinearFit};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime};

/// Callbacks of a running experiment (progress display, tests).
pub struct Hooks<'a> {
    /// A point starts: (index, number of points, label, layers to simulate).
    pub point_started: &'a (dyn Fn(usize, usize, &str, u64) + Sync),
    /// Layers simulated so far in the current point.
    pub layers: &'a (dyn Fn(u64) + Sync),
    /// A point finished and its results are on disk.
    pub point_finished: &'a (dyn Fn(&PointSummary) + Sync),
    /// Set to stop: the current point is dropped, finished points are kept.
    pub cancel: &'a AtomicBool,
}

/// One row of a curve: empirical mean and SE beside the theory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurveRow {
    /// Layer l.
    pub layer: usize,
    /// Mean q̂.
    pub q_mean: f64,
    /// SE of q̂.
    pub q_se: Option<f64>,
    /// Theory q^l.
    pub q_theory: f64,
    /// Mean ĉ.
    pub c_mean: f64,
    /// SE of ĉ.
    pub c_se: Option<f64>,
    /// Theory c^l.
    pub c_theory: f64,
    /// Mean covariance (circle inputs).
    pub cov_mean: Option<f64>,
    /// SE of the covariance.
    pub cov_se: Option<f64>,
    /// Theory covariance q^l c^l (circle inputs).
    pub cov_theory: Option<f64>,
}

/// One curve of a point: a value of c⁰, or an angle offset on the circle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Curve {
    /// "pairs" or "circle".
    pub input: String,
    /// c⁰ (for the circle, cos Δθ).
    pub c0: f64,
    /// Δθ for circle inputs.
    pub angle: Option<f64>,
    /// Layers 0..=L.
    pub layers: Vec<CurveRow>,
}

/// The empirical depth scale fitted from one c⁰ curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XiFit {
    /// c⁰ of the curve.
    pub c0: f64,
    /// The fit, if the curve allowed one.
    pub fit: Option<DepthScaleFit>,
    /// Why not, otherwise.
    pub error: Option<String>,
}

/// Everything summarized about one point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointSummary {
    /// Index in the sweep.
    pub index: usize,
    /// Label.
    pub label: String,
    /// The network as run (defaults filled in).
    pub network: ResolvedNetwork,
    /// σ_w as the config gave it.
    pub sigma_w_spec: String,
    /// Width n.
    pub width: usize,
    /// Depth L as run.
    pub depth: usize,
    /// Networks requested.
    pub samples_requested: usize,
    /// Networks simulated.
    pub samples: usize,
    /// c* (stable fixed point).
    pub c_star: f64,
    /// χ(c*).
    pub chi_c_star: f64,
    /// ξ_c = −1/ln χ(c*) from the theory.
    pub xi_theory: f64,
    /// ξ_emp for each c⁰ (pairs).
    pub xi_fits: Vec<XiFit>,
    /// The fit over the widest window among `xi_fits`.
    pub xi_emp: Option<DepthScaleFit>,
    /// Agreement of q̂ with the theory over every curve and layer.
    pub agreement_q: Agreement,
    /// Agreement of ĉ with the theory over every curve and layer.
    pub agreement_c: Agreement,
    /// Simulation wall time (s).
    pub wall_seconds: f64,
    /// Backward passes (when the config asks for them).
    pub backward: Vec<BackwardResult>,
    /// Results that are NaN or ∞ (JSON writes them as null): what and where.
    /// Empty when every number is finite.
    #[serde(default)]
    pub non_finite: Vec<String>,
    /// Curves (also in curves.csv / curves.json).
    #[serde(skip)]
    pub curves: Vec<Curve>,
}

/// The backward pass of a point for one target backward factor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackwardResult {
    /// Target M.
    pub m_target: f64,
    /// The surrogate used (slope chosen for the target).
    pub ste: crate::theory::backward::Ste,
    /// M from the theory for that surrogate at q*.
    pub m_theory: f64,
    /// Per c⁰: empirical NTK Θ^L(a,a), Θ^L(a,b) with their theory values.
    pub ntk: Vec<serde_json::Value>,
    /// Agreement of the per-layer gradient-norm ratio with M.
    pub agreement_ratio: Agreement,
    /// Agreement of the gradient correlation with the theory.
    pub agreement_corr: Agreement,
    /// Agreement of the cumulative norm ‖δ^l‖²/‖δ^L‖² with the theory
    /// (compounded over layers, where a small per-layer excess shows).
    pub agreement_cumulative: Agreement,
    /// Curves (written to backward.csv).
    #[serde(skip)]
    pub curves: Vec<(
        crate::sim::backward::BackwardCurve,
        Vec<crate::theory::backward::BackwardPoint>,
    )>,
}

/// ξ_emp(N) against ξ_theory(N) for points that differ only in N.
#[derive(Debug, Clone, Serialize)]
pub struct XiScaling {
    /// What the points share.
    pub group: String,
    /// N values.
    pub states: Vec<usize>,
    /// ξ_emp per N.
    pub xi_emp: Vec<f64>,
    /// ξ_theory per N.
    pub xi_theory: Vec<f64>,
    /// Fit of ln ξ_emp against ln(N + 1).
    pub fit_emp: LinearFit,
    /// Fit of ln ξ_theory against ln(N + 1) over the same N.
    pub fit_theory: LinearFit,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The results folder.
    pub folder: PathBuf,
    /// Whether every point finished.
    pub complete: bool,
    /// Summaries of the finished points.
    pub points: Vec<PointSummary>,
    /// ξ scaling groups.
    pub scaling: Vec<XiScaling>,
    /// Lines of the terminal summary.
    pub table: String,
}

/// Writes `bytes` to `path` atomically (temporary file, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    folder::write_atomic(path, bytes)
}

pub(crate) fn timestamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A new results folder `<root>/<name>-<UTC timestamp>` (suffixed if taken).
pub fn results_folder(root: &Path, name: &str) -> Result<PathBuf> {
    folder::create(root, name)
}

/// Resolves a point's network: σ_w^opt (+ offset) for uniform quantizers.
pub fn resolve_point(p: &RunPoint) -> Result<ResolvedNetwork> {
    let activation = match (p.activation.as_str(), p.states) {
        ("uniform", Some(n)) => ActivationChoice::Uniform(n),
        ("tanh", _) => ActivationChoice::Tanh,
        ("hard-tanh", _) => ActivationChoice::HardTanh,
        ("linear", _) => ActivationChoice::Linear,
        _ => {
            return Err(Error::invalid(
                "network.activation",
                &p.activation,
                "uniform needs states",
            ))
        }
    };
    let mut choice = NetworkChoice {
        activation,
        spacing: p.spacing,
        amplitude: p.amplitude,
        sigma_w: None,
        sigma_b: Some(p.sigma_b),
        q0: p.q0,
    };
    match p.sigma_w {
        SigmaW::Value(v) => {
            choice.sigma_w = Some(v);
            choice.resolve()
        }
        SigmaW::Opt(offset) => {
            let base = choice.resolve()?;
            if offset == 0.0 {
                return Ok(base);
            }
            let v = base.sigma_w + offset;
            if v <= 0.0 {
                return Err(Error::invalid(
                    "sigma_w",
                    p.sigma_w.label(),
                    &format!(
                        "σ_w^opt = {:.4} plus the offset is not positive",
                        base.sigma_w
                    ),
                ));
            }
            choice.sigma_w = Some(v);
            let mut r = choice.resolve()?;
            r.defaulted.retain(|d| d != "sigma_w");
            Ok(r)
        }
    }
}

fn curves_for(
    p: &RunPoint,
    r: &ResolvedNetwork,
    depth: usize,
    stats: &sim::SimStats,
) -> Result<Vec<Curve>> {
    let net = &r.network;
    let mut out = Vec::new();
    for pc in &stats.pairs {
        let th = net.depth_curve(r.q0, r.q0, pc.c0, depth)?;
        out.push(Curve {
            input: "pairs".into(),
            c0: pc.c0,
            angle: None,
            layers: pc
                .layers
                .iter()
                .zip(&th)
                .map(|(e, t)| CurveRow {
                    layer: e.layer,
                    q_mean: e.q.mean,
                    q_se: e.q.se,
                    q_theory: t.q_a,
                    c_mean: e.c.mean,
                    c_se: e.c.se,
                    c_theory: t.c,
                    cov_mean: None,
                    cov_se: None,
                    cov_theory: None,
                })
                .collect(),
        });
    }
    if let (Some(circle), InputChoice::Circle { .. }) = (&stats.circle, &p.inputs) {
        for (d, &angle) in circle.angles.iter().enumerate() {
            let c0 = angle.cos().clamp(-1.0, 1.0);
            let th = net.depth_curve(r.q0, r.q0, c0, depth)?;
            out.push(Curve {
                input: "circle".into(),
                c0,
                angle: Some(angle),
                layers: circle
                    .layers
                    .iter()
                    .zip(&th)
                    .map(|(e, t)| CurveRow {
                        layer: e.layer,
                        q_mean: e.q.mean,
                        q_se: e.q.se,
                        q_theory: t.q_a,
                        c_mean: e.corr[d].mean,
                        c_se: e.corr[d].se,
                        c_theory: t.c,
                        cov_mean: Some(e.cov[d].mean),
                        cov_se: e.cov[d].se,
                        cov_theory: Some(t.q_a * t.c),
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}

fn run_point(
    p: &RunPoint,
    cfg: &Config,
    backend: &mut dyn Backend,
    hooks: &Hooks<'_>,
    total: usize,
) -> Result<Option<PointSummary>> {
    let r = resolve_point(p)?;
    let net = &r.network;
    let c_star = net.c_star(r.q_star)?;
    let chi = net.chi(r.q_star, c_star);
    let xi = net.depth_scale(r.q_star, c_star);
    let depth = match p.depth_per_xi {
        Some(k) if xi.is_finite() => ((k * xi).ceil() as usize).clamp(1, p.depth),
        _ => p.depth,
    };
    let inputs = match &p.inputs {
        InputChoice::Pairs { c0, pairs } => Inputs::Pairs {
            c0: c0.clone(),
            pairs: *pairs,
        },
        InputChoice::Circle { points } => Inputs::Circle { points: *points },
    };
    let spec = SimSpec::of_network(&r, p.width, depth, p.samples, cfg.seed(), inputs)
        .with_weights(cfg.weights()?);
    spec.validate()?;
    let mut point = p.clone();
    point.depth = depth;
    (hooks.point_started)(p.index, total, &point.label(), (p.samples * depth) as u64);
    let out = sim::simulate(
        backend,
        &spec,
        &Control {
            progress: hooks.layers,
            cancel: hooks.cancel,
        },
    )?;
    if !out.complete {
        let interrupted = hooks.cancel.load(std::sync::atomic::Ordering::Relaxed)
            || out.stopped.as_deref().is_none_or(|w| w == "interrupted");
        if interrupted {
            return Ok(None);
        }
        // A failure inside the point after some samples finished is a
        // failure, not an interruption: the point's results are incomplete.
        return Err(Error::Numerical(format!(
            "sample {} of {}: {}",
            out.stats.samples,
            p.samples,
            out.stopped.unwrap_or_default()
        )));
    }
    let curves = curves_for(p, &r, depth, &out.stats)?;
    let mut xi_fits = Vec::new();
    // Pair curves come in the order of `out.stats.pairs`.
    for (c, pc) in curves
        .iter()
        .filter(|c| c.input == "pairs")
        .zip(&out.stats.pairs)
    {
        match fit_depth_scale_networks(&pc.c_per_network, c_star) {
            Ok(f) => xi_fits.push(XiFit {
                c0: c.c0,
                fit: Some(f),
                error: None,
            }),
            Err(e) => xi_fits.push(XiFit {
                c0: c.c0,
                fit: None,
                error: Some(e.to_string()),
            }),
        }
    }
    let xi_emp = xi_fits
        .iter()
        .filter_map(|f| f.fit)
        .max_by_key(|f| f.last_layer - f.first_layer);
    let (mut eq, mut tq, mut ec, mut tc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The circle's zero offset is ĉ ≡ 1 by construction: nothing to compare.
    for c in curves.iter().filter(|c| c.angle != Some(0.0)) {
        for l in c.layers.iter().skip(1) {
            eq.push((l.q_mean, l.q_se));
            tq.push(l.q_theory);
            ec.push((l.c_mean, l.c_se));
            tc.push(l.c_theory);
        }
    }
    let mut backward = Vec::new();
    if let (Some(bc), InputChoice::Pairs { c0, .. }) = (&cfg.backward, &p.inputs) {
        use crate::theory::backward::{backward_curve, backward_factor, unit_slope, Ste};
        let t = bc.ste_threshold.unwrap_or(1.0);
        for &m_target in bc.m.as_deref().unwrap_or(&[1.0]) {
            let ste = Ste::new(m_target.sqrt() * unit_slope(net, r.q_star, t)?, t)?;
            let curves = match backend.backward(&spec, &ste, hooks.cancel) {
                Ok(c) => c,
                Err(Error::Interrupted) => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut pairs_out = Vec::new();
            let (mut er, mut tr, mut ec, mut tc, mut ntk) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut en, mut tn) = (Vec::new(), Vec::new());
            let m_theory = backward_factor(net, r.q_star, &ste);
            for (cv, &c) in curves.into_iter().zip(c0) {
                let th = backward_curve(net, &ste, r.q0, c, depth, 1.0)?;
                for (e, t) in cv.layers.iter().zip(&th) {
                    if let Some(x) = e.norm_ratio {
                        er.push((x.mean, x.se));
                        tr.push(
                            th.get(e.layer + 1)
                                .map_or(1.0, |n| t.grad_norm_ratio / n.grad_norm_ratio),
                        );
                    }
                    if e.layer < depth {
                        en.push((e.norm_cumulative.mean, e.norm_cumulative.se));
                        tn.push(t.grad_norm_ratio);
                        ec.push((e.grad_corr.mean, e.grad_corr.se));
                        tc.push(t.grad_corr);
                    }
                }
                let top = th[depth];
                ntk.push(serde_json::json!({"c0": c, "norm_cumulative": cv.layers[0].norm_cumulative, "norm_cumulative_theory": th[0].grad_norm_ratio, "ntk_aa": cv.ntk_aa, "ntk_aa_theory": top.ntk_aa, "ntk_ab": cv.ntk_ab, "ntk_ab_theory": top.ntk_ab}));
                pairs_out.push((cv, th));
            }
            backward.push(BackwardResult {
                m_target,
                ste,
                m_theory,
                ntk,
                agreement_ratio: checked_agreement(&er, &tr, out.stats.samples),
                agreement_corr: checked_agreement(&ec, &tc, out.stats.samples),
                agreement_cumulative: checked_agreement(&en, &tn, out.stats.samples),
                curves: pairs_out,
            });
        }
    }
    Ok(Some(PointSummary {
        index: p.index,
        label: point.label(),
        sigma_w_spec: p.sigma_w.label(),
        network: r.clone(),
        width: p.width,
        depth,
        samples_requested: p.samples,
        samples: out.stats.samples,
        c_star,
        chi_c_star: chi,
        xi_theory: xi,
        xi_fits,
        xi_emp,
        agreement_q: checked_agreement(&eq, &tq, out.stats.samples),
        agreement_c: checked_agreement(&ec, &tc, out.stats.samples),
        wall_seconds: out.wall_seconds,
        backward,
        non_finite: Vec::new(),
        curves,
    })
    .map(|mut s| {
        s.non_finite = non_finite(&s);
        s
    }))
}

/// Agreement scores that cannot read as perfect: when any mean, SE or
/// theory value is NaN or ∞, every score is NaN (null in JSON) and the
/// point is flagged in `non_finite`.
pub fn checked_agreement(emp: &[(f64, Option<f64>)], theory: &[f64], samples: usize) -> Agreement {
    let finite = emp
        .iter()
        .all(|(m, se)| m.is_finite() && se.is_none_or(f64::is_finite))
        && theory.iter().all(|t| t.is_finite());
    if finite {
        agreement(emp, theory, samples)
    } else {
        Agreement {
            max_z: f64::NAN,
            rms_z: f64::NAN,
            max_abs: f64::NAN,
            samples,
        }
    }
}

/// Every NaN or ∞ in a point's results, as "what = value (where)"; at most
/// 20 entries, then a count of the rest.
pub fn non_finite(p: &PointSummary) -> Vec<String> {
    let mut out = Vec::new();
    let mut more = 0usize;
    let mut check = |what: String, v: f64| {
        if !v.is_finite() {
            if out.len() < 20 {
                out.push(format!("{what} = {v}"));
            } else {
                more += 1;
            }
        }
    };
    check("c_star".into(), p.c_star);
    check("chi_c_star".into(), p.chi_c_star);
    check("xi_theory".into(), p.xi_theory);
    for (name, a) in [
        ("agreement_q", &p.agreement_q),
        ("agreement_c", &p.agreement_c),
    ] {
        check(format!("{name}.max_z"), a.max_z);
        check(format!("{name}.rms_z"), a.rms_z);
        check(format!("{name}.max_abs"), a.max_abs);
    }
    for c in &p.curves {
        for l in &c.layers {
            let at = format!("{} c0 = {} layer {}", c.input, c.c0, l.layer);
            for (name, v) in [
                ("q_mean", Some(l.q_mean)),
                ("q_se", l.q_se),
                ("q_theory", Some(l.q_theory)),
                ("c_mean", Some(l.c_mean)),
                ("c_se", l.c_se),
                ("c_theory", Some(l.c_theory)),
                ("cov_mean", l.cov_mean),
                ("cov_se", l.cov_se),
                ("cov_theory", l.cov_theory),
            ] {
                if let Some(v) = v {
                    check(format!("{name} ({at})"), v);
                }
            }
        }
    }
    for b in &p.backward {
        let at = format!("backward M = {}", b.m_target);
        check(format!("m_theory ({at})"), b.m_theory);
        for (name, a) in [
            ("agreement_ratio", &b.agreement_ratio),
            ("agreement_corr", &b.agreement_corr),
        ] {
            check(format!("{name}.max_z ({at})"), a.max_z);
            check(format!("{name}.rms_z ({at})"), a.rms_z);
        }
        for (cv, th) in &b.curves {
            for e in &cv.layers {
                let at = format!("{at} c0 = {} layer {}", cv.c0, e.layer);
                check(format!("norm_cumulative ({at})"), e.norm_cumulative.mean);
                check(format!("grad_corr ({at})"), e.grad_corr.mean);
                if let Some(x) = e.norm_ratio {
                    check(format!("norm_ratio ({at})"), x.mean);
                }
            }
            for t in th {
                check(
                    format!("grad_norm_ratio theory ({at} layer {})", t.layer),
                    t.grad_norm_ratio,
                );
                check(
                    format!("grad_corr theory ({at} layer {})", t.layer),
                    t.grad_corr,
                );
            }
            check(format!("ntk_aa ({at} c0 = {})", cv.c0), cv.ntk_aa.mean);
            check(format!("ntk_ab ({at} c0 = {})", cv.c0), cv.ntk_ab.mean);
        }
    }
    if more > 0 {
        out.push(format!("… and {more} more"));
    }
    out
}

fn opt(x: Option<f64>) -> String {
    x.map_or(String::new(), |v| format!("{v}"))
}

fn curves_csv(points: &[PointSummary]) -> String {
    let mut s = String::from(
        "point,states,sigma_w,sigma_b,width,depth,input,c0,angle,layer,q_mean,q_se,q_theory,c_mean,c_se,c_theory,cov_mean,cov_se,cov_theory\n",
    );
    for p in points {
        for c in &p.curves {
            for l in &c.layers {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    p.index,
                    p.network.states.map_or(String::new(), |n| n.to_string()),
                    p.network.sigma_w,
                    p.network.sigma_b,
                    p.width,
                    p.depth,
                    c.input,
                    c.c0,
                    opt(c.angle),
                    l.layer,
                    l.q_mean,
                    opt(l.q_se),
                    l.q_theory,
                    l.c_mean,
                    opt(l.c_se),
                    l.c_theory,
                    opt(l.cov_mean),
                    opt(l.cov_se),
                    opt(l.cov_theory)
                );
            }
        }
    }
    s
}

const BACKWARD_CSV_HEADER: &str = "point,m_target,ste_slope,ste_threshold,c0,layer,norm_cumulative_mean,norm_cumulative_se,norm_cumulative_theory,\
     norm_ratio_mean,norm_ratio_se,norm_ratio_theory,grad_corr_mean,grad_corr_se,grad_corr_theory\n";

/// The backward.csv rows of one point (its backward curves are not kept in
/// the point's record, so the rows are rendered once, when it finishes).
fn backward_rows(p: &PointSummary) -> String {
    let mut s = String::new();
    for b in &p.backward {
        for (cv, th) in &b.curves {
            for (e, t) in cv.layers.iter().zip(th) {
                let next = th
                    .get(e.layer + 1)
                    .map(|n| t.grad_norm_ratio / n.grad_norm_ratio);
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    p.index,
                    b.m_target,
                    b.ste.slope,
                    b.ste.threshold,
                    cv.c0,
                    e.layer,
                    e.norm_cumulative.mean,
                    opt(e.norm_cumulative.se),
                    t.grad_norm_ratio,
                    opt(e.norm_ratio.map(|x| x.mean)),
                    opt(e.norm_ratio.and_then(|x| x.se)),
                    opt(next),
                    e.grad_corr.mean,
                    opt(e.grad_corr.se),
                    t.grad_corr
                );
            }
        }
    }
    s
}

/// A finished point as stored in `points/pointNNN.cbor`: everything the
/// aggregates, the summary table and the scaling fits need, bit for bit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointRecord {
    /// Folder format.
    pub format: u32,
    /// Hash of the config as run (a record from another config is refused).
    pub config_hash: String,
    /// The point's summary (its curves are in `curves`).
    pub summary: PointSummary,
    /// Its curves.
    pub curves: Vec<Curve>,
    /// Its backward.csv rows.
    pub backward_rows: String,
}

impl PointRecord {
    fn of(summary: &PointSummary, config_hash: &str) -> Self {
        PointRecord {
            format: folder::FORMAT,
            config_hash: config_hash.to_string(),
            summary: summary.clone(),
            curves: summary.curves.clone(),
            backward_rows: backward_rows(summary),
        }
    }

    /// The summary with its curves.
    pub fn point(&self) -> PointSummary {
        let mut p = self.summary.clone();
        p.curves = self.curves.clone();
        p
    }
}

#[cfg(feature = "plots")]
/// A point described with its numbers, for plot titles: N, σ_w (and its
/// offset from σ_w^opt), σ_b, width, depth.
fn plot_label(p: &PointSummary) -> String {
    let act = match p.network.states {
        Some(n) => format!("N = {n}"),
        None => p.network.activation.to_string(),
    };
    let spec = match p.sigma_w_spec.as_str() {
        "opt" => " (optimal)".to_string(),
        s if s.starts_with("opt") => format!(" (optimal {})", &s[3..]),
        _ => String::new(),
    };
    format!(
        "{act}, σ_w = {}{spec}, σ_b = {}, n = {}, L = {}",
        sig(p.network.sigma_w, 5),
        p.network.sigma_b,
        p.width,
        p.depth
    )
}

#[cfg(feature = "plots")]
fn point_plots(folder: &Path, png: bool, p: &PointSummary) -> Result<()> {
    let stem = |what: &str| folder.join(format!("plots/point{:03}-{what}", p.index));
    let label = plot_label(p);
    let pairs: Vec<&Curve> = p.curves.iter().filter(|c| c.input == "pairs").collect();
    if !pairs.is_empty() {
        let series: Vec<Series> = pairs
            .iter()
            .map(|c| Series {
                label: format!("c0 = {}", c.c0),
                points: c
                    .layers
                    .iter()
                    .map(|l| (l.layer as f64, l.c_mean, l.c_se.unwrap_or(0.0)))
                    .collect(),
                line: c
                    .layers
                    .iter()
                    .map(|l| (l.layer as f64, l.c_theory))
                    .collect(),
                color: None,
            })
            .collect();
        plots::depth_curves(
            &stem("correlation"),
            png,
            &format!(
                "correlation ĉ by layer: {label}; ξ = {}",
                sig(p.xi_theory, 4)
            ),
            "correlation ĉ",
            &series,
            false,
        )?;
        let q = &pairs[0];
        let qplot = [Series {
            label: "q".into(),
            points: q
                .layers
                .iter()
                .map(|l| (l.layer as f64, l.q_mean, l.q_se.unwrap_or(0.0)))
                .collect(),
            line: q
                .layers
                .iter()
                .map(|l| (l.layer as f64, l.q_theory))
                .collect(),
            color: None,
        }];
        plots::depth_curves(
            &stem("variance"),
            png,
            &format!("pre-activation variance q by layer: {label}"),
            "variance q",
            &qplot,
            false,
        )?;
    }
    if !p.backward.is_empty() {
        // Per target M, the first c0's curves.
        let firsts: Vec<_> = p
            .backward
            .iter()
            .filter_map(|b| b.curves.first().map(|c| (b, c)))
            .collect();
        let norm: Vec<Series> = firsts
            .iter()
            .map(|(b, (cv, th))| Series {
                label: format!("M = {}", sig(b.m_theory, 4)),
                points: cv
                    .layers
                    .iter()
                    .map(|l| {
                        (
                            l.layer as f64,
                            l.norm_cumulative.mean,
                            l.norm_cumulative.se.unwrap_or(0.0),
                        )
                    })
                    .collect(),
                line: th
                    .iter()
                    .map(|t| (t.layer as f64, t.grad_norm_ratio))
                    .collect(),
                color: None,
            })
            .collect();
        plots::depth_curves(
            &stem("gradient-norm"),
            png,
            &format!("squared gradient norm at layer l over that at L (STE, log scale): {label}"),
            "‖δ‖² at layer l / ‖δ‖² at L",
            &norm,
            true,
        )?;
        let corr: Vec<Series> = firsts
            .iter()
            .map(|(b, (cv, th))| Series {
                label: format!("M = {}, c0 = {}", sig(b.m_theory, 4), cv.c0),
                points: cv
                    .layers
                    .iter()
                    .map(|l| {
                        (
                            l.layer as f64,
                            l.grad_corr.mean,
                            l.grad_corr.se.unwrap_or(0.0),
                        )
                    })
                    .collect(),
                line: th.iter().map(|t| (t.layer as f64, t.grad_corr)).collect(),
                color: None,
            })
            .collect();
        plots::depth_curves(
            &stem("gradient-correlation"),
            png,
            &format!("correlation of the two inputs' gradients δ (STE): {label}"),
            "gradient correlation",
            &corr,
            false,
        )?;
        // NTK: the theory's recursion Θ^l layer by layer; the simulation
        // measures the network's NTK at its output layer L.
        let mut ntk = Vec::new();
        for (b, (cv, th)) in &firsts {
            let l = th.last().map_or(0.0, |t| t.layer as f64);
            for (name, est, line) in [
                (
                    "Θ(a,a)",
                    cv.ntk_aa,
                    th.iter()
                        .map(|t| (t.layer as f64, t.ntk_aa))
                        .collect::<Vec<_>>(),
                ),
                (
                    "Θ(a,b)",
                    cv.ntk_ab,
                    th.iter().map(|t| (t.layer as f64, t.ntk_ab)).collect(),
                ),
            ] {
                ntk.push(Series {
                    label: format!("{name}, M = {}", sig(b.m_theory, 4)),
                    points: vec![(l, est.mean, est.se.unwrap_or(0.0))],
                    line,
                    color: None,
                });
            }
        }
        plots::depth_curves(
            &stem("ntk"),
            png,
            &format!(
                "NTK of the pair, c0 = {}: theory by depth, simulation at L: {label}",
                firsts[0].1 .0.c0
            ),
            "NTK Θ",
            &ntk,
            false,
        )?;
    }
    let circle: Vec<&Curve> = p.curves.iter().filter(|c| c.input == "circle").collect();
    if !circle.is_empty() {
        plots::figure1(
            &stem("circle"),
            png,
            &format!("normalized covariance against Δθ by layer: {label}"),
            &[figure1_panel(p)],
        )?;
    }
    Ok(())
}

#[cfg(feature = "plots")]
/// Layers shown in Figure 1: 0, 1, 2, 4, 8, … up to L.
fn figure1_layers(depth: usize) -> Vec<usize> {
    let mut v = vec![0];
    let mut l = 1;
    while l <= depth {
        v.push(l);
        l *= 2;
    }
    v
}

#[cfg(feature = "plots")]
/// One Figure 1 panel: per shown layer, ĉ against Δθ (simulation) and the
/// theory's c^l.
fn figure1_panel(p: &PointSummary) -> Figure1Panel {
    let circle: Vec<&Curve> = p.curves.iter().filter(|c| c.input == "circle").collect();
    let shown = figure1_layers(p.depth);
    let layers = shown
        .iter()
        .enumerate()
        .map(|(k, &l)| {
            let row = |c: &&Curve| c.layers.get(l).cloned();
            // Mirror Δθ ∈ [0, π] is what the circle measures (d ≤ M/2).
            Series {
                label: format!("layer {l}"),
                points: circle
                    .iter()
                    .filter_map(|c| {
                        row(c).map(|r| (c.angle.unwrap_or(0.0), r.c_mean, r.c_se.unwrap_or(0.0)))
                    })
                    .collect(),
                line: {
                    // The theory on a fine grid of Δθ for smooth lines.
                    let r = &p.network;
                    (0..=64)
                        .filter_map(|i| {
                            let a = std::f64::consts::PI * i as f64 / 64.0;
                            r.network
                                .depth_curve(r.q0, r.q0, a.cos().clamp(-1.0, 1.0), l)
                                .ok()
                                .and_then(|t| t.last().map(|t| (a, t.c)))
                        })
                        .collect()
                },
                color: Some(plots::layer_color(k, shown.len())),
            }
        })
        .collect();
    let offset = match p.sigma_w_spec.as_str() {
        "opt" => " (optimal)".to_string(),
        s if s.starts_with("opt") => format!(" (opt {})", &s[3..]),
        _ => String::new(),
    };
    Figure1Panel {
        caption: format!(
            "σ_w = {}{offset}, ξ = {}",
            sig(p.network.sigma_w, 4),
            sig(p.xi_theory, 3)
        ),
        layers,
    }
}

fn xi_scaling(points: &[PointSummary]) -> Vec<XiScaling> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<String, Vec<&PointSummary>> = BTreeMap::new();
    for p in points
        .iter()
        .filter(|p| p.network.states.is_some() && p.xi_emp.is_some())
    {
        let key = format!(
            "σw={} σb={} n={}",
            p.sigma_w_spec, p.network.sigma_b, p.width
        );
        groups.entry(key).or_default().push(p);
    }
    groups
        .into_iter()
        .filter_map(|(group, mut ps)| {
            ps.sort_by_key(|p| p.network.states);
            ps.dedup_by_key(|p| p.network.states);
            if ps.len() < 3 {
                return None;
            }
            let states: Vec<usize> = ps.iter().filter_map(|p| p.network.states).collect();
            let x: Vec<f64> = states.iter().map(|n| ((n + 1) as f64).ln()).collect();
            let xi_emp: Vec<f64> = ps.iter().filter_map(|p| p.xi_emp.map(|f| f.xi)).collect();
            let xi_theory: Vec<f64> = ps.iter().map(|p| p.xi_theory).collect();
            let fit_emp =
                linear_fit(&x, &xi_emp.iter().map(|v| v.ln()).collect::<Vec<_>>()).ok()?;
            let fit_theory =
                linear_fit(&x, &xi_theory.iter().map(|v| v.ln()).collect::<Vec<_>>()).ok()?;
            Some(XiScaling {
                group,
                states,
                xi_emp,
                xi_theory,
                fit_emp,
                fit_theory,
            })
        })
        .collect()
}

#[cfg(feature = "plots")]
fn scaling_plots(
    folder: &Path,
    png: bool,
    scaling: &[XiScaling],
    points: &[PointSummary],
) -> Result<()> {
    for (k, s) in scaling.iter().enumerate() {
        let emp: Vec<(f64, f64, f64)> = s
            .states
            .iter()
            .filter_map(|&n| {
                let p = points.iter().find(|p| {
                    p.network.states == Some(n)
                        && format!(
                            "σw={} σb={} n={}",
                            p.sigma_w_spec, p.network.sigma_b, p.width
                        ) == s.group
                })?;
                let f = p.xi_emp?;
                // The bar spans the 95 % interval (drawn as ± its half-width about ξ_emp).
                let half = if f.ci_high.is_finite() {
                    0.5 * (f.ci_high - f.ci_low)
                } else {
                    f.xi
                };
                Some(((n + 1) as f64, f.xi, half))
            })
            .collect();
        let line = |fit: &LinearFit| -> Vec<(f64, f64)> {
            let (a, b) = (
                (s.states[0] + 1) as f64,
                (s.states[s.states.len() - 1] + 1) as f64,
            );
            (0..=40)
                .map(|i| {
                    let x = a * (b / a).powf(i as f64 / 40.0);
                    (x, (fit.intercept + fit.slope * x.ln()).exp())
                })
                .collect()
        };
        let th: Vec<(f64, f64, f64)> = s
            .states
            .iter()
            .zip(&s.xi_theory)
            .map(|(&n, &x)| ((n + 1) as f64, x, 0.0))
            .collect();
        let series = [
            Series {
                label: "ξ_emp ± 95 % CI".into(),
                points: emp,
                line: Vec::new(),
                color: Some(plots::layer_color(0, 2)),
            },
            Series {
                label: format!("fit to ξ_emp: slope {:.3}", s.fit_emp.slope),
                points: Vec::new(),
                line: line(&s.fit_emp),
                color: Some(plots::layer_color(0, 2)),
            },
            Series {
                label: "ξ_c (theory)".into(),
                points: th,
                line: Vec::new(),
                color: Some(RED_SERIES),
            },
            Series {
                label: format!("fit to theory: slope {:.3}", s.fit_theory.slope),
                points: Vec::new(),
                line: line(&s.fit_theory),
                color: Some(RED_SERIES),
            },
        ];
        plots::loglog(
            &folder.join(format!("plots/xi-scaling-{k}")),
            png,
            &format!(
                "depth scale ξ against N + 1 (log-log), {}",
                s.group
                    .replace("σw=opt", "σ_w optimal for each N")
                    .replace("σw=", "σ_w = ")
                    .replace(" σb=", ", σ_b = ")
                    .replace(" n=", ", n = ")
            ),
            "depth scale ξ",
            &series,
        )?;
    }
    // The paper's Figure 1: every circle point of one N, side by side on one scale.
    let mut by_n: std::collections::BTreeMap<Option<usize>, Vec<&PointSummary>> =
        Default::default();
    for p in points
        .iter()
        .filter(|p| p.curves.iter().any(|c| c.input == "circle"))
    {
        by_n.entry(p.network.states).or_default().push(p);
    }
    for (n, mut ps) in by_n {
        if ps.len() < 2 {
            continue;
        }
        ps.sort_by(|a, b| a.network.sigma_w.total_cmp(&b.network.sigma_w));
        let panels: Vec<Figure1Panel> = ps.iter().map(|p| figure1_panel(p)).collect();
        let p0 = ps[0];
        plots::figure1(
            &folder.join(format!("plots/figure1-n{}", n.unwrap_or(0))),
            png,
            &format!(
                "normalized covariance against Δθ, by layer: N = {}, Δ = {}, A = {}, σ_b = {}, n = {}, L = {}",
                n.map_or("-".into(), |n| n.to_string()),
                p0.network.spacing.map_or("-".into(), |d| sig(d, 4)),
                p0.network.amplitude.map_or("-".into(), |a| sig(a, 4)),
                p0.network.sigma_b,
                p0.width,
                p0.depth
            ),
            &panels,
        )?;
    }
    Ok(())
}

#[cfg(feature = "plots")]
/// The theory's colour in scaling plots.
const RED_SERIES: plotters::style::RGBColor = plotters::style::RGBColor(214, 39, 40);

fn summary_table(points: &[PointSummary], scaling: &[XiScaling]) -> String {
    use crate::analysis::IntervalMethod;
    let mut t = String::new();
    let mut notes: Vec<String> = Vec::new();
    let _ = writeln!(
        t,
        "{:>4} {:<36} {:>9} {:>4} {:>9} {:>10} {:>26} {:>7} {:>7}",
        "#",
        "point",
        "sigma_w",
        "E",
        "c*",
        "xi_theory",
        "xi_emp ± SE [95% CI]",
        "rms z_c",
        "max z_c"
    );
    let mut methods = Vec::new();
    for p in points {
        let xe = match p.xi_emp {
            Some(f) => {
                if !methods.contains(&f.interval) {
                    methods.push(f.interval);
                }
                format!(
                    "{} ± {} [{}, {}]",
                    sig(f.xi, 4),
                    sig(f.xi_se, 2),
                    sig(f.ci_low, 4),
                    sig(f.ci_high, 4)
                )
            }
            None if p.xi_fits.is_empty() => "- (circle inputs)".into(),
            None => {
                let why = p
                    .xi_fits
                    .iter()
                    .find_map(|f| f.error.clone())
                    .unwrap_or_default();
                notes.push(format!("point {}: no xi_emp: {why}", p.index));
                "- (see note)".into()
            }
        };
        let _ = writeln!(
            t,
            "{:>4} {:<36} {:>9.4} {:>4} {:>9.4} {:>10} {:>26} {:>7.2} {:>7.2}",
            p.index,
            p.label,
            p.network.sigma_w,
            p.samples,
            p.c_star,
            sig(p.xi_theory, 4),
            xe,
            p.agreement_c.rms_z,
            p.agreement_c.max_z
        );
    }
    for p in points {
        for b in &p.backward {
            let _ = writeln!(
                t,
                "{:>4} backward M = {:.4} (STE s = {:.4}, t = {}): rms z per-layer |δ|² ratio {:.2}, cumulative |δ^l|²/|δ^L|² {:.2} (max {:.2}), gradient correlation {:.2}",
                p.index,
                b.m_theory,
                b.ste.slope,
                b.ste.threshold,
                b.agreement_ratio.rms_z,
                b.agreement_cumulative.rms_z,
                b.agreement_cumulative.max_z,
                b.agreement_corr.rms_z,
            );
            for v in &b.ntk {
                let est = |k: &str| -> String {
                    let m = v[k]["mean"].as_f64().unwrap_or(f64::NAN);
                    match v[k]["se"].as_f64() {
                        Some(se) => format!("{} ± {}", sig(m, 4), sig(se, 2)),
                        None => format!("{} (one network: no SE)", sig(m, 4)),
                    }
                };
                let th = |k: &str| sig(v[k].as_f64().unwrap_or(f64::NAN), 4);
                let _ = writeln!(
                    t,
                    "{:>4}   c0 = {}: |δ^0|²/|δ^L|² {} (theory {}); NTK Θ(a,a) {} (theory {}), Θ(a,b) {} (theory {})",
                    "",
                    v["c0"],
                    est("norm_cumulative"),
                    th("norm_cumulative_theory"),
                    est("ntk_aa"),
                    th("ntk_aa_theory"),
                    est("ntk_ab"),
                    th("ntk_ab_theory"),
                );
            }
        }
    }
    for s in scaling {
        let _ = writeln!(
            t,
            "xi scaling ({}): N = {:?}: exponent of xi_emp {:.3} ± {:.3}, of xi_theory {:.3} ± {:.3} (vs ln(N + 1))",
            s.group, s.states, s.fit_emp.slope, s.fit_emp.stderr, s.fit_theory.slope, s.fit_theory.stderr
        );
    }
    for m in methods {
        let _ = writeln!(
            t,
            "{}",
            match m {
                IntervalMethod::JackknifeNetworks { networks } => format!(
                    "95% CI of xi_emp: delete-one-network jackknife over {networks} networks, Student t with {} df",
                    networks - 1
                ),
                IntervalMethod::LayersIndependent =>
                    "95% CI of xi_emp: the fit's slope error, layers treated as independent (optimistic)".into(),
            }
        );
    }
    if !points.is_empty() {
        let _ = writeln!(
            t,
            "z scores: (simulation - theory)/SE per layer mapped from Student t (E - 1 df) to the normal deviate of equal tail probability; rms z ≈ 1 when the theory holds"
        );
    }
    for n in notes {
        let _ = writeln!(t, "note: {n}");
    }
    t
}

/// One session on a results folder: the commit record, the finished
/// points' records, and the writes in the order that keeps every file
/// consistent with `meta.json` (see [`folder`]).
struct Session<'a> {
    folder: PathBuf,
    cfg: &'a Config,
    commit: Commit,
    records: std::collections::BTreeMap<usize, PointRecord>,
    clock: Instant,
    wall_before: f64,
    // Read only where plots are drawn (the `plots` feature).
    #[cfg_attr(not(feature = "plots"), allow(dead_code))]
    png: bool,
    #[cfg_attr(not(feature = "plots"), allow(dead_code))]
    plots: bool,
}

impl<'a> Session<'a> {
    fn new(folder: PathBuf, cfg: &'a Config, commit: Commit) -> Self {
        Session {
            png: cfg.outputs.png.unwrap_or(true),
            plots: cfg.outputs.plots.unwrap_or(true),
            wall_before: commit.wall_seconds,
            folder,
            cfg,
            commit,
            records: Default::default(),
            clock: Instant::now(),
        }
    }

    /// Writes the commit record with `status`, naming the points held.
    fn commit(&mut self, status: &str) -> Result<()> {
        let c = &mut self.commit;
        c.status = status.to_string();
        c.complete = status == "complete";
        c.points = self.records.keys().copied().collect();
        c.points_done = c.points.len();
        c.non_finite_points = self
            .records
            .values()
            .filter(|r| !r.summary.non_finite.is_empty())
            .map(|r| r.summary.index)
            .collect();
        c.updated = timestamp();
        c.wall_seconds = self.wall_before + self.clock.elapsed().as_secs_f64();
        c.pid = std::process::id();
        c.host = folder::host_name();
        c.write(&self.folder)
    }

    /// A finished point: plots (staged, renamed), its record, then the
    /// commit record that names it.
    fn add(&mut self, s: &PointSummary) -> Result<()> {
        #[cfg(feature = "plots")]
        if self.plots {
            let png = self.png;
            folder::write_plots(&self.folder, |stage| point_plots(stage, png, s))?;
        }
        let rec = PointRecord::of(s, &self.commit.config_hash);
        folder::write_record(&self.folder, s.index, &rec)?;
        self.records.insert(s.index, rec);
        self.commit("running")
    }

    fn points(&self) -> Vec<PointSummary> {
        self.records.values().map(PointRecord::point).collect()
    }

    /// The aggregates of exactly the held points, then the commit record
    /// with the final status.
    fn finish(&mut self, status: &str) -> Result<(Vec<PointSummary>, Vec<XiScaling>)> {
        let points = self.points();
        let sc = xi_scaling(&points);
        let f = &self.folder;
        write_atomic(&f.join("curves.csv"), curves_csv(&points).as_bytes())?;
        let curves: Vec<_> = points
            .iter()
            .map(|p| serde_json::json!({"point": p.index, "label": p.label, "curves": p.curves}))
            .collect();
        write_atomic(
            &f.join("curves.json"),
            serde_json::to_string_pretty(&curves)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        if points.iter().any(|p| !p.backward.is_empty()) {
            let mut csv = BACKWARD_CSV_HEADER.to_string();
            for r in self.records.values() {
                csv.push_str(&r.backward_rows);
            }
            write_atomic(&f.join("backward.csv"), csv.as_bytes())?;
        }
        let summary = serde_json::json!({"points": points, "xi_scaling": sc});
        write_atomic(
            &f.join("summary.json"),
            serde_json::to_string_pretty(&summary)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        #[cfg(feature = "plots")]
        if self.plots {
            let png = self.png;
            folder::write_plots(f, |stage| scaling_plots(stage, png, &sc, &points))?;
        }
        self.commit(status)?;
        Ok((points, sc))
    }

    /// Marks the folder failed at `point` with `e`, keeping the finished
    /// points (best effort: the original error is what the caller reports).
    fn fail(&mut self, point: Option<usize>, e: &Error) {
        self.commit.error = Some(e.to_string());
        self.commit.failed_point = point;
        if self.finish("failed").is_err() {
            let _ = self.commit("failed");
        }
    }
}

/// A panic inside a point, as an error (the folder is then marked failed).
fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Numerical(format!("internal error (panic): {msg}")))
        }
    }
}

/// Runs the points not yet held, then finishes the folder.
fn execute(
    mut session: Session<'_>,
    points: &[RunPoint],
    backend: &mut dyn Backend,
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    let mut complete = true;
    let todo: Vec<&RunPoint> = points
        .iter()
        .filter(|p| !session.records.contains_key(&p.index))
        .collect();
    for p in todo {
        if hooks.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            complete = false;
            break;
        }
        let outcome = catch_panic(|| run_point(p, session.cfg, backend, hooks, points.len()))
            .and_then(|o| match o {
                Some(s) => {
                    // The layer kernel variant(s) that ran so far, for meta.json.
                    session.commit.kernel = backend.info().kernel;
                    session.add(&s).map(|()| Some(s))
                }
                None => Ok(None),
            });
        match outcome {
            Ok(Some(s)) => (hooks.point_finished)(&s),
            Ok(None) => {
                complete = false;
                break;
            }
            Err(e) => {
                let e = match e {
                    Error::Folder(_) | Error::TooLarge(_) => e,
                    other => {
                        Error::Numerical(format!("point {} ({}): {other}", p.index, p.label()))
                    }
                };
                session.fail(Some(p.index), &e);
                return Err(e);
            }
        }
    }
    let complete = complete && session.records.len() == points.len();
    let status = if complete { "complete" } else { "interrupted" };
    let (done, sc) = match session.finish(status) {
        Ok(x) => x,
        Err(e) => {
            session.fail(None, &e);
            return Err(e);
        }
    };
    let table = summary_table(&done, &sc);
    Ok(RunReport {
        folder: session.folder,
        complete,
        points: done,
        scaling: sc,
        table,
    })
}

/// The text written to config.toml.
fn config_text(cfg: &Config) -> Result<String> {
    let text = toml::to_string_pretty(cfg)
        .map_err(|e| Error::Folder(format!("config cannot be written back: {e}")))?;
    Ok(format!(
        "# The config as run (defaults of the seed and backend filled in).\n{text}"
    ))
}

/// A new folder with config.toml and a first commit record (no points).
fn new_session<'a>(
    cfg: &'a Config,
    out_root: &Path,
    backend: &str,
    adapter: &str,
    note: &str,
    total: usize,
) -> Result<Session<'a>> {
    let dir = folder::create(out_root, &cfg.name)?;
    new_session_in(cfg, dir, backend, adapter, note, total)
}

/// A session in the new, empty folder `dir`: config.toml and a first
/// commit record (no points).
fn new_session_in<'a>(
    cfg: &'a Config,
    dir: PathBuf,
    backend: &str,
    adapter: &str,
    note: &str,
    total: usize,
) -> Result<Session<'a>> {
    let text = config_text(cfg)?;
    write_atomic(&dir.join("config.toml"), text.as_bytes())?;
    let commit = Commit {
        format: folder::FORMAT,
        version: env!("CARGO_PKG_VERSION").into(),
        config_hash: folder::config_hash(&text),
        name: cfg.name.clone(),
        kind: match cfg.kind {
            Kind::Simulation => "simulation".into(),
            Kind::Optimal => "optimal".into(),
            Kind::Training => "training".into(),
        },
        backend: backend.into(),
        adapter: adapter.into(),
        backend_note: note.into(),
        kernel: None,
        seed: cfg.seed(),
        started: timestamp(),
        updated: timestamp(),
        wall_seconds: 0.0,
        status: "running".into(),
        complete: false,
        points_done: 0,
        points_total: total,
        points: Vec::new(),
        non_finite_points: Vec::new(),
        pid: std::process::id(),
        host: folder::host_name(),
        sessions: 1,
        error: None,
        failed_point: None,
    };
    let mut s = Session::new(dir, cfg, commit);
    s.commit("running")?;
    Ok(s)
}

/// A new results folder under `out_root` holding config.toml and a first
/// commit record (status running, no points), for run kinds that keep their
/// own per-point results (training).
pub(crate) fn start_folder(
    cfg: &Config,
    out_root: &Path,
    backend: &str,
    adapter: &str,
    note: &str,
    total: usize,
) -> Result<(PathBuf, Commit)> {
    let s = new_session(cfg, out_root, backend, adapter, note, total)?;
    Ok((s.folder, s.commit))
}

/// `x` with `digits` significant figures (fixed notation between 1e-3 and
/// 1e6, scientific outside); "inf" and "nan" as such.
pub fn sig(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let e = x.abs().log10().floor() as i32;
    if !(-3..6).contains(&e) {
        return format!("{:.*e}", digits.saturating_sub(1), x);
    }
    let decimals = (digits as i32 - 1 - e).max(0) as usize;
    format!("{x:.decimals$}")
}

/// Runs a simulation experiment into a new results folder under `out_root`.
///
/// The sweep is planned first (point limit, sizes, this machine's memory);
/// nothing is created when the plan is refused. Each finished point is
/// committed to the folder; Ctrl-C (or SIGTERM/SIGHUP in the CLI) keeps the
/// finished points and marks the folder `interrupted`; a failure marks it
/// `failed` with the error and the point, and is returned.
pub fn run_experiment(
    cfg: &Config,
    out_root: &Path,
    backend: &mut dyn Backend,
    backend_note: &str,
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    if cfg.kind == Kind::Optimal {
        return run_optimal(cfg, out_root);
    }
    if cfg.kind == Kind::Training {
        return crate::experiment::training::run_training(cfg, out_root, hooks);
    }
    let info = backend.info();
    crate::experiment::plan::plan_run(cfg, info.backend == "gpu")?;
    let points = cfg.points()?;
    let session = new_session(
        cfg,
        out_root,
        &info.backend,
        &info.adapter,
        backend_note,
        points.len(),
    )?;
    execute(session, &points, backend, hooks)
}

/// Reads a results folder's config and commit record, for [`resume_experiment`].
pub fn read_folder(dir: &Path) -> Result<(Config, Commit)> {
    let commit = Commit::read(dir)?;
    if commit.format != folder::FORMAT {
        return Err(Error::Folder(format!(
            "{} has folder format {}, this quantdepth writes format {}: it cannot be resumed",
            dir.display(),
            commit.format,
            folder::FORMAT
        )));
    }
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Folder(format!("cannot read {}: {e}", path.display())))?;
    if folder::config_hash(&text) != commit.config_hash {
        return Err(Error::Folder(format!(
            "{} was changed after the run started (its hash is not the one in meta.json): \
             a resumed run must use the config its points were run with",
            path.display()
        )));
    }
    let cfg = Config::from_toml(&text)?;
    Ok((cfg, commit))
}

/// Continues an unfinished results folder (interrupted, failed, or killed
/// while running): removes what its commit record does not name, runs only
/// the missing points, and rebuilds the aggregates. The files end identical
/// (apart from timings) to those of an uninterrupted run. `backend` must be
/// the kind named in the folder's config.
pub fn resume_experiment(
    dir: &Path,
    backend: &mut dyn Backend,
    backend_note: &str,
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    let (cfg, mut commit) = read_folder(dir)?;
    if commit.status == "running" && !commit.is_stale() {
        return Err(Error::Folder(format!(
            "{} is being run by process {} on {}: wait for it, or stop it first",
            dir.display(),
            commit.pid,
            if commit.host.is_empty() {
                "this machine"
            } else {
                &commit.host
            }
        )));
    }
    if cfg.kind == Kind::Training {
        return Err(Error::Folder(format!(
            "{} is a training run: training runs cannot be resumed yet; run its config.toml again",
            dir.display()
        )));
    }
    let held: std::collections::BTreeSet<usize> = commit.points.iter().copied().collect();
    folder::clean_leftovers(dir, &held)?;
    commit.sessions += 1;
    commit.error = None;
    commit.failed_point = None;
    if cfg.kind == Kind::Optimal {
        let mut s = Session::new(dir.to_path_buf(), &cfg, commit);
        s.commit("running")?;
        if let Some(sf) = crate::experiment::shard::ShardFile::read(dir)? {
            return optimal_shard(s, &cfg, &sf.points);
        }
        return optimal_into(s, &cfg);
    }
    let info = backend.info();
    if info.backend != commit.backend {
        return Err(Error::Folder(format!(
            "{} was run on the {} backend; resuming on {} would not give the same numbers: \
             resume with backend {}",
            dir.display(),
            commit.backend,
            info.backend,
            commit.backend
        )));
    }
    commit.backend_note = backend_note.to_string();
    crate::experiment::plan::plan_run(&cfg, info.backend == "gpu")?;
    let points = cfg.points()?;
    let mut session = Session::new(dir.to_path_buf(), &cfg, commit);
    load_records(&mut session, &points, &held)?;
    // A shard folder runs only its shard's points.
    let points = crate::experiment::shard::restrict(dir, &cfg, points)?;
    session.commit("running")?;
    execute(session, &points, backend, hooks)
}

/// Runs an optimal-initialization scan (theory only).
pub fn run_optimal(cfg: &Config, out_root: &Path) -> Result<RunReport> {
    let ns = cfg.optimal_states()?;
    let s = new_session(cfg, out_root, "theory", "-", "theory only", ns.len())?;
    optimal_into(s, cfg)
}

fn optimal_into(mut s: Session<'_>, cfg: &Config) -> Result<RunReport> {
    match catch_panic(|| optimal_files(&s.folder, cfg)) {
        Ok(table) => {
            let ns = cfg.optimal_states()?;
            s.commit.points_done = ns.len();
            let c = &mut s.commit;
            c.status = "complete".into();
            c.complete = true;
            c.points = (0..ns.len()).collect();
            c.points_done = ns.len();
            c.updated = timestamp();
            c.wall_seconds = s.wall_before + s.clock.elapsed().as_secs_f64();
            c.write(&s.folder)?;
            Ok(RunReport {
                folder: s.folder,
                complete: true,
                points: Vec::new(),
                scaling: Vec::new(),
                table,
            })
        }
        Err(e) => {
            s.commit.error = Some(e.to_string());
            let _ = s.commit("failed");
            Err(e)
        }
    }
}

/// The files of an optimal scan; returns the terminal summary.
fn optimal_files(folder: &Path, cfg: &Config) -> Result<String> {
    let optima = optima_of(cfg, &cfg.optimal_states()?)?;
    optimal_files_of(folder, cfg, &optima)
}

/// The optimum of every N in `ns` (κ from the config), each checked finite.
fn optima_of(cfg: &Config, ns: &[usize]) -> Result<Vec<crate::theory::UniformOptimum>> {
    let kappa = cfg.kappa.unwrap_or(DEFAULT_KAPPA);
    let optima = ns
        .iter()
        .map(|&n| uniform_optimum(n, kappa).map_err(|e| Error::Numerical(format!("N = {n}: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    if let Some(o) = optima
        .iter()
        .find(|o| !(o.chi_max.is_finite() && o.xi_max.is_finite() && o.l_max.is_finite()))
    {
        return Err(Error::Numerical(format!(
            "N = {}: chi_max = {}, xi_max = {}, L_max = {} are not all finite (kappa = {})",
            o.states,
            o.chi_max,
            o.xi_max,
            o.l_max,
            crate::error::fmt_value(kappa)
        )));
    }
    Ok(optima)
}

/// The files of an optimal scan from its optima (N ascending); returns the
/// terminal summary.
fn optimal_files_of(
    folder: &Path,
    cfg: &Config,
    optima: &[crate::theory::UniformOptimum],
) -> Result<String> {
    let kappa = cfg.kappa.unwrap_or(DEFAULT_KAPPA);
    let ns: Vec<usize> = optima.iter().map(|o| o.states).collect();
    let sc = scaling(optima)?;
    // σ_w^opt and q* at amplitude 1 and spacing D̃_opt (q* = 1), the CLI's defaults.
    let mut csv =
        String::from("states,d_opt,chi_max,one_minus_chi_max,xi_max,l_max,sigma_w,q_star\n");
    for o in optima {
        let (sigma_w, q_star) =
            crate::theory::optimal::optimal_sigma_w(o.states, o.d_opt.unwrap_or(1.0), 1.0)?;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            o.states,
            opt(o.d_opt),
            o.chi_max,
            o.one_minus_chi_max,
            o.xi_max,
            o.l_max,
            sigma_w,
            q_star
        );
    }
    write_atomic(&folder.join("optimal.csv"), csv.as_bytes())?;
    write_atomic(
        &folder.join("optimal.json"),
        serde_json::to_string_pretty(&optima)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    write_atomic(
        &folder.join("summary.json"),
        serde_json::to_string_pretty(&serde_json::json!({"kappa": kappa, "scaling": sc}))
            .unwrap_or_default()
            .as_bytes(),
    )?;
    #[cfg(feature = "plots")]
    if cfg.outputs.plots.unwrap_or(true) {
        let png = cfg.outputs.png.unwrap_or(true);
        let pts =
            |f: &dyn Fn(&crate::theory::UniformOptimum) -> Option<f64>| -> Vec<(f64, f64, f64)> {
                optima
                    .iter()
                    .filter_map(|o| f(o).map(|v| ((o.states + 1) as f64, v, 0.0)))
                    .collect()
            };
        let fit_line = |fit: &LinearFit| -> Vec<(f64, f64)> {
            let (a, b) = ((ns[0] + 1) as f64, (ns[ns.len() - 1] + 1) as f64);
            (0..=40)
                .map(|i| {
                    let x = a * (b / a).powf(i as f64 / 40.0);
                    (x, (fit.intercept + fit.slope * x.ln()).exp())
                })
                .collect()
        };
        let two = |label: &str, p: Vec<(f64, f64, f64)>, fit: &LinearFit| {
            [
                Series {
                    label: label.into(),
                    points: p,
                    line: Vec::new(),
                    color: None,
                },
                Series {
                    label: format!("fit: slope {:.4}", fit.slope),
                    points: Vec::new(),
                    line: fit_line(fit),
                    color: Some(RED_SERIES),
                },
            ]
        };
        folder::write_plots(folder, |stage| {
            plots::loglog(
                &stage.join("plots/one-minus-chi-max"),
                png,
                "1 − χ_max against N + 1 (Figure 2, log-log)",
                "1 − χ_max",
                &two(
                    "1 − χ_max",
                    pts(&|o| Some(o.one_minus_chi_max)),
                    &sc.one_minus_chi_max,
                ),
            )?;
            plots::loglog(
                &stage.join("plots/d-opt"),
                png,
                "optimal spacing D_opt = Δ/√q* against N + 1 (Figure 2, log-log)",
                "optimal spacing D_opt",
                &two("D_opt", pts(&|o| o.d_opt), &sc.d_opt),
            )
        })?;
    }
    Ok(format!(
        "optimal scan over {} values of N ({}..{}): ln(1 − χ_max) slope {:.4} ± {:.4}, intercept {:.3}; ln ξ_max slope {:.4} ± {:.4}; ln D̃_opt slope {:.4} ± {:.4}\n",
        ns.len(),
        ns[0],
        ns[ns.len() - 1],
        sc.one_minus_chi_max.slope,
        sc.one_minus_chi_max.stderr,
        sc.one_minus_chi_max.intercept,
        sc.xi_max.slope,
        sc.xi_max.stderr,
        sc.d_opt.slope,
        sc.d_opt.stderr
    ))
}

/// Loads the records of the `held` points into `session` (resume, merge).
fn load_records(
    session: &mut Session<'_>,
    points: &[RunPoint],
    held: &std::collections::BTreeSet<usize>,
) -> Result<()> {
    let dir = session.folder.clone();
    let dir = dir.as_path();
    for &i in held {
        let Some(p) = points.get(i) else {
            return Err(Error::Folder(format!(
                "meta.json names point {i}, but the sweep has {} points",
                points.len()
            )));
        };
        let mut rec: PointRecord = folder::read_record(dir, i)?;
        if rec.config_hash != session.commit.config_hash || rec.summary.index != i {
            return Err(Error::Folder(format!(
                "{} belongs to another run",
                folder::record_path(dir, i).display()
            )));
        }
        rec.summary.network.network = resolve_point(p)?.network;
        session.records.insert(i, rec);
    }
    Ok(())
}

/// Runs shard `shard` of a simulation sweep into the shard folder
/// `<out_root>/<name>-shard-K-of-M` (see [`crate::experiment::shard`]):
/// only the points assigned to it, each exactly as an unsharded run
/// computes it. `quantdepth merge` combines the shard folders.
pub fn run_shard(
    cfg: &Config,
    out_root: &Path,
    shard: crate::experiment::shard::Shard,
    backend: &mut dyn Backend,
    backend_note: &str,
    hooks: &Hooks<'_>,
) -> Result<RunReport> {
    use crate::experiment::shard::{create_folder, shard_points, sweep_costs};
    if cfg.kind == Kind::Optimal {
        let mine = shard_points(&sweep_costs(cfg)?, shard);
        let dir = create_folder(out_root, &cfg.name, shard, mine.clone())?;
        let s = new_session_in(cfg, dir, "theory", "-", "theory only", mine.len())?;
        return optimal_shard(s, cfg, &mine);
    }
    if cfg.kind == Kind::Training {
        return Err(Error::invalid(
            "--shard",
            shard,
            "kind = \"training\" runs are not sharded yet: run the config unsharded, or split its \
             sweep into several configs",
        ));
    }
    let info = backend.info();
    crate::experiment::plan::plan_run(cfg, info.backend == "gpu")?;
    let points = cfg.points()?;
    let mine = shard_points(&sweep_costs(cfg)?, shard);
    let dir = create_folder(out_root, &cfg.name, shard, mine.clone())?;
    let mine: std::collections::BTreeSet<usize> = mine.into_iter().collect();
    let points: Vec<RunPoint> = points
        .into_iter()
        .filter(|p| mine.contains(&p.index))
        .collect();
    let session = new_session_in(
        cfg,
        dir,
        &info.backend,
        &info.adapter,
        backend_note,
        points.len(),
    )?;
    execute(session, &points, backend, hooks)
}

/// Finishes a folder whose commit record names every point of its sweep
/// (a merged folder): rebuilds the aggregates, the ξ scaling and its plots
/// from the point records, and marks it complete.
pub fn finish_folder(dir: &Path) -> Result<RunReport> {
    let (cfg, commit) = read_folder(dir)?;
    if cfg.kind == Kind::Optimal {
        let ns = cfg.optimal_states()?;
        if commit.points.len() != ns.len() {
            return Err(Error::Folder(format!(
                "{} holds {} of its {} values of N: it cannot be finished",
                dir.display(),
                commit.points.len(),
                ns.len()
            )));
        }
        let mut optima = Vec::with_capacity(ns.len());
        for (i, &n) in ns.iter().enumerate() {
            let rec: OptimalRecord = folder::read_record(dir, i)?;
            if rec.config_hash != commit.config_hash || rec.optimum.states != n {
                return Err(Error::Folder(format!(
                    "{} belongs to another run",
                    folder::record_path(dir, i).display()
                )));
            }
            optima.push(rec.optimum);
        }
        let table = optimal_files_of(dir, &cfg, &optima)?;
        let s = Session::new(dir.to_path_buf(), &cfg, commit);
        return theory_complete(s, (0..ns.len()).collect(), table);
    }
    let points = cfg.points()?;
    let held: std::collections::BTreeSet<usize> = commit.points.iter().copied().collect();
    if held.len() != points.len() {
        return Err(Error::Folder(format!(
            "{} holds {} of its {} points: it cannot be finished",
            dir.display(),
            held.len(),
            points.len()
        )));
    }
    let mut session = Session::new(dir.to_path_buf(), &cfg, commit);
    load_records(&mut session, &points, &held)?;
    let (done, sc) = session.finish("complete")?;
    let table = summary_table(&done, &sc);
    Ok(RunReport {
        folder: dir.to_path_buf(),
        complete: true,
        points: done,
        scaling: sc,
        table,
    })
}

/// One N of a sharded optimal scan, as stored in `points/pointNNN.cbor`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OptimalRecord {
    /// Folder format.
    pub format: u32,
    /// Hash of the config as run.
    pub config_hash: String,
    /// The optimum of this N.
    pub optimum: crate::theory::UniformOptimum,
}

/// A shard of an optimal scan: the optima of its values of N, one record
/// each; the scaling fits need every N and are made by `merge`.
fn optimal_shard(s: Session<'_>, cfg: &Config, mine: &[usize]) -> Result<RunReport> {
    let ns = cfg.optimal_states()?;
    let mut wanted = Vec::with_capacity(mine.len());
    for &i in mine {
        wanted.push(*ns.get(i).ok_or_else(|| {
            Error::Folder(format!(
                "{}: shard.json names N number {i}, but the scan has {} values of N",
                s.folder.display(),
                ns.len()
            ))
        })?);
    }
    let optima = optima_of(cfg, &wanted)?;
    for (&i, o) in mine.iter().zip(&optima) {
        let rec = OptimalRecord {
            format: folder::FORMAT,
            config_hash: s.commit.config_hash.clone(),
            optimum: *o,
        };
        folder::write_record(&s.folder, i, &rec)?;
    }
    let table = format!(
        "optimal scan, shard of {} values of N ({:?}); `quantdepth merge` fits the scaling over all shards\n",
        wanted.len(),
        wanted
    );
    theory_complete(s, mine.to_vec(), table)
}

/// Marks a theory-only folder complete with `points` held.
fn theory_complete(mut s: Session<'_>, points: Vec<usize>, table: String) -> Result<RunReport> {
    let c = &mut s.commit;
    c.status = "complete".into();
    c.complete = true;
    c.points_done = points.len();
    c.points = points;
    c.updated = timestamp();
    c.wall_seconds = s.wall_before + s.clock.elapsed().as_secs_f64();
    c.write(&s.folder)?;
    Ok(RunReport {
        folder: s.folder,
        complete: true,
        points: Vec::new(),
        scaling: Vec::new(),
        table,
    })
}
