//! The up-front plan of a run: how many sweep points, how much work and
//! memory, checked against the limit on points and this machine's memory
//! before any results folder is created or any large buffer allocated.

use crate::error::{Error, Result};
use crate::experiment::config::{Config, InputChoice, RunPoint};
use crate::sim::{Inputs, SimSpec};

pub use crate::experiment::config::sweep::DEFAULT_MAX_POINTS;

/// Bytes of memory available to a new process on this machine
/// (`MemAvailable` in /proc/meminfo), if it can be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    };
    field("MemAvailable:").or_else(|| field("MemTotal:"))
}

/// Bytes as "12.3 MiB".
pub fn fmt_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Refuses `need` bytes of host memory beyond what this machine has
/// available, with both numbers; `what` says what needs it.
pub fn check_host_memory(need: u64, what: &str) -> Result<()> {
    if let Some(have) = available_memory() {
        if need > have {
            return Err(Error::TooLarge(format!(
                "{what} needs about {} of memory, but this machine has {} available: \
                 reduce the width, the depth, the pairs or the circle points",
                fmt_bytes(need),
                fmt_bytes(have)
            )));
        }
    }
    Ok(())
}

/// What a run will cost.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunPlan {
    /// Sweep points.
    pub points: usize,
    /// Layers to simulate, Σ samples × depth (the depth each point runs:
    /// ⌈k·ξ⌉ under `depth_per_xi`).
    pub layers: u128,
    /// Multiply-adds, Σ samples × depth × width² × batch.
    pub multiply_adds: f64,
    /// Peak host memory of the largest point (bytes).
    pub host_bytes: u64,
    /// Peak device memory of the largest point (bytes; 0 on the CPU).
    pub device_bytes: u64,
    /// Memory available on this machine, if known.
    pub available_bytes: Option<u64>,
}

impl RunPlan {
    /// One line for the terminal.
    pub fn describe(&self) -> String {
        format!(
            "plan: {} point(s), {} layers, {:.2e} multiply-adds; peak memory {} host{}{}",
            self.points,
            self.layers,
            self.multiply_adds,
            fmt_bytes(self.host_bytes),
            if self.device_bytes > 0 {
                format!(", {} device", fmt_bytes(self.device_bytes))
            } else {
                String::new()
            },
            self.available_bytes.map_or(String::new(), |a| format!(
                " (of {} available)",
                fmt_bytes(a)
            ))
        )
    }
}

/// The simulation of a point, for sizing only (the network is a placeholder:
/// sizes do not depend on it).
fn sizing_spec(p: &RunPoint) -> SimSpec {
    SimSpec {
        activation: crate::activation::Activation::Linear,
        sigma_w: 1.0,
        sigma_b: 0.0,
        width: p.width,
        depth: p.depth,
        samples: p.samples,
        seed: 0,
        q0: 1.0,
        // The ensemble changes the work per layer, not the buffers sized here.
        weights: crate::sim::Weights::Gaussian,
        inputs: match &p.inputs {
            InputChoice::Pairs { c0, pairs } => Inputs::Pairs {
                c0: c0.clone(),
                pairs: *pairs,
            },
            InputChoice::Circle { points } => Inputs::Circle { points: *points },
        },
    }
}

/// Plans a simulation experiment: counts and expands the sweep (refused
/// beyond the point limit before expansion), sizes every point with
/// overflow-checked arithmetic, and refuses the largest point's memory
/// beyond this machine's. `gpu`: the points run on a GPU backend.
pub fn plan_run(cfg: &Config, gpu: bool) -> Result<RunPlan> {
    let points = cfg.points()?;
    let backward = cfg.backward.is_some();
    let mut plan = RunPlan {
        points: points.len(),
        layers: 0,
        multiply_adds: 0.0,
        host_bytes: 0,
        device_bytes: 0,
        available_bytes: available_memory(),
    };
    for p in &points {
        // The depth the point runs (⌈k·ξ⌉ under depth_per_xi), not the cap.
        let mut p = p.clone();
        p.depth = crate::experiment::point::run_depth(&p)?;
        let p = &p;
        let spec = sizing_spec(p);
        spec.validate().map_err(|e| match e {
            Error::Invalid {
                name,
                value,
                expected,
            } => Error::Invalid {
                name: format!("{name} (point {}: {})", p.index, p.label()),
                value,
                expected,
            },
            other => other,
        })?;
        let (batch, _) = spec.sizes()?;
        let m = spec.memory_plan(gpu, backward)?;
        plan.host_bytes = plan.host_bytes.max(m.host_bytes);
        plan.device_bytes = plan.device_bytes.max(m.device_bytes);
        let layers = p.samples as u128 * p.depth as u128;
        plan.layers = plan.layers.saturating_add(layers);
        // Multiply-adds of the weight product per layer and input: n² for the
        // dense ensembles, three n·log₂n butterflies for hadamard.
        let n = p.width as f64;
        let per_vector = match cfg.weights()? {
            crate::sim::Weights::Hadamard => 3.0 * n * n.log2().max(1.0),
            _ => n * n,
        };
        plan.multiply_adds += layers as f64 * per_vector * batch as f64;
    }
    check_host_memory(plan.host_bytes, "the largest point of this sweep")?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_print_in_binary_units() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn this_machine_reports_its_memory() {
        // Linux always has /proc/meminfo; a machine with under 1 MiB cannot run tests.
        if std::path::Path::new("/proc/meminfo").exists() {
            assert!(available_memory().unwrap() > 1 << 20);
        }
    }
}
