//! `quantdepth._quantdepth`: the native part of the Python package, a thin
//! skin over the library (the same functions the CLI calls). It returns
//! plain Python dicts and lists; `quantdepth/__init__.py` turns them into
//! numpy arrays and holds the documented public API.
//!
//! Errors: the library's message, as the CLI prints it, in a `ValueError`
//! (a `RuntimeError` for GPU failures, `KeyboardInterrupt` for Ctrl-C).
//! Long computations (simulate, run) release the GIL and run on a worker
//! thread while the calling thread checks for signals every 50 ms, so
//! Ctrl-C stops them.

mod finite_width;
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use quantdepth::error::Error;
use quantdepth::experiment::config::Kind;
use quantdepth::experiment::{run_experiment, Config, Hooks};
use quantdepth::setup::{ActivationChoice, NetworkChoice, ResolvedNetwork};
use quantdepth::sim::{self, Control, Inputs, SimSpec};
use quantdepth::theory::backward::{backward_curve_with, backward_factor, unit_slope, Ste};
use quantdepth::theory::init::{recommend, MAX_STATES};
use std::path::PathBuf;

mod interrupt;
use interrupt::{interruptible, interruptible_parts};

/// The library's error as a Python exception, with the CLI's message.
fn py_err(e: Error) -> PyErr {
    match e {
        Error::Interrupted => PyKeyboardInterrupt::new_err("interrupted"),
        Error::Gpu(_) => PyRuntimeError::new_err(e.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// The GPU layer kernel a caller named (`auto` or a variant; `None`: the
/// library's `tiled`), checked before anything runs.
fn kernel_choice(kernel: Option<String>) -> PyResult<Option<sim::gpu::KernelChoice>> {
    kernel
        .map(|k| sim::gpu::KernelChoice::parse("kernel", &k).map_err(py_err))
        .transpose()
}

fn invalid(name: &str, value: impl std::fmt::Display, expected: &str) -> PyErr {
    py_err(Error::invalid(name, value, expected))
}

/// A count given as a Python int: negative values get the library's kind of
/// message instead of an OverflowError.
fn count(name: &str, v: i64, min: i64, expected: &str) -> PyResult<usize> {
    if v < min {
        return Err(invalid(name, v, expected));
    }
    usize::try_from(v).map_err(|_| invalid(name, v, expected))
}

fn states(v: i64) -> PyResult<usize> {
    count("states N", v, 2, "a quantizer needs N >= 2 states")
}

/// Network keyword arguments shared by curve, backward and simulate.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct NetKw {
    n_states: Option<i64>,
    spacing: Option<f64>,
    amplitude: Option<f64>,
    #[pyo3(item("W_std"))]
    w_std: Option<f64>,
    b_std: Option<f64>,
    q0: Option<f64>,
    activation: Option<String>,
    levels: Option<Vec<f64>>,
    thresholds: Option<Vec<f64>>,
}

impl NetKw {
    fn resolve(&self) -> PyResult<ResolvedNetwork> {
        let activation = match (&self.activation, &self.levels, &self.thresholds, self.n_states) {
            (Some(a), None, None, None) => match a.as_str() {
                "tanh" => ActivationChoice::Tanh,
                "hard-tanh" | "hard_tanh" => ActivationChoice::HardTanh,
                "linear" => ActivationChoice::Linear,
                other => {
                    return Err(invalid(
                        "activation",
                        format!("'{other}'"),
                        "one of 'tanh', 'hard-tanh', 'linear' (or give n_states, or levels and thresholds)",
                    ))
                }
            },
            (None, Some(l), Some(t), None) => ActivationChoice::Custom {
                levels: l.clone(),
                thresholds: t.clone(),
            },
            (None, None, None, Some(n)) => ActivationChoice::Uniform(states(n)?),
            _ => {
                return Err(PyValueError::new_err(
                    "give exactly one of: n_states, levels and thresholds (together), activation",
                ))
            }
        };
        NetworkChoice {
            activation,
            spacing: self.spacing,
            amplitude: self.amplitude,
            sigma_w: self.w_std,
            sigma_b: self.b_std,
            q0: self.q0,
        }
        .resolve()
        .map_err(py_err)
    }
}

/// The resolved network as a dict (Python names).
fn network_dict<'py>(py: Python<'py>, r: &ResolvedNetwork) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("activation", &r.activation)?;
    d.set_item("n_states", r.states)?;
    d.set_item("spacing", r.spacing)?;
    d.set_item("amplitude", r.amplitude)?;
    d.set_item("W_std", r.sigma_w)?;
    d.set_item("b_std", r.sigma_b)?;
    d.set_item("q_star", r.q_star)?;
    d.set_item("q0", r.q0)?;
    d.set_item("defaulted", &r.defaulted)?;
    Ok(d)
}

#[pyfunction]
#[pyo3(signature = (n_states, bits, amplitude, b_std, kappa, ste_threshold))]
fn optimal_init(
    py: Python<'_>,
    n_states: Option<i64>,
    bits: Option<i64>,
    amplitude: f64,
    b_std: f64,
    kappa: f64,
    ste_threshold: f64,
) -> PyResult<Bound<'_, PyDict>> {
    let n =
        match (n_states, bits) {
            // N's range is checked by `recommend`; here only what a usize cannot hold.
            (Some(n), None) => count(
                "states N",
                n,
                0,
                &format!("a quantizer needs N from 2 to {MAX_STATES} (2^20) states"),
            )?,
            (None, Some(b)) => {
                let b = u32::try_from(b).map_err(|_| {
                    invalid(
                        "bits",
                        b,
                        "a bit width from 1 (N = 2, sign) to 20 (N = 2^20)",
                    )
                })?;
                quantdepth::theory::init::states_from_bits(b).map_err(py_err)?
            }
            _ => return Err(PyValueError::new_err(
                "give exactly one of n_states (N) and bits (N = 2**bits), as `quantdepth init` \
                 takes --states N or --bits B",
            )),
        };
    let r = recommend(n, amplitude, b_std, kappa, ste_threshold).map_err(py_err)?;
    let d = PyDict::new(py);
    d.set_item("W_std", r.sigma_w)?;
    d.set_item("b_std", r.sigma_b)?;
    // The CLI's JSON names, kept as aliases: one value under both names.
    d.set_item("sigma_w", r.sigma_w)?;
    d.set_item("sigma_b", r.sigma_b)?;
    d.set_item("first_layer_W_std", r.first_layer_sigma_w)?;
    d.set_item("spacing", r.spacing)?;
    d.set_item("levels", r.levels)?;
    d.set_item("thresholds", r.thresholds)?;
    d.set_item("q_star", r.q_star)?;
    d.set_item("chi", r.chi)?;
    d.set_item("xi", r.xi)?;
    d.set_item("L_max", r.l_max)?;
    d.set_item("ste_slope", r.ste_slope)?;
    d.set_item("ste_threshold", r.ste_threshold)?;
    d.set_item("n_states", r.states)?;
    d.set_item("bits", r.bits)?;
    d.set_item("amplitude", r.amplitude)?;
    d.set_item("d_opt", r.d_opt)?;
    d.set_item("input_scale", r.input_scale)?;
    d.set_item("c_star", r.c_star)?;
    d.set_item("one_minus_chi", r.one_minus_chi)?;
    d.set_item("kappa", r.kappa)?;
    Ok(d)
}

fn depth_arg(depth: i64) -> PyResult<usize> {
    count("depth", depth, 1, "a depth curve needs at least 1 layer")
}

#[pyfunction]
#[pyo3(signature = (net, depth, c0))]
fn curve<'py>(
    py: Python<'py>,
    net: NetKw,
    depth: i64,
    c0: Vec<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let depth = depth_arg(depth)?;
    let r = net.resolve()?;
    // On a worker thread, Ctrl-C checked every 50 ms: a long curve (10^7
    // layers, or O(N²) layers of a large N) stops at the next layer.
    let (c_star, chi, xi, curves) = interruptible(py, |cancel| {
        let c_star = r.network.c_star(r.q_star)?;
        let chi = r.network.chi(r.q_star, c_star);
        let xi = r.network.depth_scale(r.q_star, c_star);
        let curves = c0
            .iter()
            .map(|&c| {
                r.network
                    .depth_curve_with(r.q0, r.q0, c, depth, &|_| {}, cancel)
            })
            .collect::<quantdepth::Result<Vec<_>>>()?;
        Ok((c_star, chi, xi, curves))
    })?;
    let (mut q, mut c) = (Vec::new(), Vec::new());
    for pts in &curves {
        q.push(pts.iter().map(|p| p.q_a).collect::<Vec<_>>());
        c.push(pts.iter().map(|p| p.c).collect::<Vec<_>>());
    }
    let d = PyDict::new(py);
    d.set_item("q", q)?;
    d.set_item("c", c)?;
    d.set_item("c_star", c_star)?;
    d.set_item("chi", chi)?;
    d.set_item("xi", xi)?;
    d.set_item("network", network_dict(py, &r)?)?;
    Ok(d)
}

#[pyfunction]
#[pyo3(signature = (net, depth, c0, ste_threshold, ste_slope, grad_c_out))]
fn backward<'py>(
    py: Python<'py>,
    net: NetKw,
    depth: i64,
    c0: f64,
    ste_threshold: f64,
    ste_slope: Option<f64>,
    grad_c_out: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let depth = depth_arg(depth)?;
    let r = net.resolve()?;
    let s = match ste_slope {
        Some(s) => s,
        None => unit_slope(&r.network, r.q_star, ste_threshold).map_err(py_err)?,
    };
    let ste = Ste::new(s, ste_threshold).map_err(py_err)?;
    let m = backward_factor(&r.network, r.q_star, &ste);
    let pts = interruptible(py, |cancel| {
        backward_curve_with(
            &r.network,
            &ste,
            r.q0,
            c0,
            depth,
            grad_c_out,
            &|_| {},
            cancel,
        )
    })?;
    let col = |f: &dyn Fn(&quantdepth::theory::backward::BackwardPoint) -> f64| {
        pts.iter().map(f).collect::<Vec<f64>>()
    };
    let d = PyDict::new(py);
    d.set_item("layer", pts.iter().map(|p| p.layer).collect::<Vec<_>>())?;
    d.set_item("c", col(&|p| p.c))?;
    d.set_item("grad_norm_ratio", col(&|p| p.grad_norm_ratio))?;
    d.set_item("grad_corr", col(&|p| p.grad_corr))?;
    d.set_item("ntk_aa", col(&|p| p.ntk_aa))?;
    d.set_item("ntk_ab", col(&|p| p.ntk_ab))?;
    d.set_item("ntk_corr", col(&|p| p.ntk_corr.unwrap_or(f64::NAN)))?;
    d.set_item("backward_factor", m)?;
    d.set_item("ste_slope", s)?;
    d.set_item("ste_threshold", ste_threshold)?;
    d.set_item("network", network_dict(py, &r)?)?;
    Ok(d)
}

#[pyfunction]
#[pyo3(signature = (net, c0, width, depth, samples, pairs, seed, backend, kernel, weights))]
#[allow(clippy::too_many_arguments)]
fn simulate<'py>(
    py: Python<'py>,
    net: NetKw,
    c0: Vec<f64>,
    width: i64,
    depth: i64,
    samples: i64,
    pairs: i64,
    seed: u64,
    backend: String,
    kernel: Option<String>,
    weights: String,
) -> PyResult<Bound<'py, PyDict>> {
    let r = net.resolve()?;
    let kernel = kernel_choice(kernel)?;
    // The CLI's `--weights` names and message.
    let weights = sim::Weights::parse("weights", &weights).map_err(py_err)?;
    // Zero and the upper limits are checked by SimSpec::validate, with the
    // CLI's messages; here only what a usize cannot hold.
    let width = count(
        "width",
        width,
        0,
        "the width must be at least 2 (inputs are built from two orthogonal directions)",
    )?;
    let depth = count("depth", depth, 0, "the depth must be at least 1 layer")?;
    let samples = count(
        "samples",
        samples,
        0,
        "at least 1 network sample is needed (2 or more for standard errors)",
    )?;
    let pairs = count("pairs", pairs, 0, "at least 1 pair per value of c0")?;
    let spec = SimSpec::of_network(
        &r,
        width,
        depth,
        samples,
        seed,
        Inputs::Pairs {
            c0: c0.clone(),
            pairs,
        },
    )
    .with_weights(weights);
    spec.validate().map_err(py_err)?;
    let theory = c0
        .iter()
        .map(|&c| r.network.depth_curve(r.q0, r.q0, c, depth))
        .collect::<quantdepth::Result<Vec<_>>>()
        .map_err(py_err)?;
    let out = interruptible(py, |cancel| {
        let (mut b, note) = sim::open_backend_with_kernel(&backend, kernel)?;
        let o = sim::simulate(
            b.as_mut(),
            &spec,
            &Control {
                progress: &|_| {},
                cancel,
            },
        )?;
        Ok((o, note))
    });
    let (out, note) = out?;
    if let Some(why) = &out.stopped {
        // Ctrl-C without a Python exception (e.g. off the main thread) or a
        // backend failure after some samples: say so, do not return a
        // silently partial result.
        return Err(PyRuntimeError::new_err(format!(
            "the simulation stopped early ({why}) after {} of {} samples",
            out.stats.samples, spec.samples
        )));
    }
    let nan = f64::NAN;
    let (mut qm, mut qs, mut cm, mut cs, mut qt, mut ct) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (pc, th) in out.stats.pairs.iter().zip(&theory) {
        qm.push(pc.layers.iter().map(|l| l.q.mean).collect::<Vec<_>>());
        qs.push(
            pc.layers
                .iter()
                .map(|l| l.q.se.unwrap_or(nan))
                .collect::<Vec<_>>(),
        );
        cm.push(pc.layers.iter().map(|l| l.c.mean).collect::<Vec<_>>());
        cs.push(
            pc.layers
                .iter()
                .map(|l| l.c.se.unwrap_or(nan))
                .collect::<Vec<_>>(),
        );
        qt.push(th.iter().map(|p| p.q_a).collect::<Vec<_>>());
        ct.push(th.iter().map(|p| p.c).collect::<Vec<_>>());
    }
    let d = PyDict::new(py);
    d.set_item(
        "c0",
        out.stats.pairs.iter().map(|p| p.c0).collect::<Vec<_>>(),
    )?;
    d.set_item("q_mean", qm)?;
    d.set_item("q_se", qs)?;
    d.set_item("c_mean", cm)?;
    d.set_item("c_se", cs)?;
    d.set_item("q_theory", qt)?;
    d.set_item("c_theory", ct)?;
    d.set_item("samples", out.stats.samples)?;
    d.set_item("backend", &out.backend.backend)?;
    d.set_item("adapter", &out.backend.adapter)?;
    d.set_item("kernel", &out.backend.kernel)?;
    d.set_item("backend_note", note)?;
    d.set_item("weights", weights.name())?;
    d.set_item("wall_seconds", out.wall_seconds)?;
    d.set_item("network", network_dict(py, &r)?)?;
    Ok(d)
}

#[pyfunction]
#[pyo3(signature = (config_path, out, backend, seed, kernel))]
fn run(
    py: Python<'_>,
    config_path: PathBuf,
    out: Option<PathBuf>,
    backend: Option<String>,
    seed: Option<u64>,
    kernel: Option<String>,
) -> PyResult<(String, bool, String)> {
    let kernel = kernel_choice(kernel)?;
    let text = Config::read_file(&config_path).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let mut cfg = Config::from_toml(&text)
        .map_err(|e| PyValueError::new_err(format!("in {}: {e}", config_path.display())))?;
    if let Some(b) = backend {
        cfg.backend = Some(b);
    }
    cfg.seed = Some(seed.or(cfg.seed).unwrap_or(0));
    let out_root = out
        .or_else(|| cfg.outputs.dir.clone().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("results"));
    let (report, signal) = interruptible_parts(py, |cancel| {
        let (mut b, note): (Box<dyn sim::Backend>, String) = if cfg.kind == Kind::Optimal {
            (Box::new(sim::cpu::CpuBackend), "theory only".into())
        } else {
            sim::open_backend_with_kernel(cfg.backend(), kernel)?
        };
        let mut cfg = cfg.clone();
        cfg.backend = Some(cfg.backend().to_string());
        let hooks = Hooks {
            point_started: &|_, _, _, _| {},
            layers: &|_| {},
            point_finished: &|_| {},
            cancel,
        };
        run_experiment(&cfg, &out_root, b.as_mut(), &note, &hooks)
    });
    // On Ctrl-C the runner finishes the folder (marked interrupted); the
    // KeyboardInterrupt says where it is.
    let report = match (report, signal) {
        (Ok(r), Some(_)) if !r.complete => {
            return Err(PyKeyboardInterrupt::new_err(format!(
                "interrupted: the finished points are kept in {} (marked incomplete)",
                r.folder.display()
            )))
        }
        (_, Some(sig)) => return Err(sig),
        (r, None) => r.map_err(py_err)?,
    };
    Ok((
        report.folder.to_string_lossy().into_owned(),
        report.complete,
        report.table,
    ))
}

mod scans;
use scans::{optimal, scaling};

/// The native part of the quantdepth Python package.
#[pymodule]
fn _quantdepth(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PLOTS", cfg!(feature = "plots"))?;
    m.add_function(wrap_pyfunction!(optimal_init, m)?)?;
    m.add_function(wrap_pyfunction!(optimal, m)?)?;
    m.add_function(wrap_pyfunction!(scaling, m)?)?;
    m.add_function(wrap_pyfunction!(curve, m)?)?;
    m.add_function(wrap_pyfunction!(backward, m)?)?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    finite_width::register(m)?;
    Ok(())
}
