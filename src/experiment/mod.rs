//! Experiments from config files: sweep expansion, the runner, analysis,
//! results folders and plots.
//!
//! Data flow: config (TOML) → [`config::Config::points`] → for each point,
//! theory and simulation side by side → analysis (ξ_emp, agreement) →
//! results folder (`config.toml`, `meta.json`, `curves.csv`, `curves.json`,
//! `summary.json`, `plots/` — drawn with the `plots` feature, on by default).
//!
//! A point is the unit of work: [`shard`] splits a sweep's points across
//! processes (`run --shard K/M`, Slurm arrays), and [`merge`] combines shard
//! folders into one folder, rebuilt from the point records exactly as a
//! resumed or uninterrupted run rebuilds it.
//!
//! The files, by role:
//! - [`config`] the schema, its value types and checks, the sweep expanded
//!   into run points; [`plan`] the cost and memory of a sweep before it runs;
//!   [`shard`] the points of one shard;
//! - [`folder`] atomic writes, the commit record (`meta.json`), names,
//!   never through a link, capped reads; [`lock`] one process per folder;
//! - [`records`] the results of a point and of a run, and a point's record;
//!   [`aggregate`] curves.csv/json, backward.csv, summary.json and the ξ
//!   scaling, rebuilt from the records; [`summary`] the terminal table;
//!   [`plots`] the figures (the `plots` feature);
//! - [`point`] one point run: theory beside simulation, ξ_emp, agreement,
//!   backward passes; [`session`] a folder being written: its records, the
//!   order of the writes, creating and reading folders back;
//! - [`optimal`] the theory-only scan; [`training`] training runs;
//! - [`runner`] the entry points (run, resume, shard, finish) and the point
//!   loop; [`merge`] shard folders into one.

pub mod aggregate;
pub mod config;
pub mod finite_width;
pub mod folder;
pub mod lock;
pub mod merge;
pub mod optimal;
pub mod plan;
#[cfg(feature = "plots")]
pub mod plots;
pub mod point;
pub mod records;
pub mod runner;
pub mod session;
pub mod shard;
pub mod summary;
pub mod training;

pub use config::Config;
pub use runner::{resume_experiment, run_experiment, Hooks, RunReport};
