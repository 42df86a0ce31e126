//! Families of trained networks and their mean accuracy curves: the lr
//! choice per depth, where a curve falls through a target (two interpolants
//! in ln depth), the deepest depth above chance. The bootstrap around them is
//! in [`boundary`](super::boundary).

use serde::Serialize;

/// Standard errors above chance for "trains above chance".
pub const ABOVE_CHANCE_SE: f64 = 3.0;
/// One network's accuracies and training loss at a length's report (NaN: not
/// trained or not reported).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Obs {
    /// Training accuracy.
    pub train_acc: f64,
    /// Test accuracy.
    pub test_acc: f64,
    /// Mean training loss over the steps before the report.
    pub loss: f64,
}

impl Obs {
    /// Not observed.
    pub const MISSING: Obs = Obs {
        train_acc: f64::NAN,
        test_acc: f64::NAN,
        loss: f64::NAN,
    };
}

/// One family at one training length.
#[derive(Debug, Clone)]
pub struct Family {
    /// N.
    pub states: usize,
    /// σ_w as the config gave it.
    pub sigma_w: String,
    /// Width.
    pub width: usize,
    /// Training length (steps).
    pub steps: usize,
    /// ξ of the theory.
    pub xi: f64,
    /// Learning rates as given, ascending.
    pub lrs: Vec<f64>,
    /// Depths, ascending.
    pub depths: Vec<usize>,
    /// Seeds (networks per cell).
    pub seeds: usize,
    /// Observations, index `(lr·depths + depth)·seeds + seed`.
    pub obs: Vec<Obs>,
}

impl Family {
    fn at(&self, lr: usize, d: usize, s: usize) -> Obs {
        self.obs[(lr * self.depths.len() + d) * self.seeds + s]
    }
}

/// How the learning rate of a curve is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum LrChoice {
    /// The lr at this index of the family's list.
    Fixed(usize),
    /// Per depth, the lr with the lowest mean training loss at the report.
    Best,
}

/// Training or test accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Metric {
    /// Accuracy on the evaluated training images.
    Train,
    /// Accuracy on the evaluated test images.
    Test,
}

/// A mean curve: per depth, mean accuracy (train, test), its standard error
/// over seeds, the seeds seen and the lr index used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    /// Mean training accuracy per depth.
    pub train: Vec<f64>,
    /// Mean test accuracy per depth.
    pub test: Vec<f64>,
    /// Standard errors of `train` (NaN with fewer than 2 seeds).
    pub train_se: Vec<f64>,
    /// Standard errors of `test`.
    pub test_se: Vec<f64>,
    /// Seeds with an observation per depth.
    pub count: Vec<usize>,
    /// The lr index per depth (None: no finite loss, for [`LrChoice::Best`]).
    pub lr: Vec<Option<usize>>,
}

impl Curve {
    /// The accuracies and their errors of a metric.
    pub fn of(&self, m: Metric) -> (&[f64], &[f64]) {
        match m {
            Metric::Train => (&self.train, &self.train_se),
            Metric::Test => (&self.test, &self.test_se),
        }
    }
}

fn mean_se(v: &[f64]) -> (f64, f64) {
    let k = v.len();
    if k == 0 {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / k as f64;
    let se = if k > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / ((k - 1) * k) as f64).sqrt()
    } else {
        f64::NAN
    };
    (m, se)
}

/// The mean curve of `f` under `choice` over the seeds `sample` (indices,
/// repeats allowed).
pub fn curve(f: &Family, choice: LrChoice, sample: &[usize]) -> Curve {
    let mut c = Curve::default();
    for d in 0..f.depths.len() {
        let lr = match choice {
            LrChoice::Fixed(i) => Some(i),
            LrChoice::Best => (0..f.lrs.len())
                .filter_map(|i| {
                    let l: Vec<f64> = sample.iter().map(|&s| f.at(i, d, s).loss).collect();
                    let m = l.iter().sum::<f64>() / l.len().max(1) as f64;
                    m.is_finite().then_some((i, m))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i),
        };
        let obs: Vec<Obs> = match lr {
            Some(i) => sample
                .iter()
                .map(|&s| f.at(i, d, s))
                .filter(|o| o.test_acc.is_finite() && o.train_acc.is_finite())
                .collect(),
            None => Vec::new(),
        };
        let (tr, tr_se) = mean_se(&obs.iter().map(|o| o.train_acc).collect::<Vec<_>>());
        let (te, te_se) = mean_se(&obs.iter().map(|o| o.test_acc).collect::<Vec<_>>());
        c.train.push(tr);
        c.test.push(te);
        c.train_se.push(tr_se);
        c.test_se.push(te_se);
        c.count.push(obs.len());
        c.lr.push(lr);
    }
    c
}

/// Where a mean curve falls through a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Crossing {
    /// Already at or below the target at the shallowest depth (or no data there).
    Below,
    /// Between two grid depths: (linear interpolant, logit interpolant).
    At(f64, f64),
    /// Above the target at every depth.
    Beyond,
}

/// The first fall of `acc` (by ascending `depths`) through `target`, by both
/// interpolants in ln depth; `top` is the reference accuracy the logit is
/// taken against (the target is halfway between it and `chance`).
pub fn crossing(depths: &[usize], acc: &[f64], target: f64, chance: f64, top: f64) -> Crossing {
    let pts: Vec<(f64, f64)> = depths
        .iter()
        .zip(acc)
        .filter(|(_, a)| a.is_finite())
        .map(|(&d, &a)| ((d as f64).ln(), a))
        .collect();
    match pts.first() {
        Some(&(_, a)) if a > target => {}
        _ => return Crossing::Below,
    }
    let logit = |a: f64| {
        let z = ((a - chance) / (top - chance)).clamp(1e-3, 1.0 - 1e-3);
        (z / (1.0 - z)).ln()
    };
    for w in pts.windows(2) {
        let ((x0, a0), (x1, a1)) = (w[0], w[1]);
        if a1 <= target {
            let f_lin = (a0 - target) / (a0 - a1);
            let (g0, g1, gt) = (logit(a0), logit(a1), logit(target));
            let f_log = if g0 > g1 && (g1..=g0).contains(&gt) {
                (g0 - gt) / (g0 - g1)
            } else {
                f_lin
            };
            return Crossing::At(
                (x0 + f_lin * (x1 - x0)).exp(),
                (x0 + f_log * (x1 - x0)).exp(),
            );
        }
    }
    Crossing::Beyond
}

/// The deepest depth whose mean accuracy exceeds chance by
/// [`ABOVE_CHANCE_SE`] errors: the larger of the seed standard error and the
/// binomial error √(c(1 − c)/(n·k)) of k seeds evaluated on n images each.
pub fn above_chance(
    depths: &[usize],
    acc: &[f64],
    se: &[f64],
    count: &[usize],
    chance: f64,
    eval_images: usize,
) -> Option<usize> {
    (0..depths.len())
        .filter(|&i| {
            let k = count[i].max(1) as f64;
            let binom = (chance * (1.0 - chance) / (eval_images.max(1) as f64 * k)).sqrt();
            let e = if se[i].is_finite() {
                se[i].max(binom)
            } else {
                binom
            };
            count[i] > 0 && acc[i] > chance + ABOVE_CHANCE_SE * e
        })
        .map(|i| depths[i])
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_interpolants_agree_on_a_symmetric_fall() {
        // Chance 0.1, top 0.9, target 0.5. Accuracy 0.7 at depth 10 and 0.3 at
        // 40 sit symmetrically about the target in accuracy and in the logit
        // (z = 0.75, 0.25): both interpolants give the middle, √(10·40) = 20.
        match crossing(&[5, 10, 40], &[0.9, 0.7, 0.3], 0.5, 0.1, 0.9) {
            Crossing::At(a, b) => {
                assert!((a - 20.0).abs() < 1e-9, "{a}");
                assert!((b - 20.0).abs() < 1e-9, "{b}");
            }
            other => panic!("{other:?}"),
        }
        // 0.8 and 0.3: linear f = 0.3/0.5 = 0.6 → 10·4^0.6 = 22.974; logit
        // z = 0.875, 0.25: f = ln 7/(ln 7 + ln 3) = 0.63915 → 10·4^0.63915 = 24.255.
        match crossing(&[10, 40], &[0.8, 0.3], 0.5, 0.1, 0.9) {
            Crossing::At(a, b) => {
                assert!((a - 22.974).abs() < 1e-3, "{a}");
                assert!((b - 24.255).abs() < 1e-3, "{b}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            crossing(&[5, 10], &[0.9, 0.8], 0.5, 0.1, 0.9),
            Crossing::Beyond
        );
        assert_eq!(
            crossing(&[5, 10], &[0.4, 0.1], 0.5, 0.1, 0.9),
            Crossing::Below
        );
    }
}
