//! Shards of a sweep: which points shard K of M runs.
//!
//! A sweep is split across M processes (Slurm array tasks, or machines by
//! hand) by assigning every point to exactly one shard. The assignment is a
//! pure function of the points' estimated costs, so every shard computes the
//! same split from the same config without talking to the others; each
//! point's seed and results depend only on the config and the point (see
//! [`crate::experiment::runner`]), so a sharded run computes exactly what an
//! unsharded run does.
//!
//! Balancing is the longest-processing-time-first rule (Graham 1969): points
//! in decreasing cost, each to the shard with the least cost so far. Its
//! largest shard is at most 4/3 of the best possible split, and never more
//! than the mean load plus one point's cost.

use crate::error::{Error, Result};
use crate::experiment::config::{Config, InputChoice, Kind, RunPoint};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Most shards a sweep is split into. A sweep holds at most
/// [`crate::experiment::plan::DEFAULT_MAX_POINTS`]-scale point counts (10⁴ by
/// default), and Slurm's own array limit (MaxArraySize) defaults to 1001:
/// 100,000 shards is far beyond any real split, and bounds every buffer
/// sized by a shard count (flag, environment or a hand-edited shard.json).
pub const MAX_SHARDS: usize = 100_000;

/// Shard `index` of `count` (0-based: shard 0 of 3 is the first of three,
/// matching Slurm's `--array=0-2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// K, in 0..count.
    pub index: usize,
    /// M ≥ 1.
    pub count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// A checked shard: `1 ≤ count ≤` [`MAX_SHARDS`], `index < count`;
    /// `what` names the flag or variable in errors.
    pub fn new(index: usize, count: usize, what: &str) -> Result<Self> {
        if count == 0 {
            return Err(Error::invalid(
                what,
                format!("{index}/{count}"),
                "the shard count M must be at least 1",
            ));
        }
        if count > MAX_SHARDS {
            return Err(Error::invalid(
                what,
                format!("{index}/{count}"),
                &format!(
                    "the shard count M must be at most {MAX_SHARDS} (a sweep has at most a few \
                     thousand points; Slurm arrays default to at most 1001 tasks)"
                ),
            ));
        }
        if index >= count {
            return Err(Error::invalid(
                what,
                format!("{index}/{count}"),
                &format!(
                    "shards are numbered from 0: K must lie in 0..{} (0 to {}) for M = {count}",
                    count,
                    count - 1
                ),
            ));
        }
        Ok(Shard { index, count })
    }

    /// Parses `K/M` (e.g. `0/3`), or `slurm`: K from `SLURM_ARRAY_TASK_ID`
    /// and M from `SLURM_ARRAY_TASK_COUNT` (an array submitted as
    /// `--array=0-(M-1)`), read through `env`.
    pub fn parse(spec: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Self::parse_os(spec, |k| env(k).map(std::ffi::OsString::from))
    }

    /// [`Shard::parse`] with the environment read as the OS gives it, so that
    /// a variable that is set but not valid Unicode is named as such (not
    /// "not set"): `Shard::parse_os(spec, |k| std::env::var_os(k))`.
    pub fn parse_os(spec: &str, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self> {
        let spec = spec.trim();
        if spec == "slurm" {
            let var = |name: &str| -> Result<usize> {
                let raw = env(name).ok_or_else(|| {
                    Error::invalid(
                        "--shard",
                        "slurm",
                        &format!(
                            "{name} is not set: `--shard slurm` works inside a Slurm array task \
                             (sbatch --array=0-(M-1)); elsewhere give --shard K/M"
                        ),
                    )
                })?;
                let v = raw.into_string().map_err(|raw| {
                    Error::invalid(
                        name,
                        format!("{raw:?}"),
                        "a non-negative integer (the value is not valid Unicode text)",
                    )
                })?;
                v.trim().parse::<usize>().map_err(|_| {
                    Error::invalid(
                        name,
                        format!("\"{v}\""),
                        &format!("a non-negative integer, at most {MAX_SHARDS} for a count"),
                    )
                })
            };
            let (k, m) = (var("SLURM_ARRAY_TASK_ID")?, var("SLURM_ARRAY_TASK_COUNT")?);
            if let Some(min) = env("SLURM_ARRAY_TASK_MIN") {
                let min = min.to_string_lossy();
                if min.trim() != "0" {
                    return Err(Error::invalid(
                        "SLURM_ARRAY_TASK_MIN",
                        min.trim(),
                        "`--shard slurm` needs an array numbered from 0 (--array=0-(M-1)); \
                         to run one shard alone give --shard K/M",
                    ));
                }
            }
            return Shard::new(k, m, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT");
        }
        let bad = || {
            Error::invalid(
                "--shard",
                format!("\"{spec}\""),
                &format!("K/M with 0 ≤ K < M ≤ {MAX_SHARDS} (e.g. 0/3), or \"slurm\""),
            )
        };
        let (k, m) = spec.split_once('/').ok_or_else(bad)?;
        let k = k.trim().parse::<usize>().map_err(|_| bad())?;
        let m = m.trim().parse::<usize>().map_err(|_| bad())?;
        Shard::new(k, m, "--shard")
    }

    /// The folder name of this shard's results, `<name>-shard-K-of-M`.
    pub fn folder_name(&self, name: &str) -> String {
        format!("{name}-shard-{}-of-{}", self.index, self.count)
    }
}

/// Estimated cost of a point in multiply-adds: samples × `depth` × the
/// weight product per vector (width² for dense weights, 3·n·log₂n for the
/// Hadamard ensemble) × vectors per network (2·pairs·|c⁰|, or the circle's
/// points), times 1 + 2·|M| when backward passes are asked for (each one a
/// transposed product and a second forward pass). `depth` is the depth the
/// point runs ([`crate::experiment::point::run_depth`]: ⌈k·ξ⌉ with
/// `depth_per_xi`), not the config's cap.
///
/// Saturates instead of overflowing; the estimate only orders points.
pub fn point_cost(
    p: &RunPoint,
    depth: usize,
    weights: crate::sim::Weights,
    backward_targets: usize,
) -> u128 {
    let batch = match &p.inputs {
        InputChoice::Pairs { c0, pairs } => 2 * (*pairs as u128) * (c0.len() as u128),
        InputChoice::Circle { points } => *points as u128,
    };
    let w = p.width as u128;
    let per_vector = match weights {
        crate::sim::Weights::Hadamard => 3u128
            .saturating_mul(w)
            .saturating_mul(w.max(2).ilog2() as u128),
        _ => w.saturating_mul(w),
    };
    let forward = (p.samples as u128)
        .saturating_mul(depth as u128)
        .saturating_mul(per_vector)
        .saturating_mul(batch.max(1));
    forward.saturating_mul(1 + 2 * backward_targets as u128)
}

/// The estimated cost of every point of a config's sweep, in sweep order.
/// For `kind = "optimal"` a point is one N, costing N (the quadrature runs
/// over N levels); for `kind = "training"` steps × batch × Σ fan_in·fan_out
/// (`training::cost::sweep_costs`).
pub fn sweep_costs(cfg: &Config) -> Result<Vec<u128>> {
    if cfg.kind == Kind::Optimal {
        return Ok(cfg.optimal_states()?.iter().map(|&n| n as u128).collect());
    }
    if cfg.kind == Kind::Training {
        return crate::experiment::training::cost::sweep_costs(cfg);
    }
    let targets = cfg
        .backward
        .as_ref()
        .map_or(0, |b| b.m.as_ref().map_or(1, Vec::len));
    let weights = cfg.weights()?;
    cfg.points()?
        .iter()
        .map(|p| {
            Ok(point_cost(
                p,
                crate::experiment::point::run_depth(p)?,
                weights,
                targets,
            ))
        })
        .collect()
}

/// Assigns each of `costs.len()` points to one of `count` shards: entry i is
/// the shard of point i. Longest processing time first; ties broken by the
/// lower point index, then the lower shard index, so the result depends
/// only on the costs. (`count` 0 is taken as 1; callers pass a checked
/// [`Shard`] count.)
///
/// Only the first min(count, points) shards can receive a point (each
/// point goes to the least-loaded shard of lowest index, and an untouched
/// shard of lowest index is always among the least loaded), so the loads
/// kept are that many, whatever the count: memory O(points), time
/// O(points · log points), with the loads in a min-heap of (load, shard).
pub fn assign(costs: &[u128], count: usize) -> Vec<usize> {
    use std::cmp::Reverse;
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].cmp(&costs[a]).then(a.cmp(&b)));
    let used = count.clamp(1, costs.len().max(1));
    let mut load: std::collections::BinaryHeap<Reverse<(u128, usize)>> =
        (0..used).map(|k| Reverse((0, k))).collect();
    let mut out = vec![0usize; costs.len()];
    for i in order {
        let Some(Reverse((l, k))) = load.pop() else {
            break;
        };
        out[i] = k;
        load.push(Reverse((l.saturating_add(costs[i]), k)));
    }
    out
}

/// The point indices shard `shard` runs, in sweep order.
pub fn shard_points(costs: &[u128], shard: Shard) -> Vec<usize> {
    assign(costs, shard.count)
        .into_iter()
        .enumerate()
        .filter(|&(_, k)| k == shard.index)
        .map(|(i, _)| i)
        .collect()
}

/// File naming the shard of a shard folder.
pub const SHARD_FILE: &str = "shard.json";

/// Contents of `shard.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    /// Which shard.
    pub shard: Shard,
    /// The point indices assigned to it (sweep order).
    pub points: Vec<usize>,
}

impl ShardFile {
    /// Reads `folder/shard.json` (a regular file of at most
    /// [`crate::experiment::folder::META_CAP`] bytes, never a FIFO or a
    /// device); `None` when the folder is not a shard. Its contents are
    /// checked ([`ShardFile::check`]) before anything uses them.
    pub fn read(folder: &Path) -> Result<Option<Self>> {
        let path = folder.join(SHARD_FILE);
        match crate::safe_fs::read_capped_text(&path, crate::experiment::folder::META_CAP) {
            Ok(text) => serde_json::from_str::<ShardFile>(&text)
                .map_err(|e| Error::Folder(format!("{} does not parse: {e}", path.display())))
                .and_then(|sf| sf.check(&path).map(|()| Some(sf))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Folder(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }
}

impl ShardFile {
    /// Checks a deserialized shard record (`path` names it in errors): the
    /// shard as [`Shard::new`] checks it (1 ≤ M ≤ [`MAX_SHARDS`], K < M)
    /// and its point indices strictly increasing (each once, sweep order).
    pub fn check(&self, path: &Path) -> Result<()> {
        let bad = |why: String| {
            Error::Folder(format!(
                "{} is not a valid shard record: {why}; it is written by `quantdepth run \
                 --shard`, do not edit it",
                path.display()
            ))
        };
        Shard::new(self.shard.index, self.shard.count, "shard")
            .map_err(|e| bad(format!("shard {}: {e}", self.shard)))?;
        if let Some(w) = self.points.windows(2).find(|w| w[0] >= w[1]) {
            return Err(bad(format!(
                "its points are not strictly increasing ({} then {})",
                w[0], w[1]
            )));
        }
        Ok(())
    }

    /// Writes `folder/shard.json` (atomically).
    pub fn write(&self, folder: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Folder(format!("shard.json cannot be encoded: {e}")))?;
        crate::experiment::folder::write_atomic(&folder.join(SHARD_FILE), text.as_bytes())
    }
}

/// Creates the shard folder `<root>/<name>-shard-K-of-M` (with `plots/`,
/// `points/` and `shard.json`). Its name carries no timestamp, so an array
/// script, `merge` and a rerun all find it; when it exists already the
/// shard has run before, and `quantdepth run --resume` continues it.
pub fn create_folder(root: &Path, name: &str, shard: Shard, points: Vec<usize>) -> Result<PathBuf> {
    crate::experiment::folder::check_name(name)?;
    if root.exists() && !root.is_dir() {
        return Err(Error::Folder(format!(
            "--out {} is a file, not a folder: give a folder for shard folders",
            root.display()
        )));
    }
    std::fs::create_dir_all(root)
        .map_err(|e| Error::Folder(format!("cannot create {}: {e}", root.display())))?;
    let dir = root.join(shard.folder_name(name));
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Folder(format!(
                "{} exists: shard {shard} has run there before; continue it with \
                 `quantdepth run --resume {}`, or remove it to start the shard again",
                dir.display(),
                dir.display()
            )))
        }
        Err(e) => {
            return Err(Error::Folder(format!(
                "cannot create {}: {e}",
                dir.display()
            )))
        }
    }
    for sub in ["plots", "points"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
            Error::Folder(format!("cannot create {}: {e}", dir.join(sub).display()))
        })?;
    }
    ShardFile { shard, points }.write(&dir)?;
    Ok(dir)
}

/// The points a folder runs: for a shard folder (with `shard.json`) the
/// points of its shard, otherwise all of `points`. The shard's points are
/// recomputed from the config and must agree with the file.
pub fn restrict(folder: &Path, cfg: &Config, points: Vec<RunPoint>) -> Result<Vec<RunPoint>> {
    let Some(sf) = read_checked(folder, cfg)? else {
        return Ok(points);
    };
    Ok(points
        .into_iter()
        .filter(|p| sf.points.contains(&p.index))
        .collect())
}

/// Reads a folder's `shard.json` ([`ShardFile::read`], `None` when the
/// folder is not a shard) and checks that its config assigns the shard the
/// points it lists. `run --resume` calls it before deleting anything.
pub fn read_checked(folder: &Path, cfg: &Config) -> Result<Option<ShardFile>> {
    let Some(sf) = ShardFile::read(folder)? else {
        return Ok(None);
    };
    let expected = shard_points(&sweep_costs(cfg)?, sf.shard);
    if expected != sf.points {
        return Err(Error::Folder(format!(
            "{}/{SHARD_FILE} lists points {:?} for shard {}, but its config assigns {:?}: \
             the folder was written by another version of the shard split",
            folder.display(),
            sf.points,
            sf.shard,
            expected
        )));
    }
    Ok(Some(sf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_k_of_m_and_refuses_out_of_range() {
        assert_eq!(
            Shard::parse("2/3", no_env).unwrap(),
            Shard { index: 2, count: 3 }
        );
        assert_eq!(
            Shard::parse(" 0 / 1 ", no_env).unwrap(),
            Shard { index: 0, count: 1 }
        );
        for bad in ["3/3", "0/0", "1", "a/3", "-1/3", "1/3/4", ""] {
            let e = Shard::parse(bad, no_env).unwrap_err().to_string();
            assert!(e.contains("shard") || e.contains("K"), "{bad}: {e}");
        }
        let e = Shard::parse("3/3", no_env).unwrap_err().to_string();
        assert!(e.contains("0..3"), "{e}");
    }

    #[test]
    fn slurm_reads_the_array_variables() {
        let env = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("1".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("0".to_string()),
            _ => None,
        };
        assert_eq!(
            Shard::parse("slurm", env).unwrap(),
            Shard { index: 1, count: 4 }
        );
        let e = Shard::parse("slurm", no_env).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID is not set"), "{e}");
        let one_based = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("3".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("3".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("1".to_string()),
            _ => None,
        };
        let e = Shard::parse("slurm", one_based).unwrap_err().to_string();
        assert!(e.contains("numbered from 0"), "{e}");
    }

    #[test]
    fn every_point_lands_in_exactly_one_shard() {
        let costs: Vec<u128> = (0..17).map(|i| (i * 7919 % 23) as u128 + 1).collect();
        for m in 1..=6 {
            let mut seen = vec![0; costs.len()];
            for k in 0..m {
                for i in shard_points(&costs, Shard { index: k, count: m }) {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&s| s == 1), "M = {m}: {seen:?}");
        }
    }

    #[test]
    fn equal_costs_split_into_counts_differing_by_at_most_one() {
        let costs = vec![5u128; 10];
        let a = assign(&costs, 3);
        let counts: Vec<usize> = (0..3)
            .map(|k| a.iter().filter(|&&s| s == k).count())
            .collect();
        // 10 = 4 + 3 + 3; the first shards take the extra point.
        assert_eq!(counts, vec![4, 3, 3]);
    }

    #[test]
    fn loads_are_balanced_within_the_greedy_bound() {
        // Graham's list-scheduling bound: max load ≤ total/M + (1 − 1/M)·max cost.
        let costs: Vec<u128> = (0..40).map(|i| ((i * i * 37) % 101 + 1) as u128).collect();
        for m in [2usize, 3, 5, 8] {
            let a = assign(&costs, m);
            let mut load = vec![0u128; m];
            for (i, &k) in a.iter().enumerate() {
                load[k] += costs[i];
            }
            let total: u128 = costs.iter().sum();
            let max_cost = *costs.iter().max().unwrap();
            let max_load = *load.iter().max().unwrap() as f64;
            let bound = total as f64 / m as f64 + (1.0 - 1.0 / m as f64) * max_cost as f64;
            assert!(max_load <= bound, "M = {m}: {load:?}, bound {bound}");
        }
    }

    #[test]
    fn assignment_is_a_pure_function_of_the_costs() {
        // Known answer: costs 8, 7, 6, 5, 4 on 2 shards → LPT gives
        // 8→0, 7→1, 6→1 (7 < 8), 5→0 (8 < 13), 4→0 (13 = 13, lower shard).
        let costs = [8u128, 7, 6, 5, 4];
        assert_eq!(assign(&costs, 2), vec![0, 1, 1, 0, 0]);
        assert_eq!(assign(&costs, 2), assign(&costs, 2));
        // More shards than points: the extra shards are empty.
        assert_eq!(assign(&[3, 1], 4), vec![0, 1]);
    }

    /// The heap-based split equals the plain rule it implements (each point,
    /// largest first, to the least-loaded shard of lowest index, scanning
    /// all M loads) on mixed costs, and a count far beyond the points gives
    /// the split of as many shards as points, without M loads in memory.
    #[test]
    fn assignment_equals_the_scanning_rule_and_ignores_empty_shards() {
        let scan = |costs: &[u128], count: usize| -> Vec<usize> {
            let mut order: Vec<usize> = (0..costs.len()).collect();
            order.sort_by(|&a, &b| costs[b].cmp(&costs[a]).then(a.cmp(&b)));
            let mut load = vec![0u128; count];
            let mut out = vec![0; costs.len()];
            for i in order {
                let k = (0..count).min_by_key(|&k| (load[k], k)).unwrap();
                out[i] = k;
                load[k] += costs[i];
            }
            out
        };
        let costs: Vec<u128> = (0..60).map(|i| ((i * i * 37) % 23) as u128).collect();
        for m in [1usize, 2, 3, 7, 59, 60, 61, 200] {
            assert_eq!(assign(&costs, m), scan(&costs, m), "M = {m}");
        }
        assert_eq!(assign(&costs, MAX_SHARDS), scan(&costs, costs.len()));
        assert_eq!(assign(&costs, usize::MAX), scan(&costs, costs.len()));
        assert_eq!(assign(&[], MAX_SHARDS), Vec::<usize>::new());
    }

    #[test]
    fn counts_beyond_the_cap_and_bad_records_are_refused() {
        let e = Shard::new(0, MAX_SHARDS + 1, "--shard")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 100000"), "{e}");
        Shard::new(MAX_SHARDS - 1, MAX_SHARDS, "--shard").unwrap();
        let e = Shard::parse("0/18446744073709551615", no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 100000"), "{e}");
        let rec = |index, count, points: Vec<usize>| ShardFile {
            shard: Shard { index, count },
            points,
        };
        let p = Path::new("s/shard.json");
        assert!(rec(0, 2, vec![0, 2]).check(p).is_ok());
        for (bad, why) in [
            (rec(0, 0, vec![]), "at least 1"),
            (rec(0, usize::MAX, vec![]), "at most 100000"),
            (rec(2, 2, vec![]), "K must lie in 0..2"),
            (rec(0, 2, vec![1, 1]), "not strictly increasing"),
        ] {
            let e = bad.check(p).unwrap_err().to_string();
            assert!(
                e.contains("s/shard.json is not a valid shard record") && e.contains(why),
                "{e}"
            );
        }
    }

    #[test]
    fn cost_grows_with_width_squared_and_backward() {
        use crate::experiment::config::Config;
        let cfg = Config::from_toml(
            "name = \"t\"\n[network]\ndepth = 10\nsamples = 2\nstates = 4\n[sweep]\nwidth = [32, 64]\n[inputs]\nc0 = [0.5, 0.9]\npairs = 3\n",
        )
        .unwrap();
        let p = cfg.points().unwrap();
        let g = crate::sim::Weights::Gaussian;
        // 2 samples × 10 layers × 32² × (2·3·2 = 12 vectors).
        assert_eq!(point_cost(&p[0], 10, g, 0), 2 * 10 * 32 * 32 * 12);
        assert_eq!(point_cost(&p[1], 10, g, 0), 4 * point_cost(&p[0], 10, g, 0));
        assert_eq!(point_cost(&p[0], 10, g, 2), 5 * point_cost(&p[0], 10, g, 0));
        // Linear in the depth that runs; Hadamard: 3·n·log₂n = 3·32·5 per vector.
        assert_eq!(point_cost(&p[0], 5, g, 0), point_cost(&p[0], 10, g, 0) / 2);
        let h = crate::sim::Weights::Hadamard;
        assert_eq!(point_cost(&p[0], 10, h, 0), 2 * 10 * (3 * 32 * 5) * 12);
    }
}
