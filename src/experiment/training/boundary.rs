//! The trainable-depth boundary of accuracy curves with bootstrap intervals.
//!
//! A *family* is one network family at one training length (N, σ_w, width,
//! steps) observed at a list of depths, for each learning rate and seed. From
//! it, for each learning-rate *choice* (each fixed lr, and the best lr per
//! depth chosen by the training loss at the length's report, which never
//! looks at test data) and each *metric* (training or test accuracy):
//!
//! * **halfway** — one target for every family of a scope (same width, length
//!   and lr choice): halfway from the best shallow accuracy over all families
//!   (at the shallowest depth they share) to chance. L_emp is the depth where
//!   the seed-mean accuracy first falls through it, between the two grid
//!   depths around the crossing, by two interpolants in ln depth: linear in
//!   accuracy, and linear in the logit of (accuracy − chance)/(reference −
//!   chance) (exact for a logistic in ln depth). L_emp is their geometric mean;
//!   their disagreement is the grid's interpolation error.
//! * **above chance** — the deepest depth whose seed-mean accuracy exceeds
//!   chance by [`ABOVE_CHANCE_SE`] standard errors (the larger of the seeds'
//!   and the binomial error of evaluating that many images).
//!
//! Intervals: a percentile bootstrap over seeds. Each replicate resamples the
//! seeds of every family with replacement, recomputes the mean curves, the lr
//! choice, the common target and both interpolants; the interval is taken
//! from the pooled replicate values of both interpolants, so it holds seed
//! noise and grid error. With few seeds the plain 2.5 %/97.5 % points are too
//! narrow (a resample's spread is (k − 1)/k of the seeds'), so the points are
//! those of the *expanded percentile* interval (Hesterberg 2015): tails
//! Φ(−√(k/(k − 1))·t_{0.975, k−1}) for k seeds (0.1 % at k = 5; 2.5 % as
//! k → ∞). A replicate without a crossing counts as below the shallowest
//! depth or beyond the deepest: when the tail falls there, that side of the
//! interval is open (None). One seed gives no interval.
//!
//! Slopes of ln L_emp against ln ξ (over N at fixed σ_w, or over σ_w at fixed
//! N) are fitted in every replicate the same way, and [`verdict`] reads the
//! interval.

pub use crate::experiment::training::curves::{
    above_chance, crossing, curve, Crossing, Curve, Family, LrChoice, Metric, Obs, ABOVE_CHANCE_SE,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;

/// Bootstrap replicates.
pub const REPLICATES: usize = 2000;
/// The widest slope interval that can support "consistent with ∝ ξ": an
/// interval of width ≤ 0.5 containing 1 excludes slopes ≤ 0.5 (L ∝ √ξ).
pub const VERDICT_WIDTH: f64 = 0.5;

/// One boundary: L_emp of a family, lr choice and metric, with its interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Boundary {
    /// The common halfway target.
    pub target: f64,
    /// L_emp (geometric mean of the two interpolants on all seeds).
    pub l_emp: Option<f64>,
    /// Lower end of the 95 % bootstrap interval (None: open, below the grid).
    pub ci_lo: Option<f64>,
    /// Upper end (None: open, beyond the deepest depth).
    pub ci_hi: Option<f64>,
    /// The two interpolants on all seeds (linear, logit).
    pub interpolants: Option<(f64, f64)>,
    /// Fraction of replicate values below the shallowest depth.
    pub below: f64,
    /// Fraction of replicate values beyond the deepest depth.
    pub beyond: f64,
    /// Why L_emp or a side of its interval is missing.
    pub note: Option<String>,
}

/// A fitted slope of ln L_emp against ln x with its bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlopeFit {
    /// The slope on all seeds (both interpolants' L_emp, geometric mean).
    pub slope: f64,
    /// 95 % bootstrap interval, expanded percentile (None when more than the
    /// tail's share of replicates had a family without a crossing).
    pub ci: Option<(f64, f64)>,
    /// Replicates in which every family crossed.
    pub replicates: usize,
    /// Of how many.
    pub of: usize,
}

/// What a slope interval says about L_emp ∝ ξ (slope 1), by the rule in
/// [`verdict`].
pub fn verdict(ci: Option<(f64, f64)>) -> String {
    match ci {
        Some((lo, hi)) if !(lo..=hi).contains(&1.0) => "not ∝ ξ".into(),
        Some((lo, hi)) if hi - lo <= VERDICT_WIDTH => "consistent with ∝ ξ".into(),
        Some((lo, hi)) => format!(
            "undecided at this budget: 1 is inside [{lo:.2}, {hi:.2}], wider than {VERDICT_WIDTH}; more seeds and denser depths near the crossings narrow it"
        ),
        None => "undecided at this budget: no slope interval (an N without a crossing inside its depths in over 2.5 % of replicates); deeper or shallower depths, or longer training, would place it".into(),
    }
}

fn ls_slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (xm, ym) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - xm) * (b - ym)).sum();
    let sxx: f64 = x.iter().map(|a| (a - xm).powi(2)).sum();
    sxy / sxx
}

/// The q-quantile of sorted values (nearest rank: never between a value and
/// a "no crossing" sentinel, 0 or ∞).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() - 1) as f64).round() as usize]
}

/// The tail probability of each side of the expanded percentile interval
/// for k seeds (95 % nominal); None for k < 2.
pub fn expanded_tail(k: usize) -> Option<f64> {
    (k >= 2).then(|| {
        let kf = k as f64;
        let t = crate::analysis::student_t_quantile(0.975, kf - 1.0);
        crate::gauss::sf((kf / (kf - 1.0)).sqrt() * t)
    })
}

/// The scope of a common halfway target: width, length, lr choice (an lr
/// index is only shared where the lr lists are equal; the key holds the value).
type Scope = (usize, usize, Option<u64>);

fn scope(f: &Family, c: LrChoice) -> Scope {
    let lr = match c {
        LrChoice::Fixed(i) => Some(f.lrs[i].to_bits()),
        LrChoice::Best => None,
    };
    (f.width, f.steps, lr)
}

/// The boundaries of one (family, lr choice) pair.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index into the families.
    pub family: usize,
    /// The lr choice.
    pub choice: LrChoice,
    /// The mean curve on all seeds.
    pub curve: Curve,
    /// Halfway on training accuracy.
    pub train: Boundary,
    /// Halfway on test accuracy.
    pub test: Boundary,
    /// Deepest depth above chance, training accuracy.
    pub above_chance_train: Option<usize>,
    /// The same on test accuracy.
    pub above_chance_test: Option<usize>,
    /// Replicate crossings (linear, logit; ±∞ for none) per metric.
    reps: [Vec<(f64, f64)>; 2],
}

/// The whole analysis of a set of families.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Per family and lr choice ("best" only where a family has 2 or more lrs).
    pub entries: Vec<Entry>,
}

fn midpoint(c: Crossing) -> (f64, f64) {
    match c {
        Crossing::At(a, b) => (a, b),
        Crossing::Below => (0.0, 0.0),
        Crossing::Beyond => (f64::INFINITY, f64::INFINITY),
    }
}

/// Common targets per scope and metric from the mean curves of `entries`:
/// halfway from the best accuracy at the shallowest depth the scope's families
/// share (each family's own first depth when they share none) to chance.
fn targets(
    families: &[Family],
    items: &[(usize, LrChoice, &Curve)],
    chance: f64,
) -> BTreeMap<(Scope, Metric), (f64, f64)> {
    let mut shallow: BTreeMap<Scope, usize> = BTreeMap::new();
    for &(fi, c, _) in items {
        let d0 = families[fi].depths[0];
        let e = shallow.entry(scope(&families[fi], c)).or_insert(d0);
        *e = (*e).max(d0);
    }
    let mut top: BTreeMap<(Scope, Metric), f64> = BTreeMap::new();
    for &(fi, c, cur) in items {
        let f = &families[fi];
        let s = scope(f, c);
        let d = f.depths.iter().position(|&d| d >= shallow[&s]).unwrap_or(0);
        for m in [Metric::Train, Metric::Test] {
            let a = cur.of(m).0[d];
            let e = top.entry((s, m)).or_insert(f64::NEG_INFINITY);
            if a.is_finite() && a > *e {
                *e = a;
            }
        }
    }
    top.into_iter()
        .map(|(k, t)| (k, (0.5 * (t + chance), t)))
        .collect()
}

/// Analyses `families` with `replicates` bootstrap replicates drawn from `seed`;
/// `eval_images` = (training, test) images evaluated per network.
pub fn analyse(
    families: &[Family],
    chance: f64,
    eval_images: (usize, usize),
    replicates: usize,
    seed: u64,
) -> Analysis {
    let mut pairs: Vec<(usize, LrChoice)> = Vec::new();
    for (fi, f) in families.iter().enumerate() {
        for i in 0..f.lrs.len() {
            pairs.push((fi, LrChoice::Fixed(i)));
        }
        if f.lrs.len() > 1 {
            pairs.push((fi, LrChoice::Best));
        }
    }
    let crossings = |curves: &[Curve]| -> Vec<[Crossing; 2]> {
        let items: Vec<(usize, LrChoice, &Curve)> = pairs
            .iter()
            .zip(curves)
            .map(|(&(fi, c), cur)| (fi, c, cur))
            .collect();
        let t = targets(families, &items, chance);
        items
            .iter()
            .map(|&(fi, c, cur)| {
                let f = &families[fi];
                [Metric::Train, Metric::Test].map(|m| match t.get(&(scope(f, c), m)) {
                    Some(&(target, top)) if top > chance => {
                        crossing(&f.depths, cur.of(m).0, target, chance, top)
                    }
                    _ => Crossing::Below,
                })
            })
            .collect()
    };
    let all: Vec<Vec<usize>> = families.iter().map(|f| (0..f.seeds).collect()).collect();
    let full: Vec<Curve> = pairs
        .iter()
        .map(|&(fi, c)| curve(&families[fi], c, &all[fi]))
        .collect();
    let full_x = crossings(&full);
    let full_t = {
        let items: Vec<(usize, LrChoice, &Curve)> = pairs
            .iter()
            .zip(&full)
            .map(|(&(fi, c), cur)| (fi, c, cur))
            .collect();
        targets(families, &items, chance)
    };
    let mut reps: Vec<[Vec<(f64, f64)>; 2]> = vec![[Vec::new(), Vec::new()]; pairs.len()];
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..replicates {
        let samples: Vec<Vec<usize>> = families
            .iter()
            .map(|f| (0..f.seeds).map(|_| rng.random_range(0..f.seeds)).collect())
            .collect();
        let curves: Vec<Curve> = pairs
            .iter()
            .map(|&(fi, c)| curve(&families[fi], c, &samples[fi]))
            .collect();
        for (k, x) in crossings(&curves).into_iter().enumerate() {
            for m in 0..2 {
                reps[k][m].push(midpoint(x[m]));
            }
        }
    }
    let entries = pairs
        .iter()
        .enumerate()
        .map(|(k, &(fi, c))| {
            let f = &families[fi];
            let cur = full[k].clone();
            let bound = |m: usize, metric: Metric| {
                let target = full_t.get(&(scope(f, c), metric)).map_or(f64::NAN, |t| t.0);
                boundary(f, target, full_x[k][m], &reps[k][m])
            };
            let (train, test) = (bound(0, Metric::Train), bound(1, Metric::Test));
            let ac = |m: Metric, n: usize| {
                let (a, se) = cur.of(m);
                above_chance(&f.depths, a, se, &cur.count, chance, n)
            };
            Entry {
                family: fi,
                choice: c,
                above_chance_train: ac(Metric::Train, eval_images.0),
                above_chance_test: ac(Metric::Test, eval_images.1),
                curve: cur,
                train,
                test,
                reps: reps[k].clone(),
            }
        })
        .collect();
    Analysis { entries }
}

fn boundary(f: &Family, target: f64, x: Crossing, reps: &[(f64, f64)]) -> Boundary {
    let mut v: Vec<f64> = reps.iter().flat_map(|&(a, b)| [a, b]).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len().max(1) as f64;
    let below = v.iter().filter(|x| **x == 0.0).count() as f64 / n;
    let beyond = v.iter().filter(|x| x.is_infinite()).count() as f64 / n;
    let (deepest, shallowest) = (f.depths[f.depths.len() - 1], f.depths[0]);
    let (mut lo, mut hi) = (None, None);
    if let (false, Some(q)) = (v.is_empty(), expanded_tail(f.seeds)) {
        let (a, b) = (quantile(&v, q), quantile(&v, 1.0 - q));
        lo = (a > 0.0 && a.is_finite()).then_some(a);
        hi = (b > 0.0 && b.is_finite()).then_some(b);
    }
    let (l_emp, interpolants, mut note) = match x {
        Crossing::At(a, b) => (Some((a * b).sqrt()), Some((a, b)), None),
        Crossing::Below => (
            None,
            None,
            Some(format!(
                "at or below the target {target:.3} already at the shallowest depth {shallowest}: L_emp < {shallowest}"
            )),
        ),
        Crossing::Beyond => (
            None,
            None,
            Some(format!(
                "above the target {target:.3} up to the deepest depth {deepest}: L_emp > {deepest}"
            )),
        ),
    };
    if l_emp.is_some() && f.seeds < 2 {
        note = Some("one seed: no interval".into());
    } else if l_emp.is_some() && hi.is_none() {
        note = Some(format!(
            "in {:.0} % of bootstrap values no crossing up to depth {deepest}: the interval is open above",
            100.0 * beyond
        ));
    } else if l_emp.is_some() && lo.is_none() {
        note = Some(format!(
            "in {:.0} % of bootstrap values below the target at depth {shallowest}: the interval is open below",
            100.0 * below
        ));
    }
    Boundary {
        target,
        l_emp,
        ci_lo: lo,
        ci_hi: hi,
        interpolants,
        below,
        beyond,
        note,
    }
}

impl Analysis {
    /// The slope of ln L_emp (of `metric`) against `x(family)` over the entries
    /// `members` (at least 3, each with an L_emp on all seeds).
    pub fn slope(
        &self,
        families: &[Family],
        members: &[usize],
        metric: Metric,
        x: impl Fn(&Family) -> f64,
    ) -> Option<SlopeFit> {
        let m = metric as usize;
        let pick = |e: &Entry| match metric {
            Metric::Train => e.train.l_emp,
            Metric::Test => e.test.l_emp,
        };
        if members.len() < 3 || members.iter().any(|&k| pick(&self.entries[k]).is_none()) {
            return None;
        }
        let xs: Vec<f64> = members
            .iter()
            .map(|&k| x(&families[self.entries[k].family]).ln())
            .collect();
        if xs.iter().any(|v| !v.is_finite()) || ls_slope(&xs, &vec![0.0; xs.len()]).is_nan() {
            return None;
        }
        let ys: Vec<f64> = members
            .iter()
            .map(|&k| pick(&self.entries[k]).unwrap().ln())
            .collect();
        let slope = ls_slope(&xs, &ys);
        let of = self.entries[members[0]].reps[m].len();
        let mut v = Vec::new();
        for r in 0..of {
            for which in 0..2 {
                let ys: Vec<f64> = members
                    .iter()
                    .map(|&k| {
                        let p = self.entries[k].reps[m][r];
                        if which == 0 { p.0 } else { p.1 }.ln()
                    })
                    .collect();
                if ys.iter().all(|y| y.is_finite()) {
                    v.push(ls_slope(&xs, &ys));
                }
            }
        }
        let done = v.len() / 2;
        v.sort_by(f64::total_cmp);
        let k = members
            .iter()
            .map(|&m| families[self.entries[m].family].seeds)
            .min()
            .unwrap_or(0);
        let ci = expanded_tail(k).and_then(|q| {
            (of > 0 && (v.len() as f64) >= (1.0 - q) * (2 * of) as f64)
                .then(|| (quantile(&v, q), quantile(&v, 1.0 - q)))
        });
        Some(SlopeFit {
            slope,
            ci,
            replicates: done,
            of,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_follows_the_stated_rule() {
        assert_eq!(verdict(Some((0.8, 1.2))), "consistent with ∝ ξ");
        assert_eq!(verdict(Some((0.2, 0.6))), "not ∝ ξ");
        assert!(verdict(Some((0.3, 1.4))).starts_with("undecided"));
        assert!(verdict(None).starts_with("undecided"));
    }
}
