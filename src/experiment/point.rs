//! One point of a simulation sweep: its network resolved (σ_w^opt), the
//! simulation beside the theory's depth curves, ξ_emp fitted per c⁰, the
//! agreement scores, and the backward passes the config asks for.

use crate::analysis::predicted::{predict_xi_emp, Experiment, XiPrediction, DEFAULT_REPLICATES};
use crate::analysis::{checked_agreement, fit_depth_scale_networks};
use crate::error::{Error, Result};
use crate::experiment::config::{BackwardConfig, Config, InputChoice, RunPoint, SigmaW};
use crate::experiment::records::{
    non_finite, BackwardResult, Curve, CurveRow, Hooks, PointSummary, XiFit,
};
use crate::setup::{ActivationChoice, NetworkChoice, ResolvedNetwork};

use crate::sim::{self, Backend, Control, Estimate, Inputs, SimSpec, Weights};
use crate::theory::finite_width::expand;
use crate::theory::maps::CurvePoint;
use std::sync::atomic::AtomicBool;

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

/// The curves of a simulated point beside the theory's: one per c⁰ (pairs),
/// one per angle offset (circle).
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
                .map(|(e, t)| curve_row(e.layer, &e.q, &e.c, None, t))
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
                    .map(|(e, t)| curve_row(e.layer, &e.q, &e.corr[d], Some(&e.cov[d]), t))
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// The depth a point runs given its ξ: ⌈depth_per_xi · ξ⌉ clamped to
/// 1..=depth when `depth_per_xi` is set (and ξ finite), else the config's depth.
fn depth_from_xi(p: &RunPoint, xi: f64) -> usize {
    match p.depth_per_xi {
        Some(k) if xi.is_finite() => ((k * xi).ceil() as usize).clamp(1, p.depth),
        _ => p.depth,
    }
}

/// The depth point `p` will actually run: with `depth_per_xi`, ⌈k·ξ⌉ of its
/// network (capped by `depth`), from the theory exactly as [`run_point`]
/// computes it; otherwise `depth`. Plans and shard costs use it, so they
/// count the layers that run, not the cap.
pub fn run_depth(p: &RunPoint) -> Result<usize> {
    if p.depth_per_xi.is_none() {
        return Ok(p.depth);
    }
    let r = resolve_point(p)?;
    let c_star = r.network.c_star(r.q_star)?;
    Ok(depth_from_xi(p, r.network.depth_scale(r.q_star, c_star)))
}

/// One layer of a curve: the simulation's q̂, ĉ (and, circle inputs, the
/// covariance) beside the theory's q^l, c^l (and q^l c^l).
fn curve_row(
    layer: usize,
    q: &Estimate,
    c: &Estimate,
    cov: Option<&Estimate>,
    t: &CurvePoint,
) -> CurveRow {
    CurveRow {
        layer,
        q_mean: q.mean,
        q_se: q.se,
        q_theory: t.q_a,
        c_mean: c.mean,
        c_se: c.se,
        c_theory: t.c,
        cov_mean: cov.map(|v| v.mean),
        cov_se: cov.and_then(|v| v.se),
        cov_theory: cov.map(|_| t.q_a * t.c),
    }
}

/// Runs point `p` of a sweep of `total` points: `None` when it was
/// interrupted (nothing of it is kept).
pub(crate) fn run_point(
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
    let depth = depth_from_xi(p, xi);
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
    let (xi_predicted, xi_predicted_note) =
        match predicted_xi_emp(&r, &spec, &xi_fits, xi_emp, xi, cfg.seed() ^ p.index as u64) {
            Ok(v) => (v, None),
            Err(e) => (None, Some(e.to_string())),
        };
    let pairs = match &spec.inputs {
        Inputs::Pairs { pairs, .. } => *pairs,
        Inputs::Circle { .. } => 1,
    };
    let (finite_width, fw_note) = match crate::experiment::finite_width::compare(
        &r,
        spec.weights,
        p.width,
        pairs,
        &out.stats.pairs,
    ) {
        Ok(v) => (v, None),
        Err(e) => (Vec::new(), Some(format!("no finite-width comparison: {e}"))),
    };
    let xi_predicted_note = xi_predicted_note.or(fw_note);
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
    let backward = match (&cfg.backward, &p.inputs) {
        (Some(bc), InputChoice::Pairs { c0, .. }) => {
            match backward_passes(bc, &r, &spec, c0, out.stats.samples, backend, hooks.cancel)? {
                Some(b) => b,
                None => return Ok(None),
            }
        }
        _ => Vec::new(),
    };
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
        xi_predicted,
        xi_predicted_note,
        finite_width,
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

/// The finite-width prediction of ξ_emp for the curve that gave `xi_emp`
/// (analysis::predicted): `Ok(None)` without a ξ_emp, an error (kept as the
/// point's note) where the expansion does not apply.
fn predicted_xi_emp(
    r: &ResolvedNetwork,
    spec: &SimSpec,
    fits: &[XiFit],
    xi_emp: Option<crate::analysis::DepthScaleFit>,
    xi: f64,
    seed: u64,
) -> Result<Option<XiPrediction>> {
    let Some(emp) = xi_emp else {
        return Ok(None);
    };
    if spec.weights != Weights::Gaussian {
        return Err(Error::Numerical(format!(
            "no predicted xi_emp: the finite-width expansion models Gaussian weights only, not {}",
            spec.weights.name()
        )));
    }
    let (Inputs::Pairs { pairs, .. }, Some(fit)) =
        (&spec.inputs, fits.iter().find(|f| f.fit == Some(emp)))
    else {
        return Ok(None);
    };
    let expansion = expand(&r.network, r.q0, fit.c0, spec.depth)?;
    let exp = Experiment {
        width: spec.width,
        pairs: *pairs,
        networks: spec.samples,
        replicates: DEFAULT_REPLICATES,
        seed,
    };
    predict_xi_emp(&expansion, xi, &exp).map(Some)
}

/// The backward passes `bc` of a point with pair inputs `c0` simulated as
/// `spec` (`samples` networks finished), one per target backward factor M:
/// the simulation's gradient curves beside the theory's. `None` when
/// interrupted.
fn backward_passes(
    bc: &BackwardConfig,
    r: &ResolvedNetwork,
    spec: &SimSpec,
    c0: &[f64],
    samples: usize,
    backend: &mut dyn Backend,
    cancel: &AtomicBool,
) -> Result<Option<Vec<BackwardResult>>> {
    let mut backward = Vec::new();
    let net = &r.network;
    let depth = spec.depth;
    use crate::theory::backward::{backward_curve, backward_factor, unit_slope, Ste};
    let t = bc.ste_threshold.unwrap_or(1.0);
    for &m_target in bc.m.as_deref().unwrap_or(&[1.0]) {
        let ste = Ste::new(m_target.sqrt() * unit_slope(net, r.q_star, t)?, t)?;
        let curves = match backend.backward(spec, &ste, cancel) {
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
            agreement_ratio: checked_agreement(&er, &tr, samples),
            agreement_corr: checked_agreement(&ec, &tc, samples),
            agreement_cumulative: checked_agreement(&en, &tn, samples),
            curves: pairs_out,
        });
    }
    Ok(Some(backward))
}
