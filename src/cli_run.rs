//! `quantdepth run CONFIG`: an experiment from a config file.

use crate::outln;
use anyhow::{Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use quantdepth::experiment::config::Kind;
use quantdepth::experiment::{run_experiment, Config, Hooks};
use quantdepth::sim;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Options of `quantdepth run`.
#[derive(Args)]
pub struct RunArgs {
    /// The experiment config (TOML); see configs/ for documented examples.
    pub config: PathBuf,
    /// Parent folder of the results folder [default: the config's outputs.dir, else "results"].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Override the config's backend: auto, cpu or gpu.
    #[arg(long, value_parser = ["auto", "cpu", "gpu"])]
    pub backend: Option<String>,
    /// Override the config's seed.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
}

pub fn run(args: RunArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read the config {}", args.config.display()))?;
    let mut cfg =
        Config::from_toml(&text).with_context(|| format!("in {}", args.config.display()))?;
    for w in cfg.warnings() {
        eprintln!("warning: {w}");
    }
    if let Some(b) = args.backend {
        cfg.backend = Some(b);
    }
    cfg.seed = Some(args.seed.or(cfg.seed).unwrap_or(0));
    let out_root = args
        .out
        .or_else(|| cfg.outputs.dir.clone().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("results"));
    let (mut backend, note): (Box<dyn sim::Backend>, String) = if cfg.kind == Kind::Optimal {
        (Box::new(sim::cpu::CpuBackend), "theory only".into())
    } else {
        sim::open_backend(cfg.backend())?
    };
    cfg.backend = Some(cfg.backend().to_string());
    if cfg.kind != Kind::Optimal {
        eprintln!("{note}");
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the results folder (Ctrl-C again to quit at once)");
    });
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(
        ProgressStyle::with_template(
            "run   [{elapsed_precise}] {bar:30} {pos}/{len} points (ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let current = multi.add(ProgressBar::new(0));
    current.set_style(
        ProgressStyle::with_template("point {msg} {bar:30} {pos}/{len} layers (ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = |i: usize, total: usize, label: &str, layers: u64| {
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
    let report = run_experiment(&cfg, &out_root, backend.as_mut(), &note, &hooks)?;
    current.finish_and_clear();
    overall.finish_and_clear();
    outln!("{}", report.table.trim_end());
    outln!(
        "results: {}{}",
        report.folder.display(),
        if report.complete {
            ""
        } else {
            " (interrupted: finished points kept, marked incomplete)"
        }
    );
    if !report.complete {
        std::process::exit(130);
    }
    Ok(())
}
