//! `optimal` and `scaling`: the optimum of the uniform quantizer over a
//! list of N (`theory optimal`, `theory scaling`), as dicts of lists.

use super::{invalid, py_err, states};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use quantdepth::setup::parse_states;
use quantdepth::theory::optimal::uniform_optimum;
use quantdepth::theory::scaling::{scaling as fit_scaling, LinearFit};

/// A list of N: a spec string ("2..1025", "3..64,128") or a sequence of ints.
#[derive(FromPyObject)]
pub(crate) enum StatesArg {
    Spec(String),
    List(Vec<i64>),
}

fn states_list(arg: StatesArg) -> PyResult<Vec<usize>> {
    match arg {
        StatesArg::Spec(s) => parse_states(&s).map_err(py_err),
        StatesArg::List(v) => {
            if v.is_empty() {
                return Err(invalid("states", "[]", "at least one N >= 2"));
            }
            v.into_iter().map(states).collect()
        }
    }
}

fn optima(ns: &[usize], kappa: f64) -> PyResult<Vec<quantdepth::theory::UniformOptimum>> {
    ns.iter()
        .map(|&n| {
            uniform_optimum(n, kappa).map_err(|e| PyValueError::new_err(format!("N = {n}: {e}")))
        })
        .collect()
}

#[pyfunction]
#[pyo3(signature = (n_states, kappa))]
pub(crate) fn optimal(
    py: Python<'_>,
    n_states: StatesArg,
    kappa: f64,
) -> PyResult<Bound<'_, PyDict>> {
    let ns = states_list(n_states)?;
    let rows = optima(&ns, kappa)?;
    let d = PyDict::new(py);
    d.set_item("n_states", &ns)?;
    d.set_item(
        "d_opt",
        rows.iter()
            .map(|o| o.d_opt.unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
    )?;
    d.set_item(
        "chi_max",
        rows.iter().map(|o| o.chi_max).collect::<Vec<_>>(),
    )?;
    d.set_item(
        "one_minus_chi_max",
        rows.iter().map(|o| o.one_minus_chi_max).collect::<Vec<_>>(),
    )?;
    d.set_item("xi_max", rows.iter().map(|o| o.xi_max).collect::<Vec<_>>())?;
    d.set_item("L_max", rows.iter().map(|o| o.l_max).collect::<Vec<_>>())?;
    Ok(d)
}

fn fit_dict<'py>(py: Python<'py>, f: &LinearFit) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("slope", f.slope)?;
    d.set_item("stderr", f.stderr)?;
    d.set_item("intercept", f.intercept)?;
    d.set_item("intercept_stderr", f.intercept_stderr)?;
    d.set_item("r2", f.r2)?;
    d.set_item("points", f.points)?;
    Ok(d)
}

#[pyfunction]
#[pyo3(signature = (n_states,))]
pub(crate) fn scaling(py: Python<'_>, n_states: StatesArg) -> PyResult<Bound<'_, PyDict>> {
    let ns = states_list(n_states)?;
    if ns.len() < 3 {
        return Err(invalid(
            "states",
            format!("{ns:?}"),
            "at least 3 values of N: a fit with standard errors needs them",
        ));
    }
    let s =
        fit_scaling(&optima(&ns, quantdepth::theory::optimal::DEFAULT_KAPPA)?).map_err(py_err)?;
    let d = PyDict::new(py);
    d.set_item("n_states", &ns)?;
    d.set_item("one_minus_chi_max", fit_dict(py, &s.one_minus_chi_max)?)?;
    d.set_item("xi_max", fit_dict(py, &s.xi_max)?)?;
    d.set_item("d_opt", fit_dict(py, &s.d_opt)?)?;
    let local = PyDict::new(py);
    local.set_item(
        "n_lo",
        s.local_exponents.iter().map(|l| l.n_lo).collect::<Vec<_>>(),
    )?;
    local.set_item(
        "n_hi",
        s.local_exponents.iter().map(|l| l.n_hi).collect::<Vec<_>>(),
    )?;
    local.set_item(
        "exponent",
        s.local_exponents
            .iter()
            .map(|l| l.exponent)
            .collect::<Vec<_>>(),
    )?;
    d.set_item("local_exponents", local)?;
    Ok(d)
}
