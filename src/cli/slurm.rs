//! `quantdepth slurm CONFIG --shards M`: a sweep as a Slurm job array plus a
//! merge job that runs once every array task has succeeded.
//!
//! Writes, in one submission folder:
//!
//! ```text
//! DIR/config.toml      the config the jobs run (a copy: editing the original later changes nothing)
//! DIR/array.sbatch     the array, one task per shard: quantdepth run --shard K/M (or --resume)
//! DIR/merge.sbatch     quantdepth merge DIR/merged DIR/shards/*
//! DIR/logs/            shard-K-job<J>.out per task, merge-job<J>.out
//! DIR/shards/          one results folder per shard, <name>-shard-K-of-M
//! DIR/merged/          the merged results folder (written by the merge job)
//! ```
//!
//! `--submit` calls `sbatch --parsable` for the array, then for the merge job
//! with `--dependency=afterok:<array id>` and `--kill-on-invalid-dep=yes`
//! (a failed shard cancels the merge instead of leaving it pending forever).

use super::submission::{check_ours, Made, OURS};
use crate::outln;
use anyhow::{bail, Context, Result};
use clap::Args;
use quantdepth::experiment::shard::{assign, sweep_costs, Shard};
use quantdepth::experiment::Config;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Options of `quantdepth slurm`.
#[derive(Args)]
pub struct SlurmArgs {
    /// The experiment config (TOML).
    pub config: PathBuf,
    /// Number of array tasks M; each runs one shard of the sweep's points.
    #[arg(long, value_name = "M")]
    pub shards: usize,
    /// Slurm partition (sbatch --partition) [default: the cluster's default].
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// Time limit per array task (sbatch --time, e.g. 2:00:00 or 1-00:00:00).
    #[arg(long, value_name = "T")]
    pub time: Option<String>,
    /// GPUs per array task (sbatch --gpus-per-task).
    #[arg(long = "gpus-per-task", value_name = "G")]
    pub gpus_per_task: Option<usize>,
    /// CPU cores per array task (sbatch --cpus-per-task) [default: 1].
    #[arg(long = "cpus-per-task", value_name = "C")]
    pub cpus_per_task: Option<usize>,
    /// The submission folder [default: <outputs.dir or results>/<name>-slurm-<UTC timestamp>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Submit the array and the merge job with sbatch and print their job ids.
    #[arg(long)]
    pub submit: bool,
}

/// What the scripts need to know.
pub struct Plan {
    /// The quantdepth binary the jobs run (absolute).
    pub exe: PathBuf,
    /// Absolute submission folder.
    pub dir: PathBuf,
    /// Experiment name.
    pub name: String,
    /// M.
    pub shards: usize,
    /// sbatch options.
    pub partition: Option<String>,
    /// sbatch --time.
    pub time: Option<String>,
    /// sbatch --gpus-per-task.
    pub gpus_per_task: Option<usize>,
    /// sbatch --cpus-per-task.
    pub cpus_per_task: usize,
}

/// Quotes a string for a POSIX shell: 'it'\''s'.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("the path {} is not valid UTF-8", p.display()))
}

impl Plan {
    fn common_header(&self, s: &mut String) {
        if let Some(p) = &self.partition {
            let _ = writeln!(s, "#SBATCH --partition={p}");
        }
    }

    /// The array script: task K runs shard K/M into DIR/shards, or resumes
    /// its folder when one is already there (a requeued or resubmitted task).
    pub fn array_script(&self) -> Result<String> {
        let dir = path_str(&self.dir)?;
        let exe = shell_quote(path_str(&self.exe)?);
        let m = self.shards;
        let mut s = String::from("#!/bin/bash\n");
        let _ = writeln!(s, "#SBATCH --job-name=qd-{}", job_name(&self.name));
        let _ = writeln!(s, "#SBATCH --array=0-{}", m - 1);
        let _ = writeln!(s, "#SBATCH --output={dir}/logs/shard-%a-job%A.out");
        let _ = writeln!(s, "#SBATCH --ntasks=1");
        let _ = writeln!(s, "#SBATCH --cpus-per-task={}", self.cpus_per_task);
        self.common_header(&mut s);
        if let Some(t) = &self.time {
            let _ = writeln!(s, "#SBATCH --time={t}");
        }
        if let Some(g) = self.gpus_per_task {
            let _ = writeln!(s, "#SBATCH --gpus-per-task={g}");
        }
        let _ = write!(
            s,
            r#"# Written by `quantdepth slurm`: one task per shard of the sweep in config.toml.
# Rerun one shard alone with: sbatch --array=K {array}
set -euo pipefail
K="${{SLURM_ARRAY_TASK_ID:?run this script with sbatch --array}}"
DIR={qdir}
NAME={name}
SHARD="$DIR/shards/$NAME-shard-$K-of-{m}"
echo "quantdepth shard $K/{m} on $(hostname), started $(date -u +%FT%TZ)"
if [ -e "$SHARD" ]; then
  exec {exe} run --resume "$SHARD"
else
  exec {exe} run "$DIR/config.toml" --shard "$K/{m}" --out "$DIR/shards"
fi
"#,
            array = shell_quote(&format!("{dir}/array.sbatch")),
            qdir = shell_quote(dir),
            name = shell_quote(&self.name),
        );
        Ok(s)
    }

    /// The merge script, submitted with --dependency=afterok on the array.
    pub fn merge_script(&self) -> Result<String> {
        let dir = path_str(&self.dir)?;
        let exe = shell_quote(path_str(&self.exe)?);
        let mut s = String::from("#!/bin/bash\n");
        let _ = writeln!(s, "#SBATCH --job-name=qd-{}-merge", job_name(&self.name));
        let _ = writeln!(s, "#SBATCH --output={dir}/logs/merge-job%j.out");
        let _ = writeln!(s, "#SBATCH --ntasks=1");
        let _ = writeln!(s, "#SBATCH --cpus-per-task=1");
        self.common_header(&mut s);
        if let Some(t) = &self.time {
            let _ = writeln!(s, "#SBATCH --time={t}");
        }
        let shards: Vec<String> = (0..self.shards)
            .map(|k| format!("\"$DIR/shards/$NAME-shard-{k}-of-{}\"", self.shards))
            .collect();
        let _ = write!(
            s,
            r#"# Written by `quantdepth slurm`: merges the shards into one results folder.
set -euo pipefail
DIR={qdir}
NAME={name}
exec {exe} merge "$DIR/merged" \
  {shards}
"#,
            qdir = shell_quote(dir),
            name = shell_quote(&self.name),
            shards = shards.join(" \\\n  "),
        );
        Ok(s)
    }
}

/// The job name: the experiment name with anything but letters, digits,
/// `_`, `-` and `.` replaced by `_` (it is written into an #SBATCH line).
fn job_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn check_sbatch_value(flag: &str, v: &str, allowed: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || allowed.contains(c));
    if !ok {
        bail!(
            "{flag} {v:?}: only letters, digits and {allowed:?} are accepted (it is written into an #SBATCH line)"
        );
    }
    Ok(())
}

/// Most GPUs one array task asks for (a task runs on one node; the
/// largest nodes hold 8 to 16 GPUs).
const MAX_GPUS_PER_TASK: usize = 64;

/// Longest partition name accepted (Slurm's own are short identifiers).
const MAX_PARTITION_NAME: usize = 64;

/// Checks `--partition`: one name or a comma-separated list of names, each
/// 1 to [`MAX_PARTITION_NAME`] letters, digits, `_`, `-` or `.` (it is
/// written into an #SBATCH line).
fn check_partition(p: &str) -> Result<()> {
    if let Some(name) = p
        .split(',')
        .find(|n| n.is_empty() || n.len() > MAX_PARTITION_NAME)
    {
        let shown: String = name.chars().take(20).collect();
        bail!(
            "--partition: the name {:?}{} is {} characters; give 1 to {MAX_PARTITION_NAME} \
             (a comma-separated list for several partitions)",
            shown,
            if name.len() > 20 { "…" } else { "" },
            name.len()
        );
    }
    check_sbatch_value("--partition", p, "_-.,")
}

/// Longest `--time` accepted, in days (sbatch stores limits in minutes;
/// a year is beyond any cluster's MaxTime: UNLIMITED asks for no limit).
const MAX_TIME_DAYS: u64 = 365;

/// Checks `--time` against sbatch's time formats: "M", "M:S", "H:M:S",
/// "D-H", "D-H:M", "D-H:M:S" (each field digits; minutes and seconds
/// below 60 where an hour or a minute field precedes them), or
/// "UNLIMITED"/"INFINITE"; a limit of zero is refused (sbatch would take
/// it as no limit). Returns the limit in seconds (`None`: unlimited).
fn check_slurm_time(t: &str) -> Result<Option<u64>> {
    let forms = "give minutes (90), M:S, H:M:S (2:00:00), D-H, D-H:M or D-H:M:S \
                 (1-00:00:00), or UNLIMITED";
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return Ok(None);
    }
    let bad = |why: &str| anyhow::anyhow!("--time {t:?}: {why}; {forms}");
    let (days, rest) = match t.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, t),
    };
    let field = |f: &str| -> Result<u64> {
        if f.is_empty() || !f.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad(&format!("{f:?} is not a whole number")));
        }
        f.parse::<u64>()
            .map_err(|_| bad(&format!("{f} is too large")))
    };
    let parts = rest.split(':').map(field).collect::<Result<Vec<u64>>>()?;
    let below_60 = |v: u64, what: &str| {
        if v < 60 {
            Ok(v)
        } else {
            Err(bad(&format!("{what} {v} is not below 60")))
        }
    };
    // (hours, minutes, seconds) of the part after the day count.
    let (h, m, s) = match (days.is_some(), parts.as_slice()) {
        (false, [m]) => (0, *m, 0),
        (false, [m, s]) => (0, *m, below_60(*s, "seconds")?),
        (_, [h, m, s]) => (*h, below_60(*m, "minutes")?, below_60(*s, "seconds")?),
        (true, [h]) => (*h, 0, 0),
        (true, [h, m]) => (*h, below_60(*m, "minutes")?, 0),
        _ => return Err(bad("too many ':' fields")),
    };
    let d = days.map(field).transpose()?.unwrap_or(0);
    let secs = d
        .checked_mul(86_400)
        .and_then(|x| x.checked_add(h.checked_mul(3600)?))
        .and_then(|x| x.checked_add(m.checked_mul(60)?))
        .and_then(|x| x.checked_add(s))
        .ok_or_else(|| bad("too long"))?;
    if secs == 0 {
        return Err(bad(
            "a limit of zero (sbatch reads it as no limit: write UNLIMITED for that)",
        ));
    }
    if secs > MAX_TIME_DAYS * 86_400 {
        return Err(bad(&format!(
            "longer than {MAX_TIME_DAYS} days (write UNLIMITED for no limit)"
        )));
    }
    Ok(Some(secs))
}

fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect()
}

/// Runs `sbatch --parsable ARGS…` and returns the job id it prints.
fn sbatch(args: &[&str]) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "sbatch was not found on PATH: Slurm is not installed on this machine. \
                     Run `quantdepth slurm` on a cluster's login node (the scripts name this \
                     machine's paths)"
                )
            } else {
                anyhow::anyhow!("sbatch could not be started: {e}")
            }
        })?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // --parsable prints "jobid" or "jobid;cluster".
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed {:?}, not a job id", text.trim());
    }
    Ok(id)
}

fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
}

pub fn slurm(args: SlurmArgs) -> Result<()> {
    let text = Config::read_file(&args.config)?;
    let cfg = Config::from_toml(&text).with_context(|| format!("in {}", args.config.display()))?;
    let costs = sweep_costs(&cfg)?;
    let m = args.shards;
    if m == 0 {
        bail!("--shards 0: give the number of array tasks, at least 1");
    }
    Shard::new(0, m, "--shards")?;
    if m > costs.len() {
        bail!(
            "--shards {m}: the sweep has only {} point(s); give --shards {} or fewer (a shard without points would be an idle job)",
            costs.len(),
            costs.len()
        );
    }
    if let Some(p) = &args.partition {
        check_partition(p)?;
    }
    if let Some(t) = &args.time {
        check_slurm_time(t)?;
    }
    if args.gpus_per_task == Some(0) {
        bail!("--gpus-per-task 0: leave the flag out for CPU-only tasks, or give at least 1");
    }
    if let Some(g) = args.gpus_per_task.filter(|&g| g > MAX_GPUS_PER_TASK) {
        bail!("--gpus-per-task {g}: at most {MAX_GPUS_PER_TASK} (one task runs on one node)");
    }
    let cpus = args.cpus_per_task.unwrap_or(1);
    if cpus == 0 {
        bail!("--cpus-per-task 0: a task needs at least 1 core");
    }
    let dir =
        args.out.clone().unwrap_or_else(|| {
            PathBuf::from(cfg.outputs.dir.clone().unwrap_or_else(|| "results".into()))
                .join(format!("{}-slurm-{}", cfg.name, timestamp()))
        });
    if dir
        .join("shards")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some())
    {
        bail!(
            "{} already holds shards of an earlier submission: give a new --out DIR (or resubmit one shard with sbatch --array=K {}/array.sbatch)",
            dir.display(),
            dir.display()
        );
    }
    // Everything that can refuse --out is checked before anything is made,
    // and what was made is removed again if a later step fails.
    let config_copy = format!(
        "{OURS} the config the array runs (a copy of {:?}).\n{text}",
        args.config
    );
    for name in ["config.toml", "array.sbatch", "merge.sbatch"] {
        check_ours(&dir.join(name))?;
    }
    let mut made = Made::default();
    let dir = made.create(&dir)?;
    let plan = Plan {
        exe: std::env::current_exe()
            .and_then(|e| e.canonicalize())
            .context("cannot find the path of the quantdepth binary")?,
        dir: dir.clone(),
        name: cfg.name.clone(),
        shards: m,
        partition: args.partition.clone(),
        time: args.time.clone(),
        gpus_per_task: args.gpus_per_task,
        cpus_per_task: cpus,
    };
    let array = dir.join("array.sbatch");
    let merge = dir.join("merge.sbatch");
    for (path, body) in [
        (dir.join("config.toml"), config_copy),
        (array.clone(), plan.array_script()?),
        (merge.clone(), plan.merge_script()?),
    ] {
        made.write(&path, &body)?;
    }
    made.keep();

    let assignment = assign(&costs, m);
    let total: u128 = costs.iter().sum::<u128>().max(1);
    outln!(
        "# {} point(s) in {m} shard(s), balanced by estimated cost:",
        costs.len()
    );
    for k in 0..m {
        let pts: Vec<usize> = (0..costs.len()).filter(|&i| assignment[i] == k).collect();
        let load: u128 = pts.iter().map(|&i| costs[i]).sum();
        outln!(
            "#   shard {k}/{m}: {} point(s), {:.1} % of the cost: {:?}",
            pts.len(),
            100.0 * load as f64 / total as f64,
            pts
        );
    }
    let largest = costs.iter().copied().max().unwrap_or(0);
    if largest as f64 > total as f64 / m as f64 {
        outln!(
            "#   (the largest point alone is {:.1} % of the cost, more than 1/{m} of it: \
             the shard that holds it sets the run's length)",
            100.0 * largest as f64 / total as f64
        );
    }
    outln!("wrote {}", array.display());
    outln!("wrote {}", merge.display());
    let (array_s, merge_s) = (path_str(&array)?, path_str(&merge)?);
    if !args.submit {
        if !which("sbatch") {
            outln!("# Slurm is not installed on this machine (no sbatch on PATH); on a cluster's login node, submit with:");
        } else {
            outln!("# submit with (or run this command again with --submit):");
        }
        outln!("ARRAY=$(sbatch --parsable {array_s})");
        outln!("sbatch --dependency=afterok:$ARRAY --kill-on-invalid-dep=yes {merge_s}");
        return Ok(());
    }
    let array_id = sbatch(&[array_s])?;
    let dep = format!("--dependency=afterok:{array_id}");
    let merge_id = sbatch(&[&dep, "--kill-on-invalid-dep=yes", merge_s])?;
    outln!("array job {array_id} ({m} tasks), merge job {merge_id}");
    outln!(
        "logs: {}/logs, merged results: {}/merged",
        dir.display(),
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            exe: "/opt/q d/quantdepth".into(),
            dir: "/scratch/it's/run".into(),
            name: "sweep".into(),
            shards: 3,
            partition: Some("gpu".into()),
            time: Some("1:00:00".into()),
            gpus_per_task: Some(1),
            cpus_per_task: 4,
        }
    }

    #[test]
    fn array_script_has_one_task_per_shard_and_logs_per_task() {
        let s = plan().array_script().unwrap();
        for line in [
            "#SBATCH --array=0-2",
            "#SBATCH --output=/scratch/it's/run/logs/shard-%a-job%A.out",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=1:00:00",
            "#SBATCH --gpus-per-task=1",
            r#"DIR='/scratch/it'\''s/run'"#,
            "NAME='sweep'",
            r#"SHARD="$DIR/shards/$NAME-shard-$K-of-3""#,
            r#"exec '/opt/q d/quantdepth' run "$DIR/config.toml" --shard "$K/3" --out "$DIR/shards""#,
            r#"exec '/opt/q d/quantdepth' run --resume "$SHARD""#,
        ] {
            assert!(
                s.lines().any(|l| l.trim() == line),
                "missing {line:?} in\n{s}"
            );
        }
    }

    #[test]
    fn merge_script_lists_every_shard_folder() {
        let s = plan().merge_script().unwrap();
        assert!(s.contains(r#"merge "$DIR/merged""#), "{s}");
        for k in 0..3 {
            assert!(
                s.contains(&format!("\"$DIR/shards/$NAME-shard-{k}-of-3\"")),
                "{s}"
            );
        }
        assert!(!s.contains("shard-3-of-3"));
        assert!(!s.contains("--array"));
    }

    /// sbatch's time formats and their values in seconds; what sbatch
    /// would reject, or take as "no limit", is refused before submitting.
    #[test]
    fn slurm_time_formats_are_checked() {
        for (t, secs) in [
            ("90", Some(5_400)),
            ("5:30", Some(330)),
            ("2:00:00", Some(7_200)),
            ("1-0", Some(86_400)),
            ("1-2:30", Some(95_400)),
            ("1-00:00:01", Some(86_401)),
            ("UNLIMITED", None),
            ("infinite", None),
        ] {
            assert_eq!(check_slurm_time(t).unwrap(), secs, "{t}");
        }
        for (t, why) in [
            ("2h", "\"2h\" is not a whole number"),
            ("1:2:3:4", "too many ':' fields"),
            ("1:60:00", "minutes 60 is not below 60"),
            ("10:75", "seconds 75 is not below 60"),
            ("-5", "\"\" is not a whole number"),
            ("0", "a limit of zero"),
            ("0-0:0:0", "a limit of zero"),
            ("", "\"\" is not a whole number"),
            ("1-", "\"\" is not a whole number"),
            ("99999999999999999999", "is too large"),
            ("213503982334601-0", "longer than 365 days"),
            ("366-0", "longer than 365 days"),
            ("525601", "longer than 365 days"),
        ] {
            let e = check_slurm_time(t).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("H:M:S (2:00:00)"), "{t}: {e}");
        }
    }

    /// Partition names: 1 to 64 of letters, digits, `_-.`, comma-separated;
    /// a 100,000-character name is refused with a short message.
    #[test]
    fn partitions_are_short_names() {
        for ok in ["gpu", "a100_80g,h100", "debug.q-1"] {
            check_partition(ok).unwrap();
        }
        let long = "p".repeat(100_000);
        let e = check_partition(&long).unwrap_err().to_string();
        assert!(e.contains("is 100000 characters; give 1 to 64"), "{e}");
        assert!(e.len() < 300, "{} characters", e.len());
        let e = check_partition(&"x".repeat(65)).unwrap_err().to_string();
        assert!(e.contains("is 65 characters"), "{e}");
        assert!(check_partition("gpu,,cpu").is_err());
        assert!(check_partition("gpu;rm").is_err());
        check_partition(&"x".repeat(64)).unwrap();
    }

    #[test]
    fn shell_quote_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
