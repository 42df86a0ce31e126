//! The trainable-depth statistics on synthetic studies with a known answer:
//! the bootstrap interval of L_emp covers it, and the bracketing grid is
//! dense around it.

use quantdepth::experiment::training::boundary::{analyse, Family, Obs};
use quantdepth::experiment::training::grid::{bracket, bracket_from_folder};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

const CHANCE: f64 = 0.1;
const TOP: f64 = 0.85;
const STEEP: f64 = 3.0;
/// Seed-to-seed spread of ln L0, and per-network accuracy noise.
const SEED_SD: f64 = 0.15;
const ACC_SD: f64 = 0.02;

/// The logistic in ln depth: TOP at shallow depths, chance deep, centred at l0.
fn logistic(depth: f64, l0: f64) -> f64 {
    CHANCE + (TOP - CHANCE) / (1.0 + (depth / l0).powf(STEEP))
}

/// The expected accuracy over seeds (ln L0 ~ N(ln l0, SEED_SD²)), by the
/// midpoint rule over ±8 SD.
fn expected(depth: f64, l0: f64) -> f64 {
    let k = 4000;
    let (mut s, mut w) = (0.0, 0.0);
    for i in 0..k {
        let z = -8.0 + 16.0 * (i as f64 + 0.5) / k as f64;
        let p = (-0.5 * z * z).exp();
        s += p * logistic(depth, l0 * (SEED_SD * z).exp());
        w += p;
    }
    s / w
}

/// The true L_emp: where the expected curve falls halfway from its value at
/// the shallowest depth to chance (bisection in ln depth).
fn true_l_emp(shallowest: f64, l0: f64) -> f64 {
    let target = 0.5 * (expected(shallowest, l0) + CHANCE);
    let (mut a, mut b) = (shallowest.ln(), (1e4f64).ln());
    for _ in 0..100 {
        let m = 0.5 * (a + b);
        if expected(m.exp(), l0) > target {
            a = m;
        } else {
            b = m;
        }
    }
    (0.5 * (a + b)).exp()
}

fn synthetic(depths: &[usize], seeds: usize, l0: f64, rng: &mut StdRng) -> Family {
    let seed_l0 = Normal::new(0.0, SEED_SD).unwrap();
    let noise = Normal::new(0.0, ACC_SD).unwrap();
    let l0s: Vec<f64> = (0..seeds).map(|_| l0 * seed_l0.sample(rng).exp()).collect();
    let mut obs = Vec::new();
    for &d in depths {
        for l in &l0s {
            let a = (logistic(d as f64, *l) + noise.sample(rng)).clamp(0.0, 1.0);
            obs.push(Obs {
                train_acc: a,
                test_acc: a,
                loss: 1.0,
            });
        }
    }
    Family {
        states: 4,
        sigma_w: "opt".into(),
        width: 128,
        steps: 1000,
        xi: 7.9,
        lrs: vec![0.01],
        depths: depths.to_vec(),
        seeds,
        obs,
    }
}

/// 100 synthetic studies, 5 seeds each, on a grid that doubles in depth
/// (2 … 512, the grid whose interpolation error the old Student-t interval
/// ignored), L0 drawn in [20, 60] so the crossing falls anywhere between grid
/// points. A 95 % interval should cover the true L_emp in ~95 of 100; the test
/// asks ≥ 90 (binomial SE of 100 at 0.95: 2.2, so 90 is 2.3 SE below). Both
/// ends of the interval must be inside the grid in every study, and the
/// median width must stay below a factor 2 (an interval that covered by
/// being huge would pass the first check).
#[test]
fn bootstrap_interval_covers_a_known_l_emp() {
    let depths: Vec<usize> = (1..=9).map(|k| 1usize << k).collect();
    let mut rng = StdRng::seed_from_u64(2024);
    let (mut covered, mut widths) = (0, Vec::new());
    for study in 0..100 {
        let l0 = 20.0 * (3f64).powf(study as f64 / 99.0);
        let fam = synthetic(&depths, 5, l0, &mut rng);
        let truth = true_l_emp(2.0, l0);
        let an = analyse(&[fam], CHANCE, (10_000, 10_000), 2000, study);
        let b = &an.entries[0].test;
        let (lo, hi) = (b.ci_lo.expect("lower end"), b.ci_hi.expect("upper end"));
        assert!(b.l_emp.is_some(), "study {study}: {b:?}");
        if lo <= truth && truth <= hi {
            covered += 1;
        }
        widths.push(hi / lo);
    }
    widths.sort_by(f64::total_cmp);
    eprintln!(
        "covered {covered} of 100, median width factor {:.3}",
        widths[50]
    );
    assert!(covered >= 90, "covered {covered} of 100");
    assert!(
        widths[50] < 2.0,
        "median interval width factor {}",
        widths[50]
    );
}

/// The bracketing grid around a coarse pass's interval: a synthetic curve
/// crossing at L ≈ 40 measured on a doubling grid gives an interval; the
/// bracket holds ≥ 4 distinct depths in every doubling [x, 2x) from L/√2 to
/// L·√2/2, and spans the true crossing.
#[test]
fn bracketing_puts_four_depths_per_doubling_around_the_transition() {
    let depths: Vec<usize> = (1..=9).map(|k| 1usize << k).collect();
    let mut rng = StdRng::seed_from_u64(7);
    let l0 = 40.0;
    let fam = synthetic(&depths, 5, l0, &mut rng);
    let truth = true_l_emp(2.0, l0);
    let an = analyse(&[fam], CHANCE, (10_000, 10_000), 1000, 1);
    let b = &an.entries[0].test;
    let grid = bracket(b.ci_lo.unwrap(), b.ci_hi.unwrap(), 4);
    assert!(
        (grid[0] as f64) <= truth && truth <= grid[grid.len() - 1] as f64,
        "{grid:?} around {truth}"
    );
    let mut x = truth / 2f64.sqrt();
    while 2.0 * x <= truth * 2f64.sqrt() {
        let n = grid
            .iter()
            .filter(|&&d| (d as f64) >= x && (d as f64) < 2.0 * x)
            .count();
        assert!(n >= 4, "{n} depths in [{x:.1}, {:.1}): {grid:?}", 2.0 * x);
        x *= 1.05;
    }
    // From a previous run's summary.json: per N, the same rule on its
    // intervals; an N that never crossed is bracketed beyond its deepest depth.
    let dir = std::env::temp_dir().join(format!("quantdepth-bracket-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("summary.json"),
        r#"{"trainable_depth": [
 {"states": 2, "steps": 100, "depths": [2, 4, 8, 16, 32],
  "halfway_test": {"l_emp": 12.0, "ci_lo": 10.0, "ci_hi": 15.0, "beyond": 0.0},
  "halfway_train": {"l_emp": 14.0, "ci_lo": 11.0, "ci_hi": 17.0, "beyond": 0.0}},
 {"states": 3, "steps": 100, "depths": [2, 4, 8, 16, 32],
  "halfway_test": {"l_emp": null, "ci_lo": null, "ci_hi": null, "beyond": 1.0},
  "halfway_train": {"l_emp": null, "ci_lo": null, "ci_hi": null, "beyond": 1.0}}]}"#,
    )
    .unwrap();
    let per_n = bracket_from_folder(&dir, 4).unwrap();
    // N = 2: [10, 17] widened by √2: 7 … 24.
    assert_eq!(per_n[&2].first(), Some(&7));
    assert_eq!(per_n[&2].last(), Some(&24));
    // N = 3: beyond 32: 32/√2 … 4·32·√2, i.e. 23 … 181.
    assert_eq!(per_n[&3].first(), Some(&23));
    assert_eq!(per_n[&3].last(), Some(&181));
    assert!(bracket_from_folder(&dir.join("missing"), 4).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
