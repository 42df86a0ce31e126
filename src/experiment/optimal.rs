//! `kind = "optimal"`: the optimal initialization of every N of a scan
//! (theory only), with the scaling fits (the paper's Figure 2): run whole,
//! by shard (one record per N), and finished from the shards' records.

use crate::error::{Error, Result};
use crate::experiment::aggregate::opt;
use crate::experiment::config::Config;
use crate::experiment::folder::{self, write_atomic, write_json, Commit};
#[cfg(feature = "plots")]
use crate::experiment::plots;
use crate::experiment::records::RunReport;
use crate::experiment::session::{catch_panic, new_session, Session};
use crate::theory::optimal::{uniform_optimum, DEFAULT_KAPPA};
use crate::theory::scaling::scaling;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// Runs an optimal-initialization scan (theory only).
pub fn run_optimal(cfg: &Config, out_root: &Path) -> Result<RunReport> {
    let ns = cfg.optimal_states()?;
    let s = new_session(cfg, out_root, "theory", "-", "theory only", ns.len())?;
    optimal_into(s, cfg)
}

/// Writes the files of the scan into the session's folder and marks it
/// complete; on an error (or a panic) marks it failed.
pub(crate) fn optimal_into(mut s: Session<'_>, cfg: &Config) -> Result<RunReport> {
    match catch_panic(|| optimal_files(&s.folder, cfg)) {
        Ok(table) => {
            let ns = cfg.optimal_states()?;
            s.complete_theory((0..ns.len()).collect(), table)
        }
        Err(e) => {
            s.commit.error = Some(e.to_string());
            let _ = s.commit("failed");
            Err(e)
        }
    }
}

/// The files of an optimal scan; returns the terminal summary.
fn optimal_files(folder: &Path, cfg: &Config) -> Result<String> {
    let optima = optima_of(cfg, &cfg.optimal_states()?)?;
    optimal_files_of(folder, cfg, &optima)
}

/// The optimum of every N in `ns` (κ from the config), each checked finite.
fn optima_of(cfg: &Config, ns: &[usize]) -> Result<Vec<crate::theory::UniformOptimum>> {
    let kappa = cfg.kappa.unwrap_or(DEFAULT_KAPPA);
    let optima = ns
        .iter()
        .map(|&n| uniform_optimum(n, kappa).map_err(|e| Error::Numerical(format!("N = {n}: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    if let Some(o) = optima
        .iter()
        .find(|o| !(o.chi_max.is_finite() && o.xi_max.is_finite() && o.l_max.is_finite()))
    {
        return Err(Error::Numerical(format!(
            "N = {}: chi_max = {}, xi_max = {}, L_max = {} are not all finite (kappa = {})",
            o.states,
            o.chi_max,
            o.xi_max,
            o.l_max,
            crate::error::fmt_value(kappa)
        )));
    }
    Ok(optima)
}

/// The files of an optimal scan from its optima (N ascending); returns the
/// terminal summary.
fn optimal_files_of(
    folder: &Path,
    cfg: &Config,
    optima: &[crate::theory::UniformOptimum],
) -> Result<String> {
    let kappa = cfg.kappa.unwrap_or(DEFAULT_KAPPA);
    let ns: Vec<usize> = optima.iter().map(|o| o.states).collect();
    let sc = scaling(optima)?;
    // σ_w^opt and q* at amplitude 1 and spacing D̃_opt (q* = 1), the CLI's defaults.
    let mut csv =
        String::from("states,d_opt,chi_max,one_minus_chi_max,xi_max,l_max,sigma_w,q_star\n");
    for o in optima {
        let (sigma_w, q_star) =
            crate::theory::optimal::optimal_sigma_w(o.states, o.d_opt.unwrap_or(1.0), 1.0)?;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            o.states,
            opt(o.d_opt),
            o.chi_max,
            o.one_minus_chi_max,
            o.xi_max,
            o.l_max,
            sigma_w,
            q_star
        );
    }
    write_atomic(&folder.join("optimal.csv"), csv.as_bytes())?;
    write_json(&folder.join("optimal.json"), &optima)?;
    write_json(
        &folder.join("summary.json"),
        &serde_json::json!({"kappa": kappa, "scaling": sc}),
    )?;
    #[cfg(feature = "plots")]
    if cfg.outputs.plots.unwrap_or(true) {
        let png = cfg.outputs.png.unwrap_or(true);
        folder::write_plots(folder, |stage| {
            plots::simulation::optimal_plots(stage, png, optima, &sc)
        })?;
    }
    Ok(format!(
        "optimal scan over {} values of N ({}..{}): ln(1 − χ_max) slope {:.4} ± {:.4}, intercept {:.3}; ln ξ_max slope {:.4} ± {:.4}; ln D̃_opt slope {:.4} ± {:.4}\n",
        ns.len(),
        ns[0],
        ns[ns.len() - 1],
        sc.one_minus_chi_max.slope,
        sc.one_minus_chi_max.stderr,
        sc.one_minus_chi_max.intercept,
        sc.xi_max.slope,
        sc.xi_max.stderr,
        sc.d_opt.slope,
        sc.d_opt.stderr
    ))
}

/// One N of a sharded optimal scan, as stored in `points/pointNNN.cbor`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OptimalRecord {
    /// Folder format.
    pub format: u32,
    /// Hash of the config as run.
    pub config_hash: String,
    /// The optimum of this N.
    pub optimum: crate::theory::UniformOptimum,
}

/// A shard of an optimal scan: the optima of its values of N, one record
/// each; the scaling fits need every N and are made by `merge`.
pub(crate) fn optimal_shard(s: Session<'_>, cfg: &Config, mine: &[usize]) -> Result<RunReport> {
    let ns = cfg.optimal_states()?;
    let mut wanted = Vec::with_capacity(mine.len());
    for &i in mine {
        wanted.push(*ns.get(i).ok_or_else(|| {
            Error::Folder(format!(
                "{}: shard.json names N number {i}, but the scan has {} values of N",
                s.folder.display(),
                ns.len()
            ))
        })?);
    }
    let optima = optima_of(cfg, &wanted)?;
    for (&i, o) in mine.iter().zip(&optima) {
        let rec = OptimalRecord {
            format: folder::FORMAT,
            config_hash: s.commit.config_hash.clone(),
            optimum: *o,
        };
        folder::write_record(&s.folder, i, &rec)?;
    }
    let table = format!(
        "optimal scan, shard of {} values of N ({:?}); `quantdepth merge` fits the scaling over all shards\n",
        wanted.len(),
        wanted
    );
    s.complete_theory(mine.to_vec(), table)
}

/// Finishes an optimal-scan folder `dir` whose records hold every N (a
/// merged folder): the scaling fits and files from the records.
pub(crate) fn finish_optimal(dir: &Path, cfg: &Config, commit: Commit) -> Result<RunReport> {
    let ns = cfg.optimal_states()?;
    if commit.points.len() != ns.len() {
        return Err(Error::Folder(format!(
            "{} holds {} of its {} values of N: it cannot be finished",
            dir.display(),
            commit.points.len(),
            ns.len()
        )));
    }
    let mut optima = Vec::with_capacity(ns.len());
    for (i, &n) in ns.iter().enumerate() {
        let rec: OptimalRecord = folder::read_record(dir, i)?;
        if rec.config_hash != commit.config_hash || rec.optimum.states != n {
            return Err(Error::Folder(format!(
                "{} belongs to another run",
                folder::record_path(dir, i).display()
            )));
        }
        optima.push(rec.optimum);
    }
    let table = optimal_files_of(dir, cfg, &optima)?;
    Session::new(dir.to_path_buf(), cfg, commit).complete_theory((0..ns.len()).collect(), table)
}
