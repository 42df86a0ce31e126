//! The results of a simulation run: per point, its curves, ξ fits,
//! agreement scores and backward passes ([`PointSummary`]), the record a
//! finished point leaves in the folder ([`PointRecord`]), the ξ scaling
//! across points, and the report of a run.

use crate::analysis::{Agreement, DepthScaleFit};
use crate::setup::ResolvedNetwork;
use crate::theory::scaling::LinearFit;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

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
    /// The ξ_emp the finite-width theory predicts this experiment to
    /// measure, for the c⁰ of `xi_emp` (Gaussian weights, quantized
    /// activations; analysis::predicted).
    #[serde(default)]
    pub xi_predicted: Option<crate::analysis::predicted::XiPrediction>,
    /// Why there is no prediction, when there is a ξ_emp but none.
    #[serde(default)]
    pub xi_predicted_note: Option<String>,
    /// Each pair curve beside the finite-width (1/n) theory (Gaussian
    /// weights, quantized activations; experiment::finite_width).
    #[serde(default)]
    pub finite_width: Vec<crate::experiment::finite_width::FiniteWidthCurve>,
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
    /// The summary with its curves.
    pub fn point(&self) -> PointSummary {
        let mut p = self.summary.clone();
        p.curves = self.curves.clone();
        p
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
        // With one network the scores are undefined by design (NaN), not
        // a numerical failure.
        if a.samples >= 2 {
            check(format!("{name}.max_z"), a.max_z);
            check(format!("{name}.rms_z"), a.rms_z);
        }
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
            if a.samples >= 2 {
                check(format!("{name}.max_z ({at})"), a.max_z);
                check(format!("{name}.rms_z ({at})"), a.rms_z);
            }
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
