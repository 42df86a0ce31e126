//! `quantdepth run CONFIG`: an experiment from a config file.

use super::progress_bar;
use crate::outln;
use anyhow::{Context, Result};
use clap::Args;
use indicatif::MultiProgress;
use quantdepth::experiment::config::Kind;
use quantdepth::experiment::{plan, resume_experiment, run_experiment, Config, Hooks};
use quantdepth::sim;
use quantdepth::sim::gpu::{KernelChoice, KernelVariant};

/// `--kernel`'s long help for `run`.
const RUN_KERNEL_HELP: &str = "GPU layer kernel. auto (the default): on first use of an \
adapter, driver, width n, batch B and weight ensemble, each variant that applies is timed for \
a few layers and the fastest is kept, cached in $QUANTDEPTH_CACHE_DIR, else \
$XDG_CACHE_HOME/quantdepth, else ~/.cache/quantdepth (kernels.json). With --resume the default \
is the variant the folder's meta.json records, where it applies, so resumed points run as the \
first ones did (tuned where it does not: another width or batch; meta.json then keeps both \
records, \"V1; after resume: V2\"). \
Or force one of tiled, splitk, wide, wide256, stacked and their -int64 forms (see `quantdepth \
simulate --help`). The variant that ran is recorded in meta.json (\"kernel\").";
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Options of `quantdepth run`.
#[derive(Args)]
pub struct RunArgs {
    /// The experiment config (TOML); see configs/ for documented examples.
    #[arg(required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Continue an unfinished results folder (interrupted, failed or killed):
    /// runs only its missing points, with the config stored in it (a training
    /// network in progress continues from its checkpoint).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "out", "backend", "seed", "max_points"])]
    pub resume: Option<PathBuf>,
    /// Parent folder of the results folder [default: the config's outputs.dir, else "results"].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Override the config's backend: auto, cpu or gpu.
    #[arg(long, value_parser = ["auto", "cpu", "gpu"])]
    pub backend: Option<String>,
    /// Override the config's seed.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Most sweep points allowed [default: the config's max_points, else 10000].
    #[arg(long = "max-points", value_name = "N")]
    pub max_points: Option<usize>,
    /// Run only shard K of M of the sweep (0 ≤ K < M), into DIR/<name>-shard-K-of-M;
    /// "slurm" reads K and M from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT.
    /// `quantdepth merge` combines the shard folders.
    #[arg(
        long,
        value_name = "K/M|slurm",
        conflicts_with = "resume",
        allow_hyphen_values = true
    )]
    pub shard: Option<String>,
    /// GPU layer kernel: auto, or one of tiled, splitk, wide, wide256, stacked, and
    /// their -int64 forms [default: auto; on --resume, the variant the
    /// folder's meta.json records, where it applies].
    #[arg(long, value_name = "VARIANT", value_parser = super::simulate::parse_kernel, long_help = RUN_KERNEL_HELP)]
    pub kernel: Option<KernelChoice>,
}

/// The backend a config names (a GPU with the layer kernel `kernel`), with
/// the note saying which was taken.
fn open_backend(cfg: &Config, kernel: KernelChoice) -> Result<(Box<dyn sim::Backend>, String)> {
    Ok(if matches!(cfg.kind, Kind::Optimal | Kind::Training) {
        // Training opens its own device (its config's backend); optimal is theory only.
        (Box::new(sim::cpu::CpuBackend), "theory only".into())
    } else {
        sim::open_backend_with_kernel(cfg.backend(), Some(kernel))?
    })
}

pub fn run(args: RunArgs) -> Result<()> {
    let resume = args.resume.clone();
    let shard = args
        .shard
        .as_deref()
        .map(|spec| quantdepth::experiment::shard::Shard::parse_os(spec, |k| std::env::var_os(k)))
        .transpose()?;
    let (cfg, mut backend, note) = if let Some(dir) = &resume {
        let (cfg, commit) = quantdepth::experiment::runner::read_folder(dir)?;
        if commit.complete {
            // A kill after the last commit leaves the lock file behind: taken
            // and dropped here (when no one holds it), it goes.
            drop(quantdepth::experiment::lock::FolderLock::acquire(dir));
            // Nothing to run: say so before any plan or device.
            outln!(
                "{} is complete: all {} point(s) of its sweep ran; nothing to resume \
                 (results in {}; run the config again for a new folder)",
                dir.display(),
                commit.points_total,
                dir.join("summary.json").display()
            );
            return Ok(());
        }
        if commit.is_stale() {
            eprintln!("{}: {}", dir.display(), commit.effective_status());
        }
        // A resumed run keeps the variant that ran its first points (the
        // same bits), unless --kernel says otherwise.
        let kernel = args.kernel.unwrap_or_else(|| {
            commit
                .kernel
                .as_deref()
                // The last session's variant where several resumed.
                .and_then(|k| k.rsplit("; after resume: ").next())
                .and_then(KernelVariant::from_record)
                .map_or(KernelChoice::Auto, KernelChoice::Recorded)
        });
        let (b, note) = open_backend(&cfg, kernel)?;
        (cfg, b, note)
    } else {
        let path = args
            .config
            .clone()
            .context("give a config or --resume DIR")?;
        let text = Config::read_file(&path)?;
        let mut cfg = Config::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
        for w in cfg.warnings() {
            eprintln!("warning: {w}");
        }
        if let Some(b) = args.backend.clone() {
            cfg.backend = Some(b);
        }
        if let Some(m) = args.max_points {
            cfg.max_points = Some(m);
        }
        cfg.seed = Some(args.seed.or(cfg.seed).unwrap_or(0));
        // Checks the sweep (point limit, sizes) before opening any device;
        // optimal scans and training runs were checked by `from_toml` (their
        // own schemas, no [network] sweep).
        if cfg.kind == Kind::Simulation {
            cfg.points()
                .with_context(|| format!("in {}", path.display()))?;
        }
        let (b, note) = open_backend(&cfg, args.kernel.unwrap_or_default())?;
        cfg.backend = Some(cfg.backend().to_string());
        (cfg, b, note)
    };
    if cfg.kind == Kind::Simulation {
        eprintln!("{note}");
        let gpu = backend.info().backend == "gpu";
        eprintln!("{}", plan::plan_run(&cfg, gpu)?.describe());
    }
    if let (Some(shard), None) = (shard, &resume) {
        use quantdepth::experiment::shard::{shard_points, sweep_costs};
        let costs = sweep_costs(&cfg)?;
        let mine = shard_points(&costs, shard).len();
        if mine == 0 {
            eprintln!(
                "warning: shard {shard} holds none of the sweep's {} point(s) (more shards than \
                 points); its folder is written empty so that `quantdepth merge` finds all {} \
                 shards",
                costs.len(),
                shard.count
            );
        } else {
            eprintln!(
                "shard {shard}: {mine} of the sweep's {} point(s)",
                costs.len()
            );
        }
    }
    let out_root = args
        .out
        .clone()
        .or_else(|| cfg.outputs.dir.clone().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("results"));
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    // SIGINT, SIGTERM and SIGHUP (the "termination" feature): finish the
    // folder with the points done; a second signal quits at once.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the results folder (Ctrl-C again to quit at once)");
    });
    let multi = MultiProgress::new();
    let overall = multi.add(progress_bar(
        0,
        "run   [{elapsed_precise}] {bar:30} {pos}/{len} points (ETA {eta})",
    ));
    let current = multi.add(progress_bar(
        0,
        "point {msg} {bar:30} {pos}/{len} layers (ETA {eta})",
    ));
    // Without a terminal (nohup, Slurm logs) the bars draw nothing: one
    // plain line per point started instead, with the time since the start.
    let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let clock = std::time::Instant::now();
    let started = |i: usize, total: usize, label: &str, layers: u64| {
        if plain {
            let s = clock.elapsed().as_secs();
            eprintln!(
                "[{:02}:{:02}:{:02}] point {i} of {total}: {label}",
                s / 3600,
                s / 60 % 60,
                s % 60
            );
        }
        overall.set_length(total as u64);
        overall.set_position(i as u64);
        current.set_message(format!("{i} {label}"));
        current.set_length(layers);
        current.set_position(0);
        current.reset_eta();
    };
    let layers = |done: u64| current.set_position(done);
    let finished = |_: &quantdepth::experiment::runner::PointSummary| overall.inc(1);
    let hooks = Hooks {
        point_started: &started,
        layers: &layers,
        point_finished: &finished,
        cancel: &cancel,
    };
    let result = match &resume {
        Some(dir) => resume_experiment(dir, backend.as_mut(), &note, &hooks),
        None => match shard {
            Some(shard) => quantdepth::experiment::runner::run_shard(
                &cfg,
                &out_root,
                shard,
                backend.as_mut(),
                &note,
                &hooks,
            ),
            None => run_experiment(&cfg, &out_root, backend.as_mut(), &note, &hooks),
        },
    };
    current.finish_and_clear();
    overall.finish_and_clear();
    let report = match result {
        // Stopped while the points were resolved (training: the theory of
        // every point before the folder exists): nothing was written.
        Err(quantdepth::Error::Interrupted) => {
            eprintln!("interrupted before any point ran: no results folder was written");
            std::process::exit(130);
        }
        other => other?,
    };
    outln!("{}", report.table.trim_end());
    let flagged: Vec<String> = report
        .points
        .iter()
        .filter(|p| !p.non_finite.is_empty())
        .map(|p| format!("{} ({})", p.index, p.non_finite[0]))
        .collect();
    if !flagged.is_empty() {
        outln!(
            "warning: non-finite results (NaN or inf, null in the JSON files) at point(s) {}; see non_finite in summary.json",
            flagged.join(", ")
        );
    }
    let folder = report.folder.display();
    if report.complete {
        outln!("results: {folder}");
    } else {
        outln!(
            "results: {folder} (interrupted: finished points kept, marked incomplete; \
             `quantdepth run --resume {folder}` runs the rest)"
        );
    }
    if !report.complete {
        std::process::exit(130);
    }
    Ok(())
}
