//! The analysis of a training run: per family (N, σ_w, width), training
//! length and learning-rate choice (each lr, and the best lr per depth by
//! training loss), the trainable depth judged two ways (halfway to chance
//! against one target per scope, and deepest above chance) on training and
//! test accuracy, with bootstrap intervals ([`boundary`](super::boundary));
//! the slope of ln L_emp against ln ξ with its interval and verdict; the
//! length from which L_emp stops moving; the terminal table.
//!
//! Long because the study's rows, slopes, settling and table, and the divergence rule
//! with its tests, read the same families; the statistics are in boundary.rs.

use crate::experiment::training::boundary::{
    analyse, verdict, Boundary, Family, LrChoice, Metric, Obs, SlopeFit, REPLICATES, VERDICT_WIDTH,
};
use crate::experiment::training::plan::TrainPoint;
use crate::theory::scaling::linear_fit;
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
    /// The first layer's weight scale (σ_w unless `input_sigma` says otherwise).
    pub input_sigma: f64,
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

/// The trainable depth of one family at one length under one lr choice.
#[derive(Debug, Clone, Serialize)]
pub struct TrainableDepth {
    /// N.
    pub states: usize,
    /// σ_w as given, with the ratio.
    pub sigma_w: String,
    /// Width.
    pub width: usize,
    /// Learning rate as given; None: per depth the best of the lr grid by
    /// training loss at this length's report (`chosen_lr`).
    pub lr: Option<f64>,
    /// Training length (steps).
    pub steps: usize,
    /// ξ of the theory.
    pub xi: f64,
    /// Networks per cell.
    pub seeds: usize,
    /// Depths, ascending.
    pub depths: Vec<usize>,
    /// Mean test accuracy per depth over seeds.
    pub test_acc: Vec<f64>,
    /// Its standard error (None with one seed).
    pub test_acc_se: Vec<Option<f64>>,
    /// Mean training accuracy per depth.
    pub train_acc: Vec<f64>,
    /// Its standard error.
    pub train_acc_se: Vec<Option<f64>>,
    /// The lr chosen per depth (best-over-lr rows only).
    pub chosen_lr: Option<Vec<Option<f64>>>,
    /// L_emp, halfway on test accuracy (= `halfway_test.l_emp`).
    pub l_emp: Option<f64>,
    /// Its 95 % bootstrap interval when both ends are inside the grid.
    pub l_emp_ci: Option<(f64, f64)>,
    /// L_emp/ξ.
    pub l_emp_over_xi: Option<f64>,
    /// Why L_emp or its interval is missing.
    pub note: Option<String>,
    /// Halfway on test accuracy.
    pub halfway_test: Boundary,
    /// Halfway on training accuracy.
    pub halfway_train: Boundary,
    /// Deepest depth whose test accuracy exceeds chance by 3 standard errors.
    pub above_chance_test: Option<usize>,
    /// The same on training accuracy.
    pub above_chance_train: Option<usize>,
}

/// The slope of ln L_emp against ln ξ over one sweep, with its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Slope {
    /// "N" (over N at fixed σ_w) or "sigma_w" (over σ_w at fixed N).
    pub over: String,
    /// What the members share.
    pub group: String,
    /// Width, length, lr (None: best over lr), metric.
    pub width: usize,
    /// Length.
    pub steps: usize,
    /// lr as given; None: best over lr.
    pub lr: Option<f64>,
    /// Training or test accuracy.
    pub metric: Metric,
    /// Members: (N, σ_w label, ξ, L_emp).
    pub members: Vec<(usize, String, f64, f64)>,
    /// ln L_emp against ln ξ.
    pub slope: SlopeFit,
    /// ln L_emp against ln(N + 1) (sweeps over N).
    pub exponent_n1: Option<SlopeFit>,
    /// ξ's exponent against ln(N + 1) over the same N (exact theory).
    pub xi_exponent_n1: Option<f64>,
    /// [`verdict`] of the slope's interval.
    pub verdict: String,
    /// Sweep members without an L_emp (no crossing inside their depths), left
    /// out of the fit, with why.
    pub excluded: Vec<String>,
}

/// (length in steps, L_emp, interval low, interval high).
pub type AtLength = (usize, Option<f64>, Option<f64>, Option<f64>);

/// A sweep: (over N?, the shared σ_w label or N, width, length, lr bits).
type SweepKey = (bool, String, usize, usize, Option<u64>);

/// L_emp of one family and lr choice at every length, and where it settles.
#[derive(Debug, Clone, Serialize)]
pub struct Settling {
    /// N.
    pub states: usize,
    /// σ_w label.
    pub sigma_w: String,
    /// Width.
    pub width: usize,
    /// lr (None: best over lr).
    pub lr: Option<f64>,
    /// Training or test accuracy.
    pub metric: Metric,
    /// (length, L_emp, interval low, interval high).
    pub by_length: Vec<AtLength>,
    /// The first length from which every later length's L_emp lies inside
    /// this length's interval (None: still moving at the longest length).
    pub settled_at: Option<usize>,
}

/// Everything the analysis of a run gives.
#[derive(Debug, Clone, Serialize)]
pub struct Study {
    /// Chance accuracy.
    pub chance: f64,
    /// Bootstrap replicates.
    pub replicates: usize,
    /// The verdict rule, in words.
    pub verdict_rule: String,
    /// Per family, length and lr choice.
    pub trainable_depth: Vec<TrainableDepth>,
    /// Slopes of ln L_emp against ln ξ.
    pub slopes: Vec<Slope>,
    /// L_emp against training length.
    pub settling: Vec<Settling>,
}

/// The accuracy report of `p` after `steps` steps, if reported then.
pub(crate) fn report_at(p: &TrainedPoint, steps: usize) -> Option<&Report> {
    p.reports.iter().find(|r| r.step == steps)
}

/// σ_w as the config gave it, with its ratio when not 1.
pub(crate) fn sigma_label(p: &TrainPoint) -> String {
    if p.sigma_w_ratio == 1.0 {
        p.sigma_w.label()
    } else {
        format!("{}×{}", p.sigma_w.label(), p.sigma_w_ratio)
    }
}

/// The families of `points` at each length.
pub fn families(points: &[TrainedPoint], lengths: &[usize]) -> Vec<Family> {
    let mut by: BTreeMap<(usize, String, usize), Vec<&TrainedPoint>> = BTreeMap::new();
    for p in points {
        by.entry((p.point.states, sigma_label(&p.point), p.point.width))
            .or_default()
            .push(p);
    }
    let mut out = Vec::new();
    for ((states, sigma_w, width), ps) in by {
        let sorted = |mut v: Vec<u64>| {
            v.sort_unstable();
            v.dedup();
            v
        };
        let depths: Vec<usize> = sorted(ps.iter().map(|p| p.depth as u64).collect())
            .into_iter()
            .map(|d| d as usize)
            .collect();
        let seeds = sorted(ps.iter().map(|p| p.point.seed).collect());
        let mut lrs: Vec<f64> = ps.iter().map(|p| p.point.lr).collect();
        lrs.sort_by(f64::total_cmp);
        lrs.dedup();
        for &steps in lengths {
            let mut obs = vec![Obs::MISSING; lrs.len() * depths.len() * seeds.len()];
            for p in &ps {
                let i = lrs.iter().position(|&l| l == p.point.lr).unwrap_or(0);
                let d = depths.iter().position(|&d| d == p.depth).unwrap_or(0);
                let s = seeds.iter().position(|&s| s == p.point.seed).unwrap_or(0);
                if let Some(r) = report_at(p, steps) {
                    obs[(i * depths.len() + d) * seeds.len() + s] = Obs {
                        train_acc: r.train_acc,
                        test_acc: r.test_acc,
                        loss: r.loss,
                    };
                }
            }
            out.push(Family {
                states,
                sigma_w: sigma_w.clone(),
                width,
                steps,
                xi: ps[0].init.xi,
                lrs: lrs.clone(),
                depths: depths.clone(),
                seeds: seeds.len(),
                obs,
            });
        }
    }
    out
}

fn opt(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Analyses a run: `eval_images` = (training, test) images evaluated per network.
pub fn study(points: &[TrainedPoint], lengths: &[usize], eval_images: (usize, usize)) -> Study {
    let chance = 1.0 / CLASSES as f64;
    let fams = families(points, lengths);
    let an = analyse(&fams, chance, eval_images, REPLICATES, 0x5eed);
    let lr_of = |f: &Family, c: LrChoice| match c {
        LrChoice::Fixed(i) => Some(f.lrs[i]),
        LrChoice::Best => None,
    };
    let trainable_depth: Vec<TrainableDepth> = an
        .entries
        .iter()
        .map(|e| {
            let f = &fams[e.family];
            let c = &e.curve;
            let b = &e.test;
            TrainableDepth {
                states: f.states,
                sigma_w: f.sigma_w.clone(),
                width: f.width,
                lr: lr_of(f, e.choice),
                steps: f.steps,
                xi: f.xi,
                seeds: f.seeds,
                depths: f.depths.clone(),
                test_acc: c.test.clone(),
                test_acc_se: c.test_se.iter().map(|&x| opt(x)).collect(),
                train_acc: c.train.clone(),
                train_acc_se: c.train_se.iter().map(|&x| opt(x)).collect(),
                chosen_lr: (e.choice == LrChoice::Best)
                    .then(|| c.lr.iter().map(|i| i.map(|i| f.lrs[i])).collect()),
                l_emp: b.l_emp,
                l_emp_ci: b.ci_lo.zip(b.ci_hi),
                l_emp_over_xi: b.l_emp.map(|l| l / f.xi),
                note: b.note.clone(),
                halfway_test: e.test.clone(),
                halfway_train: e.train.clone(),
                above_chance_test: e.above_chance_test,
                above_chance_train: e.above_chance_train,
            }
        })
        .collect();
    // Sweeps: over N at fixed (σ_w, width, length, lr choice), and over σ_w at
    // fixed (N, width, length, lr choice).
    let mut sweeps: BTreeMap<SweepKey, Vec<usize>> = BTreeMap::new();
    for (k, e) in an.entries.iter().enumerate() {
        let f = &fams[e.family];
        let lr = lr_of(f, e.choice).map(f64::to_bits);
        sweeps
            .entry((true, f.sigma_w.clone(), f.width, f.steps, lr))
            .or_default()
            .push(k);
        sweeps
            .entry((false, f.states.to_string(), f.width, f.steps, lr))
            .or_default()
            .push(k);
    }
    let mut slopes = Vec::new();
    for ((over_n, key, width, steps, lr), members) in sweeps {
        let distinct = |g: &dyn Fn(&Family) -> String| {
            let mut v: Vec<String> = members
                .iter()
                .map(|&k| g(&fams[an.entries[k].family]))
                .collect();
            v.sort();
            v.dedup();
            v.len()
        };
        if over_n && distinct(&|f| f.states.to_string()) < 3
            || !over_n && distinct(&|f| f.sigma_w.clone()) < 3
        {
            continue;
        }
        for metric in [Metric::Test, Metric::Train] {
            let bnd = |k: usize| match metric {
                Metric::Test => &an.entries[k].test,
                Metric::Train => &an.entries[k].train,
            };
            let with: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&k| bnd(k).l_emp.is_some())
                .collect();
            let Some(fit) = an.slope(&fams, &with, metric, |f| f.xi) else {
                continue;
            };
            let excluded: Vec<String> = members
                .iter()
                .filter(|&&k| bnd(k).l_emp.is_none())
                .map(|&k| {
                    let f = &fams[an.entries[k].family];
                    format!(
                        "N = {}, σw = {}: {}",
                        f.states,
                        f.sigma_w,
                        bnd(k).note.clone().unwrap_or_default()
                    )
                })
                .collect();
            let n1 = over_n
                .then(|| an.slope(&fams, &with, metric, |f| (f.states + 1) as f64))
                .flatten();
            let xs: Vec<f64> = with
                .iter()
                .map(|&k| ((fams[an.entries[k].family].states + 1) as f64).ln())
                .collect();
            let ys: Vec<f64> = with
                .iter()
                .map(|&k| fams[an.entries[k].family].xi.ln())
                .collect();
            slopes.push(Slope {
                over: if over_n { "N" } else { "sigma_w" }.into(),
                group: if over_n {
                    format!("σw={key}")
                } else {
                    format!("N={key}")
                },
                width,
                steps,
                lr: lr.map(f64::from_bits),
                metric,
                members: with
                    .iter()
                    .map(|&k| {
                        let f = &fams[an.entries[k].family];
                        (
                            f.states,
                            f.sigma_w.clone(),
                            f.xi,
                            bnd(k).l_emp.unwrap_or(f64::NAN),
                        )
                    })
                    .collect(),
                verdict: if excluded.is_empty() {
                    verdict(fit.ci)
                } else {
                    format!(
                        "{} (over the members with an L_emp; {} without one)",
                        verdict(fit.ci),
                        excluded.len()
                    )
                },
                excluded,
                slope: fit,
                exponent_n1: n1,
                xi_exponent_n1: if over_n {
                    linear_fit(&xs, &ys).ok().map(|f| f.slope)
                } else {
                    None
                },
            });
        }
    }
    // Settling over lengths.
    let mut runs: BTreeMap<(usize, String, usize, Option<u64>), Vec<usize>> = BTreeMap::new();
    for (k, e) in an.entries.iter().enumerate() {
        let f = &fams[e.family];
        runs.entry((
            f.states,
            f.sigma_w.clone(),
            f.width,
            lr_of(f, e.choice).map(f64::to_bits),
        ))
        .or_default()
        .push(k);
    }
    let mut settling = Vec::new();
    for ((states, sigma_w, width, lr), mut ks) in runs {
        ks.sort_by_key(|&k| fams[an.entries[k].family].steps);
        for metric in [Metric::Test, Metric::Train] {
            let by_length: Vec<AtLength> = ks
                .iter()
                .map(|&k| {
                    let e = &an.entries[k];
                    let b = if metric == Metric::Test {
                        &e.test
                    } else {
                        &e.train
                    };
                    (fams[e.family].steps, b.l_emp, b.ci_lo, b.ci_hi)
                })
                .collect();
            let settled_at = (0..by_length.len().saturating_sub(1))
                .find(|&i| {
                    let (_, l, lo, hi) = by_length[i];
                    l.is_some()
                        && by_length[i + 1..]
                            .iter()
                            .all(|&(_, lj, _, _)| match (lj, lo, hi) {
                                (Some(x), Some(a), Some(b)) => (a..=b).contains(&x),
                                _ => false,
                            })
                })
                .map(|i| by_length[i].0);
            settling.push(Settling {
                states,
                sigma_w: sigma_w.clone(),
                width,
                lr: lr.map(f64::from_bits),
                metric,
                by_length,
                settled_at,
            });
        }
    }
    Study {
        chance,
        replicates: REPLICATES,
        verdict_rule: format!(
            "slope of ln L_emp against ln ξ, 95 % bootstrap interval [lo, hi]: \"not ∝ ξ\" when 1 is outside it; \"consistent with ∝ ξ\" when 1 is inside and hi − lo ≤ {VERDICT_WIDTH}; else \"undecided at this budget\""
        ),
        trainable_depth,
        slopes,
        settling,
    }
}

/// What the rows of a sweep share: σ_w, width, learning rate, length.
pub(crate) fn group_key(t: &TrainableDepth) -> String {
    format!(
        "σw={} n={} lr={} steps={}",
        t.sigma_w,
        t.width,
        lr_label(t.lr),
        t.steps
    )
}

/// "0.05", or "best" for best-over-lr rows.
pub(crate) fn lr_label(lr: Option<f64>) -> String {
    lr.map_or("best".into(), |l| l.to_string())
}

fn interval(l: Option<f64>, lo: Option<f64>, hi: Option<f64>) -> String {
    let f = |x: Option<f64>, open: &str| x.map_or(open.to_string(), |v| format!("{v:.1}"));
    match l {
        Some(l) => format!("{l:.1} [{}, {}]", f(lo, "<grid"), f(hi, ">grid")),
        None => "-".into(),
    }
}

/// The terminal table: L_emp per row, the slopes with verdicts, settling.
pub(crate) fn table(s: &Study) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:>4} {:<24} {:>7} {:>7} {:>24} {:>24} {:>6} {:>8}  test accuracy by depth",
        "N",
        "group",
        "xi",
        "steps",
        "L_emp test [95% boot]",
        "L_emp train [95% boot]",
        "L/xi",
        ">chance"
    );
    for d in &s.trainable_depth {
        let accs: Vec<String> = d
            .depths
            .iter()
            .zip(&d.test_acc)
            .map(|(dd, a)| format!("{dd}:{a:.3}"))
            .collect();
        let (bt, br) = (&d.halfway_test, &d.halfway_train);
        let _ = writeln!(
            t,
            "{:>4} {:<24} {:>7.2} {:>7} {:>24} {:>24} {:>6} {:>8}  {}{}",
            d.states,
            format!("σw={} n={} lr={}", d.sigma_w, d.width, lr_label(d.lr)),
            d.xi,
            d.steps,
            interval(bt.l_emp, bt.ci_lo, bt.ci_hi),
            interval(br.l_emp, br.ci_lo, br.ci_hi),
            d.l_emp_over_xi.map_or("-".into(), |x| format!("{x:.2}")),
            d.above_chance_test.map_or("-".into(), |x| x.to_string()),
            accs.join(" "),
            d.note
                .as_ref()
                .map_or(String::new(), |n| format!("  ({n})"))
        );
    }
    let seeds = s.trainable_depth.first().map_or(0, |d| d.seeds);
    let _ = writeln!(
        t,
        "{seeds} seeds per cell; intervals: {} bootstrap replicates over seeds (expanded percentile), both interpolants pooled{}",
        s.replicates,
        if seeds < 5 {
            "; with fewer than 5 seeds an interval is at most the spread of the seeds' own curves: read it as a lower bound on the uncertainty"
        } else {
            ""
        }
    );
    for e in &s.slopes {
        let ci = e
            .slope
            .ci
            .map_or("no interval".into(), |(a, b)| format!("[{a:.2}, {b:.2}]"));
        let _ = writeln!(
            t,
            "slope of ln L_emp ({:?}) vs ln ξ over {} ({} n={} lr={} steps={}): {:.2} {} → {}",
            e.metric,
            e.over,
            e.group,
            e.width,
            lr_label(e.lr),
            e.steps,
            e.slope.slope,
            ci,
            e.verdict
        );
        for x in &e.excluded {
            let _ = writeln!(t, "    left out of the fit: {x}");
        }
        if let (Some(n1), Some(x)) = (&e.exponent_n1, e.xi_exponent_n1) {
            let _ = writeln!(
                t,
                "    exponent vs ln(N + 1): L_emp {:.2} {}, xi {x:.2}",
                n1.slope,
                n1.ci
                    .map_or("(no interval)".into(), |(a, b)| format!("[{a:.2}, {b:.2}]"))
            );
        }
    }
    let _ = writeln!(t, "verdict rule: {}", s.verdict_rule);
    for st in s.settling.iter().filter(|st| st.by_length.len() > 1) {
        let _ = writeln!(
            t,
            "L_emp ({:?}) by length, N={} σw={} lr={}: {} → {}",
            st.metric,
            st.states,
            st.sigma_w,
            lr_label(st.lr),
            st.by_length
                .iter()
                .map(|&(s, l, lo, hi)| format!("{s}: {}", interval(l, lo, hi)))
                .collect::<Vec<_>>()
                .join("; "),
            st.settled_at
                .map_or("still moving".into(), |s| format!("settled from {s} steps"))
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

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
                train_tie_rate: 0.0,
                test_tie_rate: 0.0,
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
