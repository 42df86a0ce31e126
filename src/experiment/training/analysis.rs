//! The analysis of a training run: per group of cells (N, σ_w, width,
//! learning rate, training length), the empirical trainable depth L_emp with
//! a 95 % interval from seeds, its exponent against N + 1 beside ξ's, and
//! the terminal table.

use crate::experiment::training::plan::TrainPoint;
use crate::theory::scaling::{linear_fit, LinearFit};
use crate::train::data::CLASSES;
use crate::train::model::Init;
use crate::train::Report;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

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
    /// Mean loss of the untrained network on the first training batch.
    pub initial_loss: f64,
    /// True when training diverged (see [`divergence`]; the accuracies are
    /// still what the network scores).
    pub diverged: bool,
    /// Why it counts as diverged, when it does.
    pub divergence: Option<String>,
}

/// A training loss above this factor times the initial loss counts as
/// diverging (softmax cross-entropy starts near ln 10 ≈ 2.3 for ten classes;
/// a trained network's is below it).
pub const DIVERGENCE_FACTOR: f64 = 10.0;

/// Consecutive reports above [`DIVERGENCE_FACTOR`] × the initial loss that
/// mark a network diverged (all of them when fewer were taken).
pub const DIVERGENCE_REPORTS: usize = 2;

/// Why a network's reports say it diverged, or `None`: a non-finite
/// training or test loss, or a training loss above [`DIVERGENCE_FACTOR`] ×
/// `initial` for [`DIVERGENCE_REPORTS`] consecutive reports (or at every
/// report when fewer were taken).
pub fn divergence(reports: &[Report], initial: f64) -> Option<String> {
    if let Some(r) = reports
        .iter()
        .find(|r| !(r.loss.is_finite() && r.test_loss.is_finite()))
    {
        return Some(format!("non-finite loss at step {}", r.step));
    }
    let k = DIVERGENCE_REPORTS.min(reports.len());
    if k == 0 || !(initial.is_finite() && initial > 0.0) {
        return None;
    }
    let limit = DIVERGENCE_FACTOR * initial;
    let mut run = 0;
    for r in reports {
        if r.loss > limit {
            run += 1;
            if run >= k {
                return Some(format!(
                    "loss {:.3e} at step {}, above {DIVERGENCE_FACTOR}× the initial loss {:.3} \
                     for {k} consecutive report(s)",
                    r.loss, r.step, initial
                ));
            }
        } else {
            run = 0;
        }
    }
    None
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
    /// Learning rate as given: the group's key, and training.csv's
    /// `lr_config` (with `lr_deep` the deep networks train with another).
    pub lr: f64,
    /// The learning rates the group's networks trained with (training.csv's
    /// `lr`), ascending: `[lr]`, or `lr` and `lr_deep` when some depths
    /// reach `lr_deep_from`.
    pub lr_used: Vec<f64>,
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

/// The test accuracy of `p` after `steps` steps, if reported then.
pub(crate) fn acc_at(p: &TrainedPoint, steps: usize) -> Option<f64> {
    p.reports
        .iter()
        .find(|r| r.step == steps)
        .map(|r| r.test_acc)
}

/// σ_w as the config gave it, with its ratio when not 1.
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
        let mut lr_used: Vec<f64> = ps.iter().map(|p| p.lr).collect();
        lr_used.sort_by(f64::total_cmp);
        lr_used.dedup();
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
            lr_used,
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

/// What the points of a group share: σ_w, width, learning rate, length.
pub(crate) fn group_key(t: &TrainableDepth) -> String {
    format!(
        "σw={} n={} {} steps={}",
        t.sigma_w,
        t.width,
        lr_label(t),
        t.steps
    )
}

/// "lr=0.01", or with `lr_deep` "lr=0.01 (used 0.0005, 0.01)": the group's
/// learning rate as given and those its networks trained with, as in
/// training.csv's `lr_config` and `lr` columns.
fn lr_label(t: &TrainableDepth) -> String {
    if t.lr_used.len() == 1 && t.lr_used[0] == t.lr {
        format!("lr={}", t.lr)
    } else {
        let used: Vec<String> = t.lr_used.iter().map(f64::to_string).collect();
        format!("lr={} (used {})", t.lr, used.join(", "))
    }
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

/// The terminal table: L_emp per group, then the exponents.
pub(crate) fn table(tds: &[TrainableDepth], ex: &[Exponent]) -> String {
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
            format!("σw={} n={} {}", d.sigma_w, d.width, lr_label(d)),
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

    fn reports(losses: &[f64]) -> Vec<Report> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &loss)| Report {
                step: 10 * (i + 1),
                train_acc: 0.1,
                test_acc: 0.1,
                loss,
                test_loss: 1.0,
            })
            .collect()
    }

    /// Initial loss 2.3: the limit is 23. A finite 2.8e30 (lr = 1e30) for
    /// two reports is divergence; reports above it that are not consecutive
    /// are not; a single report above it is, when it is the only one; NaN is.
    #[test]
    fn divergence_is_a_loss_far_above_the_initial_for_consecutive_reports() {
        let d = divergence(&reports(&[2.8e30, 2.7e30]), 2.3).unwrap();
        assert!(
            d.contains("at step 20") && d.contains("initial loss 2.300"),
            "{d}"
        );
        assert_eq!(divergence(&reports(&[1.0, 30.0, 1.0, 30.0]), 2.3), None);
        assert_eq!(divergence(&reports(&[2.0, 1.5, 22.9, 22.9]), 2.3), None);
        assert!(divergence(&reports(&[30.0]), 2.3).is_some());
        assert!(divergence(&reports(&[1.0, f64::NAN]), 2.3)
            .unwrap()
            .contains("non-finite loss at step 20"));
        assert_eq!(divergence(&[], 2.3), None);
        assert_eq!(divergence(&reports(&[30.0, 30.0]), f64::NAN), None);
    }
}
