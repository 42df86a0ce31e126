//! `finite_width`: the 1/n expansion of a pair of inputs
//! (quantdepth::theory::finite_width), as `quantdepth theory finite-width`
//! computes it.

use super::{count, depth_arg, invalid, network_dict, py_err, NetKw};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use quantdepth::theory::backward::{unit_slope, Ste};
use quantdepth::theory::finite_width::ste::ste_norm_ratio;
use quantdepth::theory::finite_width::{check_width, expand, EPS_FLAG};

#[pyfunction]
#[pyo3(signature = (net, c0, depth, width, pairs, weights, ste_threshold, ste_slope))]
#[allow(clippy::too_many_arguments)]
fn finite_width<'py>(
    py: Python<'py>,
    net: NetKw,
    c0: f64,
    depth: i64,
    width: Vec<i64>,
    pairs: i64,
    weights: String,
    ste_threshold: Option<f64>,
    ste_slope: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    if weights != "gaussian" {
        return Err(invalid(
            "weights",
            format!("'{weights}'"),
            "'gaussian': the finite-width expansion models Gaussian weights only",
        ));
    }
    let depth = depth_arg(depth)?;
    let pairs = count("pairs", pairs, 1, "a network measures at least 1 pair")?;
    if width.is_empty() {
        return Err(invalid("width", "[]", "at least one width"));
    }
    let mut widths = Vec::with_capacity(width.len());
    for w in width {
        let n = count("width", w, 1, "a width of at least 8")?;
        check_width(n).map_err(py_err)?;
        widths.push(n);
    }
    let r = net.resolve()?;
    let e = expand(&r.network, r.q0, c0, depth).map_err(py_err)?;
    let ste = match ste_threshold {
        None => None,
        Some(t) => {
            let s = match ste_slope {
                Some(s) => s,
                None => unit_slope(&r.network, r.q_star, t).map_err(py_err)?,
            };
            let ste = Ste::new(s, t).map_err(py_err)?;
            Some(ste_norm_ratio(&r.network, &ste, r.q0, depth).map_err(py_err)?)
        }
    };
    let col = |f: &dyn Fn(&quantdepth::theory::finite_width::Order1Layer) -> f64| {
        e.layers.iter().map(f).collect::<Vec<f64>>()
    };
    let d = PyDict::new(py);
    d.set_item(
        "layer",
        e.layers.iter().map(|l| l.layer).collect::<Vec<_>>(),
    )?;
    d.set_item("q", col(&|l| l.q))?;
    d.set_item("c", col(&|l| l.c))?;
    d.set_item("dq", col(&|l| l.dq))?;
    d.set_item("dc", col(&|l| l.dc))?;
    d.set_item("var_q", col(&|l| l.var_q))?;
    d.set_item("var_c", col(&|l| l.var_c))?;
    let mut per_width = Vec::with_capacity(widths.len());
    for &n in &widths {
        let layers = e.at_width(n, pairs).map_err(py_err)?;
        let w = PyDict::new(py);
        let col = |f: &dyn Fn(&quantdepth::theory::finite_width::WidthLayer) -> f64| {
            layers.iter().map(f).collect::<Vec<f64>>()
        };
        w.set_item("width", n)?;
        w.set_item("mean_q", col(&|l| l.mean_q))?;
        w.set_item("mean_c", col(&|l| l.mean_c))?;
        w.set_item("sd_q", col(&|l| l.sd_q))?;
        w.set_item("sd_c", col(&|l| l.sd_c))?;
        w.set_item("eps1", col(&|l| l.eps1))?;
        w.set_item("eps2", col(&|l| l.eps2))?;
        w.set_item(
            "flagged",
            layers.iter().map(|l| l.flagged).collect::<Vec<_>>(),
        )?;
        if let Some(s) = &ste {
            w.set_item("ste_first_order", s.first_order(n))?;
            w.set_item("ste_lognormal", s.lognormal(n))?;
        }
        per_width.push(w);
    }
    d.set_item("widths", per_width)?;
    d.set_item("q_star", e.q_star)?;
    d.set_item("c_star", e.c_star)?;
    d.set_item("pairs", pairs)?;
    d.set_item("eps_flag", EPS_FLAG)?;
    d.set_item("ste_infinite", ste.as_ref().map(|s| s.infinite))?;
    d.set_item("network", network_dict(py, &r)?)?;
    Ok(d)
}

/// Adds `finite_width` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(finite_width, m)?)
}
