//! Merging shard folders into one results folder.
//!
//! A shard folder is an ordinary results folder (see
//! [`crate::experiment::folder`]) that holds the points of one shard, plus
//! `shard.json` naming the shard (K of M) and the points assigned to it.
//! [`check`] accepts a set of folders only when they come from one config
//! and one quantdepth version and hold every point of the sweep exactly
//! once; otherwise it says what is wrong: the missing points and the shard
//! that should have them (and how to rerun it), duplicated points, other
//! configs or versions, no input.
//!
//! Long because checking, copying and naming errors all read one merge's
//! `Input`s and `Checked` (kept private here); the unit tests are a fifth.

use crate::error::{Error, Result};
use crate::experiment::config::Config;
use crate::experiment::folder::{self, Commit};
use crate::experiment::runner::{finish_folder, RunReport};
use crate::experiment::shard::{assign, sweep_costs, Shard, ShardFile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// What merge reads of one input folder.
#[derive(Debug, Clone)]
pub struct Input {
    /// The folder.
    pub path: PathBuf,
    /// quantdepth version that wrote it (meta.json).
    pub version: String,
    /// Its config.toml, as run.
    pub config_text: String,
    /// Its status (meta.json).
    pub status: String,
    /// The points its commit record names.
    pub points: Vec<usize>,
    /// The shard it ran, if it is a shard folder.
    pub shard: Option<ShardFile>,
}

impl Input {
    /// Reads a folder's commit record, config and shard file.
    pub fn read(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Err(Error::Folder(format!(
                "{} is not a folder: give the shard results folders (DIR/shards/<name>-shard-K-of-M)",
                path.display()
            )));
        }
        let meta_path = path.join("meta.json");
        let meta: serde_json::Value =
            crate::safe_fs::read_capped_text(&meta_path, folder::META_CAP)
                .map_err(|e| {
                    Error::Folder(format!(
                        "{} is not a results folder (cannot read meta.json: {e})",
                        path.display()
                    ))
                })
                .and_then(|t| {
                    serde_json::from_str(&t).map_err(|e| {
                        Error::Folder(format!("{} does not parse: {e}", meta_path.display()))
                    })
                })?;
        let field = |k: &str| -> Result<&serde_json::Value> {
            meta.get(k).ok_or_else(|| {
                Error::Folder(format!(
                    "{} has no \"{k}\": it was written by a quantdepth without shard support",
                    meta_path.display()
                ))
            })
        };
        let version = field("version")?.as_str().unwrap_or_default().to_string();
        let status = field("status")?.as_str().unwrap_or_default().to_string();
        let points = field("points")?
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|v| v.as_u64().and_then(|x| usize::try_from(x).ok()))
                    .collect::<Option<Vec<usize>>>()
            })
            .ok_or_else(|| {
                Error::Folder(format!(
                    "{}: \"points\" is not a list of point indices",
                    meta_path.display()
                ))
            })?;
        let config_path = path.join("config.toml");
        let config_text = folder::read_text(&config_path, folder::CONFIG_CAP)?;
        Ok(Input {
            path: path.to_path_buf(),
            version,
            config_text,
            status,
            points,
            shard: ShardFile::read(path)?,
        })
    }

    fn describe(&self) -> String {
        match &self.shard {
            Some(s) => format!("shard {} ({})", s.shard, self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

/// The first line where two texts differ, as "line N: `a` vs `b`".
fn first_difference(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i).copied(), lb.get(i).copied());
        if x != y {
            return format!(
                "line {}: `{}` vs `{}`",
                i + 1,
                x.unwrap_or("(end of file)"),
                y.unwrap_or("(end of file)")
            );
        }
    }
    "the same lines, different line endings".into()
}

/// A set of folders accepted for merging.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The config they were all run from.
    pub config: Config,
    /// Its text (config.toml).
    pub config_text: String,
    /// For every point of the sweep, in order, the input that holds it.
    pub source: Vec<usize>,
}

/// Checks that `inputs` come from one config and one version (this
/// quantdepth's) and hold every point of the sweep exactly once.
pub fn check(inputs: &[Input]) -> Result<Checked> {
    let Some(first) = inputs.first() else {
        return Err(Error::Folder(
            "nothing to merge: give the shard folders, quantdepth merge OUT SHARD_DIR...".into(),
        ));
    };
    let ours = env!("CARGO_PKG_VERSION");
    for (i, inp) in inputs.iter().enumerate() {
        if let Some(j) = inputs[..i].iter().position(|o| o.path == inp.path) {
            return Err(Error::Folder(format!(
                "{} is given twice (arguments {} and {}): give each shard once",
                inp.path.display(),
                j + 1,
                i + 1
            )));
        }
        if inp.version != first.version {
            return Err(Error::Folder(format!(
                "the shards come from different quantdepth versions: {} was written by {}, {} by {}; \
                 rerun the shards with one version",
                first.describe(),
                first.version,
                inp.describe(),
                inp.version
            )));
        }
        if inp.config_text != first.config_text {
            return Err(Error::Folder(format!(
                "the shards come from different configs: config.toml of {} and of {} differ at {}; \
                 merge only the shards of one sweep",
                first.describe(),
                inp.describe(),
                first_difference(&first.config_text, &inp.config_text)
            )));
        }
    }
    if first.version != ours {
        return Err(Error::Folder(format!(
            "the shards were written by quantdepth {}, this is quantdepth {ours}: merge them with {}",
            first.version, first.version
        )));
    }
    let counts: Vec<(usize, &Input)> = inputs
        .iter()
        .filter_map(|i| i.shard.as_ref().map(|s| (s.shard.count, i)))
        .collect();
    if let Some((m, other)) = counts.iter().find(|(m, _)| *m != counts[0].0) {
        return Err(Error::Folder(format!(
            "the shards split the sweep differently: {} is one of {}, {} one of {m}; \
             merge the shards of one submission",
            counts[0].1.describe(),
            counts[0].0,
            other.describe()
        )));
    }
    let config = Config::from_toml(&first.config_text).map_err(|e| {
        Error::Folder(format!(
            "{}/config.toml does not parse: {e}",
            first.path.display()
        ))
    })?;
    let costs = sweep_costs(&config)?;
    let total = costs.len();
    let mut source: Vec<Option<usize>> = vec![None; total];
    for (i, inp) in inputs.iter().enumerate() {
        for &p in &inp.points {
            if p >= total {
                return Err(Error::Folder(format!(
                    "{} holds point {p}, but the sweep of its config has {total} points (0..{})",
                    inp.describe(),
                    total.saturating_sub(1)
                )));
            }
            if let Some(j) = source[p] {
                return Err(Error::Folder(format!(
                    "point {p} is held twice, by {} and by {}: give each point once",
                    inputs[j].describe(),
                    inp.describe()
                )));
            }
            source[p] = Some(i);
        }
    }
    let missing: Vec<usize> = (0..total).filter(|&p| source[p].is_none()).collect();
    if !missing.is_empty() {
        return Err(Error::Folder(missing_message(
            inputs, &config, &costs, &missing, total,
        )));
    }
    Ok(Checked {
        config,
        config_text: first.config_text.clone(),
        source: source
            .into_iter()
            .map(|s| s.expect("none missing"))
            .collect(),
    })
}

/// "missing N of T points: …", one line per shard that should have them.
fn missing_message(
    inputs: &[Input],
    config: &Config,
    costs: &[u128],
    missing: &[usize],
    total: usize,
) -> String {
    let held = total - missing.len();
    let mut msg = format!(
        "{} of the sweep's {total} points {} missing{}:",
        missing.len(),
        if missing.len() == 1 { "is" } else { "are" },
        if held == 0 {
            " (the folders hold no finished point)"
        } else {
            ""
        }
    );
    let m = inputs
        .iter()
        .find_map(|i| i.shard.as_ref().map(|s| s.shard.count));
    let Some(m) = m else {
        msg += &format!(
            "\n  {}: none of the folders given is a shard folder holding them",
            list(missing)
        );
        return msg;
    };
    let assignment = assign(costs, m);
    let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &p in missing {
        by_shard.entry(assignment[p]).or_default().push(p);
    }
    for (k, pts) in by_shard {
        let shard = Shard { index: k, count: m };
        let folder = inputs
            .iter()
            .find(|i| i.shard.as_ref().is_some_and(|s| s.shard == shard));
        let how = match folder {
            Some(f) => {
                let assigned = f.shard.as_ref().map_or(0, |s| s.points.len());
                format!(
                    "{} is {}, holds {} of its {assigned} points; rerun it alone with \
                     `quantdepth run --resume {}` (or sbatch --array={k} on the submission's array.sbatch)",
                    f.path.display(),
                    f.status,
                    f.points.len(),
                    f.path.display()
                )
            }
            None => format!(
                "no folder of it was given; run it with `quantdepth run CONFIG --shard {shard}` \
                 (folder {})",
                shard.folder_name(&config.name)
            ),
        };
        msg += &format!("\n  {} (shard {shard} should have them): {how}", list(&pts));
    }
    msg
}

/// "point 3" or "points 1, 3".
fn list(points: &[usize]) -> String {
    let s: Vec<String> = points.iter().map(usize::to_string).collect();
    format!(
        "point{} {}",
        if points.len() == 1 { "" } else { "s" },
        s.join(", ")
    )
}

/// One shard as the merged folder's `shards.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Its folder.
    pub folder: String,
    /// Which shard (absent for a folder that is not a shard).
    pub shard: Option<Shard>,
    /// The points taken from it.
    pub points: Vec<usize>,
    /// Backend and adapter it ran on.
    pub backend: String,
    /// Adapter.
    pub adapter: String,
    /// Host it ran on.
    pub host: String,
    /// When it started.
    pub started: String,
    /// Its wall time (s).
    pub wall_seconds: f64,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::Folder(format!("cannot {what} {}: {e}", p.display()))
}

/// Merges shard folders into a new results folder `out`: checks them
/// ([`check`]), copies every point's record and plots, then rebuilds the
/// aggregates (curves, summary, ξ scaling, plots) from the records exactly
/// as an unsharded run writes them. The folder is built under a temporary
/// name beside `out` and renamed at the end, so `out` never exists half
/// written. `shards.json` in it records where each point came from.
pub fn merge(out: &Path, dirs: &[PathBuf]) -> Result<RunReport> {
    merge_with(out, dirs, &AtomicBool::new(false))
}

/// `path` with its longest existing prefix canonicalized (links resolved)
/// and the rest appended as written.
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            return rest.iter().rev().fold(c, |p, part| p.join(part));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(up), Some(name)) => {
                rest.push(name.to_os_string());
                cur = up;
            }
            _ => return abs,
        }
    }
}

/// [`merge`], stopping with [`Error::Interrupted`] when `cancel` is set
/// (checked between copied files): the temporary folder is removed and
/// `out` is not created.
pub fn merge_with(out: &Path, dirs: &[PathBuf], cancel: &AtomicBool) -> Result<RunReport> {
    let read_all = || {
        dirs.iter()
            .map(|d| Input::read(d))
            .collect::<Result<Vec<_>>>()
    };
    read_all()?;
    // Locked while read (no resume of an input meanwhile), read again under
    // the locks; a folder given twice is locked once (check refuses it).
    let mut unique: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.canonicalize().unwrap_or(d.clone()))
        .collect();
    unique.sort();
    unique.dedup();
    let _locks = unique
        .iter()
        .map(|d| crate::experiment::lock::FolderLock::acquire_if_writable(d))
        .collect::<Result<Vec<_>>>()?;
    let inputs = read_all()?;
    let checked = check(&inputs)?;
    if out.exists() {
        return Err(Error::Folder(format!(
            "{} exists: give a new folder for the merged results (merge never overwrites a folder)",
            out.display()
        )));
    }
    let name = out
        .file_name()
        .ok_or_else(|| Error::Folder(format!("{} is not a folder name", out.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The merged folder inside a shard folder would be written into a results
    // folder (and count as a stranger's files there): refused before anything
    // is created.
    let resolved = resolve_existing_prefix(&parent);
    if let Some(inside) = unique.iter().find(|u| resolved.starts_with(u)) {
        return Err(Error::Folder(format!(
            "{} lies inside the shard folder {}: give a merged folder outside every shard \
             (e.g. beside them)",
            out.display(),
            inside.display()
        )));
    }
    std::fs::create_dir_all(&parent).map_err(|e| io("create", &parent, e))?;
    let tmp = parent.join(format!(".{name}.merging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = build(&tmp, &inputs, &checked, cancel)
        .map_err(|e| name_sources(e, &tmp, out, &inputs, &checked))
        .and_then(|report| {
            std::fs::rename(&tmp, out).map_err(|e| io("rename the merged folder to", out, e))?;
            Ok(RunReport {
                folder: out.to_path_buf(),
                ..report
            })
        });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// An error met while building the merged folder under its temporary name
/// `tmp`, with that name (which is removed) replaced by the file it came
/// from: a point's record or plot by the shard folder holding it, anything
/// else by `out`.
fn name_sources(e: Error, tmp: &Path, out: &Path, inputs: &[Input], checked: &Checked) -> Error {
    let mut msg = e.to_string();
    let tmp_text = tmp.display().to_string();
    if !msg.contains(&tmp_text) {
        return e;
    }
    for (p, &src) in checked.source.iter().enumerate() {
        let from = &inputs[src].path;
        let (ours, theirs) = (folder::record_path(tmp, p), folder::record_path(from, p));
        msg = msg.replace(&ours.display().to_string(), &theirs.display().to_string());
        let prefix = format!("point{p:03}-");
        let (ours, theirs) = (
            tmp.join("plots").join(&prefix),
            from.join("plots").join(&prefix),
        );
        msg = msg.replace(&ours.display().to_string(), &theirs.display().to_string());
    }
    Error::Folder(msg.replace(&tmp_text, &out.display().to_string()))
}

fn build(
    dir: &Path,
    inputs: &[Input],
    checked: &Checked,
    cancel: &AtomicBool,
) -> Result<RunReport> {
    let stop = || -> Result<()> {
        if cancel.load(Ordering::Relaxed) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    };
    for sub in ["", "plots", "points"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| io("create", &dir.join(sub), e))?;
    }
    folder::write_atomic(&dir.join("config.toml"), checked.config_text.as_bytes())?;
    // The plots each shard's quantdepth wrote (its plots/.written; every
    // file in plots/ for a shard written before the list existed): a file a
    // user added to a shard's plots/ is not carried into the merge.
    let plot_names: Vec<Vec<String>> = inputs
        .iter()
        .map(|i| -> Result<Vec<String>> {
            let written = folder::plots_written(&i.path)?;
            Ok(std::fs::read_dir(i.path.join("plots"))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != folder::PLOTS_MANIFEST)
                        .filter(|n| written.is_empty() || written.contains(n))
                        .collect()
                })
                .unwrap_or_default())
        })
        .collect::<Result<_>>()?;
    for (p, &src) in checked.source.iter().enumerate() {
        let from = &inputs[src].path;
        stop()?;
        let rec = folder::record_path(from, p);
        folder::copy_file(&rec, &folder::record_path(dir, p), folder::RECORD_CAP)?;
        let prefix = format!("point{p:03}-");
        let names: Vec<&String> = plot_names[src]
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        folder::note_plots_written(dir, names.iter().map(|n| n.to_string()))?;
        for n in names {
            stop()?;
            let to = dir.join("plots").join(n);
            folder::copy_file(&from.join("plots").join(n), &to, folder::PLOT_CAP)?;
        }
    }
    stop()?;
    let commits = inputs
        .iter()
        .map(|i| Commit::read(&i.path))
        .collect::<Result<Vec<_>>>()?;
    let records: Vec<ShardRecord> = inputs
        .iter()
        .zip(&commits)
        .enumerate()
        .map(|(k, (i, c))| ShardRecord {
            folder: i.path.display().to_string(),
            shard: i.shard.as_ref().map(|s| s.shard),
            points: (0..checked.source.len())
                .filter(|&p| checked.source[p] == k)
                .collect(),
            backend: c.backend.clone(),
            adapter: c.adapter.clone(),
            host: c.host.clone(),
            started: c.started.clone(),
            wall_seconds: c.wall_seconds,
        })
        .collect();
    folder::write_json(&dir.join("shards.json"), &records)?;
    let mut commit = commits[0].clone();
    let mut backends: Vec<&str> = commits.iter().map(|c| c.backend.as_str()).collect();
    backends.sort_unstable();
    backends.dedup();
    commit.backend = backends.join("+");
    let mut adapters: Vec<&str> = commits.iter().map(|c| c.adapter.as_str()).collect();
    adapters.sort_unstable();
    adapters.dedup();
    commit.adapter = adapters.join("; ");
    commit.backend_note = format!(
        "merged from {} shard folder(s), see shards.json",
        inputs.len()
    );
    commit.started = commits
        .iter()
        .map(|c| c.started.clone())
        .min()
        .unwrap_or_default();
    commit.wall_seconds = commits.iter().map(|c| c.wall_seconds).sum();
    commit.sessions = commits.iter().map(|c| c.sessions).sum();
    commit.points_total = checked.source.len();
    commit.points = (0..checked.source.len()).collect();
    commit.points_done = commit.points.len();
    commit.status = "merging".into();
    commit.complete = false;
    commit.error = None;
    commit.failed_point = None;
    commit.write(dir)?;
    finish_folder(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str =
        "name = \"m\"\n[network]\nwidth = 8\ndepth = 2\n[sweep]\nstates = [2, 3, 4, 5]\n";

    fn input(shard: Option<(usize, usize)>, points: &[usize]) -> Input {
        let name = shard.map_or("plain".to_string(), |(k, m)| format!("m-shard-{k}-of-{m}"));
        Input {
            path: PathBuf::from(format!("/r/{name}")),
            version: env!("CARGO_PKG_VERSION").into(),
            config_text: CFG.into(),
            status: "complete".into(),
            points: points.to_vec(),
            shard: shard.map(|(k, m)| {
                let costs = sweep_costs(&Config::from_toml(CFG).unwrap()).unwrap();
                let shard = Shard { index: k, count: m };
                ShardFile {
                    shard,
                    points: crate::experiment::shard::shard_points(&costs, shard),
                }
            }),
        }
    }

    /// Four equal-cost points on two shards: 0, 2 → shard 0; 1, 3 → shard 1.
    fn two_shards() -> Vec<Input> {
        vec![input(Some((0, 2)), &[0, 2]), input(Some((1, 2)), &[1, 3])]
    }

    #[test]
    fn complete_shards_are_accepted_in_any_order() {
        let mut inputs = two_shards();
        assert_eq!(check(&inputs).unwrap().source, vec![0, 1, 0, 1]);
        inputs.reverse();
        assert_eq!(check(&inputs).unwrap().source, vec![1, 0, 1, 0]);
    }

    #[test]
    fn empty_input_is_refused() {
        let e = check(&[]).unwrap_err().to_string();
        assert!(e.contains("nothing to merge"), "{e}");
    }

    #[test]
    fn missing_points_are_named_with_the_shard_that_should_have_them() {
        let mut inputs = two_shards();
        inputs[1].points = vec![1];
        inputs[1].status = "interrupted".into();
        let e = check(&inputs).unwrap_err().to_string();
        assert!(e.contains("1 of the sweep's 4 points is missing"), "{e}");
        assert!(
            e.contains(":\n  point 3 (shard 1/2 should have them)"),
            "{e}"
        );
        assert!(e.contains("is interrupted, holds 1 of its 2 points"), "{e}");
        assert!(
            e.contains("quantdepth run --resume /r/m-shard-1-of-2"),
            "{e}"
        );
        // A shard not given at all.
        let e = check(&inputs[..1]).unwrap_err().to_string();
        assert!(
            e.contains("points 1, 3 (shard 1/2 should have them): no folder of it was given"),
            "{e}"
        );
        assert!(e.contains("--shard 1/2"), "{e}");
    }

    #[test]
    fn duplicated_points_are_refused() {
        let mut inputs = two_shards();
        inputs.push(input(None, &[0, 1, 2, 3]));
        let e = check(&inputs).unwrap_err().to_string();
        assert!(
            e.contains("point 0 is held twice, by shard 0/2 (/r/m-shard-0-of-2) and by /r/plain"),
            "{e}"
        );
        let mut twice = two_shards();
        twice.push(twice[0].clone());
        let e = check(&twice).unwrap_err().to_string();
        assert!(e.contains("is given twice (arguments 1 and 3)"), "{e}");
    }

    #[test]
    fn other_configs_and_versions_are_refused() {
        let mut inputs = two_shards();
        inputs[1].config_text = CFG.replace("width = 8", "width = 16");
        let e = check(&inputs).unwrap_err().to_string();
        assert!(e.contains("different configs"), "{e}");
        assert!(e.contains("line 3: `width = 8` vs `width = 16`"), "{e}");
        let mut inputs = two_shards();
        inputs[0].version = "0.0.1".into();
        let e = check(&inputs).unwrap_err().to_string();
        assert!(e.contains("different quantdepth versions"), "{e}");
        let mut inputs = two_shards();
        for i in &mut inputs {
            i.version = "9.9.9".into();
        }
        let e = check(&inputs).unwrap_err().to_string();
        assert!(e.contains("written by quantdepth 9.9.9"), "{e}");
        let mut inputs = two_shards();
        inputs[1] = input(Some((1, 3)), &[1, 3]);
        let e = check(&inputs).unwrap_err().to_string();
        assert!(e.contains("split the sweep differently"), "{e}");
    }
}
