"""quantdepth: mean-field theory and simulation of deep networks with
N-level quantized activations (Blumenfeld, Gilboa & Soudry, NeurIPS 2019).

The same library as the ``quantdepth`` command line, from Python::

    import quantdepth as qd
    init = qd.optimal_init(16)                # 4-bit activations
    init["W_std"]                             # 2.5286408548...: weight std = W_std / sqrt(fan_in)
    q, c = qd.curve(16, depth=50, c0=0.5)     # mean-field depth curves (numpy arrays)
    sim = qd.simulate(16, c0=[0.5], width=512, depth=20, samples=8, backend="cpu")

Names follow neural-tangents: ``W_std`` is sigma_w (weights ~ N(0, W_std**2 / fan_in)),
``b_std`` is sigma_b. Every function validates its inputs and raises ``ValueError``
with the command line's message; ``simulate`` and ``run`` release the GIL and stop
on Ctrl-C (``KeyboardInterrupt``).

Helpers for models: :mod:`quantdepth.nn` (``quantize``; with torch, an STE
quantizer and ``init_``).
"""

from __future__ import annotations

import math
import numbers
import os
import pathlib
import tempfile
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _quantdepth

__version__: str = _quantdepth.__version__
#: Whether this build draws plots in ``run``'s results folders (the wheel is
#: built without plotting by default; the ``quantdepth`` CLI draws them).
PLOTS: bool = _quantdepth.PLOTS

__all__ = [
    "optimal_init",
    "curve",
    "optimal",
    "scaling",
    "backward",
    "finite_width",
    "simulate",
    "run",
    "PLOTS",
    "__version__",
]

StatesSpec = Union[int, str, Sequence[int]]


def __dir__() -> list:
    # The public API only: not the modules and typing names imported above.
    return sorted(__all__ + ["nn"])


def _whole(name: str, v: Any) -> int:
    """A count as the CLI takes it: a whole number (``10`` or ``10.0``, ``1e3``),
    refused with the CLI's message when fractional or not a number."""
    if isinstance(v, bool):
        raise ValueError(f"invalid {name} = {v!r}: give a whole number, not a bool")
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        f = float(v)
        if math.isfinite(f) and f.is_integer():
            return int(f)
        if math.isfinite(f):
            raise ValueError(f"invalid {name} = {v}: {v} is not a whole number: give e.g. {round(f)}")
        raise ValueError(f"invalid {name} = {v}: give a whole number")
    raise ValueError(f"invalid {name} = {v!r}: {v!r} is not a number: give a whole number (e.g. 1024)")


def _real(name: str, v: Any, hint: str = "") -> float:
    """A real number, refused with a message naming the argument when it is a
    string or another non-number (instead of float()'s bare conversion error)."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, np.ndarray) and v.ndim == 0 and np.issubdtype(v.dtype, np.number):
        return float(v)
    raise ValueError(f"invalid {name} = {v!r}: give a number{hint}")


def _quiet_wayland_probe() -> None:
    # As the CLI does: the Vulkan/GL drivers' probe loads libwayland-client, which
    # prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment." when
    # the variable is unset or not an absolute path (headless servers). An absolute
    # path without a Wayland socket in it makes the probe fail quietly.
    v = os.environ.get("XDG_RUNTIME_DIR")
    if not (v and os.path.isabs(v)):
        os.environ["XDG_RUNTIME_DIR"] = os.path.join(tempfile.gettempdir(), "quantdepth-no-wayland")


def _net(
    n_states: Optional[int],
    W_std: Optional[float],
    b_std: Optional[float],
    q0: Optional[float],
    spacing: Optional[float],
    amplitude: Optional[float],
    activation: Optional[str],
    levels: Optional[Sequence[float]],
    thresholds: Optional[Sequence[float]],
) -> Dict[str, Any]:
    def num(name: str, x: Optional[float], hint: str = "") -> Optional[float]:
        return None if x is None else _real(name, x, hint)

    def vec(x: Optional[Sequence[float]]) -> Optional[list]:
        return None if x is None else [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]

    return {
        "n_states": None if n_states is None else _whole("n_states", n_states),
        "W_std": num("W_std", W_std, " (leave W_std=None for sigma_w^opt, the optimum; 'opt' is the config's spelling)"),
        "b_std": num("b_std", b_std),
        "q0": num("q0", q0, " (leave q0=None for q*)"),
        "spacing": num("spacing", spacing, " (leave spacing=None for D_opt)"),
        "amplitude": num("amplitude", amplitude),
        "activation": activation,
        "levels": vec(levels),
        "thresholds": vec(thresholds),
    }


def _c0_list(c0: Union[float, Sequence[float]]) -> Tuple[list, bool]:
    arr = np.asarray(c0, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"invalid c0 with shape {arr.shape}: a number or a 1-D sequence of correlations")
    if arr.size == 0:
        raise ValueError("invalid c0 = []: give at least one correlation in [-1, 1]")
    return [float(v) for v in arr.ravel()], arr.ndim == 0


def _arrays(d: Dict[str, Any], keys: Sequence[str]) -> Dict[str, Any]:
    for k in keys:
        d[k] = np.asarray(d[k], dtype=np.float64)
    return d


def optimal_init(
    n_states: Optional[int] = None,
    amplitude: float = 1.0,
    b_std: float = 0.0,
    kappa: float = 6.0,
    *,
    bits: Optional[int] = None,
    ste_threshold: float = 1.0,
) -> Dict[str, Any]:
    """The initialization that maximizes the depth scale of an N-state network.

    Give ``n_states`` (N) or ``bits`` (N = 2**bits: ``bits=4`` is N = 16), as
    ``quantdepth init`` takes ``--states N`` or ``--bits B``.

    The uniform symmetric quantizer with ``n_states`` levels from ``-amplitude``
    to ``amplitude``; pre-activations are measured in their own std at the
    fixed point (q* = 1), so the thresholds are in those units. Same numbers
    as ``quantdepth init --states N --json``.

    Returns a dict with

    - ``W_std``: sigma_w; initialize weights with std ``W_std / sqrt(fan_in)``
      (2.5286408548... for N = 16, amplitude 1); ``sigma_w`` is an alias
      (the name in the CLI's JSON before it gained ``W_std``);
    - ``b_std``: bias std (with ``b_std > 0``, W_std is lowered so q* stays 1);
      alias ``sigma_b``;
    - ``first_layer_W_std``: the std (times 1/sqrt(fan_in)) of a first Linear
      layer that maps standardized inputs to the first quantizer, so that
      q^1 = q* (sqrt(q* - b_std**2); W_std there would give q^1 = W_std**2 + b_std**2);
    - ``spacing``: threshold spacing Delta (None for N = 2, sign);
    - ``levels`` (N,) and ``thresholds`` (N - 1,): float64 arrays; phi(x) is
      ``levels[#{thresholds <= x}]`` (see :func:`quantdepth.nn.quantize`);
    - ``q_star``: pre-activation variance at the fixed point; ``input_scale``
      = sqrt(q*): multiply standardized inputs by it so q^0 = q*;
    - ``chi``, ``one_minus_chi``: slope of the correlation map at c*
      (``c_star``); ``xi`` = -1/ln chi, the depth scale; ``L_max`` = kappa * xi,
      the mean-field bound with kappa = 6 after Schoenholz et al. (2017), not a
      measured trainable depth (see the README's "Training: trainable depth,
      measured");
    - ``ste_slope``: the straight-through slope s for the surrogate
      s * 1{|x| <= ste_threshold} that keeps gradient norms constant (M = 1);
    - ``n_states``, ``bits``, ``amplitude``, ``d_opt``, ``kappa``, ``ste_threshold``.

    Raises ``ValueError`` for N outside 2..2**20, a non-positive amplitude or
    kappa, b_std outside [0, 1), or a non-positive ste_threshold.
    """
    d = _quantdepth.optimal_init(
        None if n_states is None else _whole("n_states", n_states),
        None if bits is None else _whole("bits", bits),
        _real("amplitude", amplitude),
        _real("b_std", b_std),
        _real("kappa", kappa),
        _real("ste_threshold", ste_threshold),
    )
    return _arrays(d, ["levels", "thresholds"])


def curve(
    n_states: Optional[int],
    depth: int,
    c0: Union[float, Sequence[float]] = 0.5,
    W_std: Optional[float] = None,
    b_std: float = 0.0,
    q0: Optional[float] = None,
    *,
    spacing: Optional[float] = None,
    amplitude: Optional[float] = None,
    activation: Optional[str] = None,
    levels: Optional[Sequence[float]] = None,
    thresholds: Optional[Sequence[float]] = None,
    full: bool = False,
) -> Any:
    """Mean-field depth curves q^l, c^l of pairs of inputs, l = 0..depth.

    ``c0`` a number gives arrays of shape (depth + 1,); a sequence of K
    correlations gives shape (K, depth + 1). Defaults as the theory
    prescribes (as ``quantdepth theory curve``): amplitude 1, spacing
    D_opt(N) (so q* = 1), ``W_std`` = sigma_w^opt for them, ``q0`` = q*.
    Instead of ``n_states``: ``activation`` ('tanh', 'hard-tanh', 'linear')
    or ``levels`` and ``thresholds`` of any quantizer (both need ``W_std``;
    pass ``n_states=None``).

    Returns ``(q, c)``; with ``full=True`` a dict with ``q``, ``c``,
    ``c_star``, ``chi`` (at c*), ``xi`` and ``network`` (the resolved
    W_std, b_std, q_star, q0, spacing, amplitude).
    """
    c0s, scalar = _c0_list(c0)
    d = _quantdepth.curve(
        _net(n_states, W_std, b_std, q0, spacing, amplitude, activation, levels, thresholds),
        _whole("depth", depth),
        c0s,
    )
    _arrays(d, ["q", "c"])
    if scalar:
        d["q"], d["c"] = d["q"][0], d["c"][0]
    return d if full else (d["q"], d["c"])


def optimal(n_states: StatesSpec, kappa: float = 6.0) -> Dict[str, np.ndarray]:
    """The optimum of the uniform quantizer for each N (``quantdepth theory optimal``).

    ``n_states``: an int, a sequence of ints, or a spec string such as
    ``"2..1025"`` or ``"3..64,128"`` (sorted, without duplicates, as the CLI;
    a sequence keeps its order).
    Returns a dict of arrays, one entry per N: ``n_states`` (int64), ``d_opt``
    (D_opt = Delta/sqrt(q*); NaN for N = 2), ``chi_max``, ``one_minus_chi_max``
    (computed without cancellation), ``xi_max``, ``L_max`` = kappa * xi_max.
    """
    if isinstance(n_states, (int, np.integer)):
        n_states = [_whole("n_states", n_states)]
    elif not isinstance(n_states, str):
        n_states = [_whole("n_states", n) for n in n_states]
    d = _quantdepth.optimal(n_states, float(kappa))
    d["n_states"] = np.asarray(d["n_states"], dtype=np.int64)
    return _arrays(d, ["d_opt", "chi_max", "one_minus_chi_max", "xi_max", "L_max"])


def scaling(n_states: StatesSpec) -> Dict[str, Any]:
    """Least-squares fits of ln(1 - chi_max), ln xi_max and ln D_opt against
    ln(N + 1) (``quantdepth theory scaling``), over at least 3 values of N.

    Returns a dict: ``n_states`` (array), ``one_minus_chi_max``, ``xi_max``,
    ``d_opt`` (each a dict with ``slope``, ``stderr``, ``intercept``,
    ``intercept_stderr``, ``r2``, ``points``) and ``local_exponents`` (a dict
    of arrays ``n_lo``, ``n_hi``, ``exponent`` = d ln xi_max / d ln(N + 1)).
    The slope of ln xi_max is the exponent of L_max ~ N^slope (1.82 in the paper).
    """
    if not isinstance(n_states, str):
        n_states = [_whole("n_states", n) for n in n_states]
    d = _quantdepth.scaling(n_states)
    d["n_states"] = np.asarray(d["n_states"], dtype=np.int64)
    le = d["local_exponents"]
    le["n_lo"] = np.asarray(le["n_lo"], dtype=np.int64)
    le["n_hi"] = np.asarray(le["n_hi"], dtype=np.int64)
    le["exponent"] = np.asarray(le["exponent"], dtype=np.float64)
    return d


def backward(
    n_states: Optional[int],
    depth: int,
    c0: float = 0.5,
    W_std: Optional[float] = None,
    b_std: float = 0.0,
    q0: Optional[float] = None,
    *,
    ste_threshold: float = 1.0,
    ste_slope: Optional[float] = None,
    grad_c_out: float = 1.0,
    spacing: Optional[float] = None,
    amplitude: Optional[float] = None,
    activation: Optional[str] = None,
    levels: Optional[Sequence[float]] = None,
    thresholds: Optional[Sequence[float]] = None,
) -> Dict[str, Any]:
    """Straight-through gradients and the NTK of a pair of inputs, per layer
    (``quantdepth theory backward``).

    The surrogate phi'(x) = s * 1{|x| <= t} (t = ``ste_threshold``, inf for the
    identity) multiplies the squared gradient norm per layer by
    M = W_std**2 s**2 erf(t / sqrt(2 q*)); ``ste_slope=None`` takes the s with M = 1.
    Returns a dict of arrays of shape (depth + 1,): ``layer`` (int64), ``c``
    (forward correlation), ``grad_norm_ratio`` (|delta^l|^2 / |delta^L|^2),
    ``grad_corr``, ``ntk_aa``, ``ntk_ab``, ``ntk_corr`` (NaN at layer 0); and
    ``backward_factor`` (M), ``ste_slope``, ``ste_threshold``, ``network``.
    """
    d = _quantdepth.backward(
        _net(n_states, W_std, b_std, q0, spacing, amplitude, activation, levels, thresholds),
        _whole("depth", depth),
        _real("c0", c0),
        _real("ste_threshold", ste_threshold),
        None if ste_slope is None else _real("ste_slope", ste_slope),
        _real("grad_c_out", grad_c_out),
    )
    d["layer"] = np.asarray(d["layer"], dtype=np.int64)
    return _arrays(d, ["c", "grad_norm_ratio", "grad_corr", "ntk_aa", "ntk_ab", "ntk_corr"])


def finite_width(
    n_states: Optional[int],
    depth: int,
    c0: float,
    width: Union[int, Sequence[int]],
    W_std: Optional[float] = None,
    b_std: float = 0.0,
    q0: Optional[float] = None,
    *,
    pairs: int = 1,
    weights: str = "gaussian",
    ste_threshold: Optional[float] = None,
    ste_slope: Optional[float] = None,
    spacing: Optional[float] = None,
    amplitude: Optional[float] = None,
    levels: Optional[Sequence[float]] = None,
    thresholds: Optional[Sequence[float]] = None,
) -> Dict[str, Any]:
    """The finite-width (1/n) expansion of a pair of inputs
    (``quantdepth theory finite-width``; docs/finite-width.md).

    Arrays of shape (depth + 1,): ``layer``, the infinite-width ``q`` and
    ``c``, ``dq`` = n(E q_hat - q), ``dc`` = n(E c_hat - c), ``var_q`` and
    ``var_c`` = n Var for one pair. ``widths``: one dict per width with
    ``mean_q``, ``mean_c`` (q + dq/n, c + dc/n), ``sd_q``, ``sd_c`` (one
    network's average of ``pairs`` pairs), ``eps1``, ``eps2`` and ``flagged``
    (eps1 or eps2 > 0.1: the expansion is not to be trusted there); with
    ``ste_threshold``, ``ste_first_order`` and ``ste_lognormal``, the
    predicted E|delta^0|^2/|delta^L|^2 (``ste_infinite`` at infinite width;
    ``ste_slope=None``: the slope with M = 1). Gaussian weights only;
    quantized activations only; -1 < c0 < 1; widths of at least 8.
    """
    widths = [int(width)] if np.ndim(width) == 0 else [int(w) for w in width]
    d = _quantdepth.finite_width(
        _net(n_states, W_std, b_std, q0, spacing, amplitude, None, levels, thresholds),
        float(c0),
        int(depth),
        widths,
        int(pairs),
        str(weights),
        None if ste_threshold is None else float(ste_threshold),
        None if ste_slope is None else float(ste_slope),
    )
    d["layer"] = np.asarray(d["layer"], dtype=np.int64)
    _arrays(d, ["q", "c", "dq", "dc", "var_q", "var_c"])
    for w in d["widths"]:
        _arrays(w, ["mean_q", "mean_c", "sd_q", "sd_c", "eps1", "eps2"])
        w["flagged"] = np.asarray(w["flagged"], dtype=bool)
    return d


def simulate(
    n_states: Optional[int],
    c0: Union[float, Sequence[float]],
    width: int,
    depth: int,
    samples: int,
    *,
    pairs: int = 1,
    seed: int = 0,
    backend: str = "auto",
    kernel: Optional[str] = None,
    weights: str = "gaussian",
    W_std: Optional[float] = None,
    b_std: float = 0.0,
    q0: Optional[float] = None,
    spacing: Optional[float] = None,
    amplitude: Optional[float] = None,
    activation: Optional[str] = None,
    levels: Optional[Sequence[float]] = None,
    thresholds: Optional[Sequence[float]] = None,
) -> Dict[str, Any]:
    """Simulate ``samples`` random networks of width n and depth L at finite
    width (``quantdepth simulate``), beside the mean-field theory.

    Each network (weights ~ N(0, W_std**2/n), biases ~ N(0, b_std**2), all
    generated from ``seed``) propagates ``pairs`` pairs of inputs for each
    correlation in ``c0``. ``backend``: 'cpu', 'gpu' (a hardware GPU, else the
    software adapter) or 'auto' (a hardware GPU if there is one, else the CPU).
    ``kernel``: the GPU layer kernel (README "GPU kernel variants"): None for
    the reference ``'tiled'``, ``'auto'`` to time the variants that apply on
    first use and cache the fastest (as the CLI does), or a variant name
    (``'splitk'``, ``'wide'``, ``'stacked'``, ...); ignored on the CPU.
    ``weights``: the weight ensemble, as the CLI's ``--weights``: ``'gaussian'``
    (the default), ``'rademacher'`` (i.i.d. +-W_std/sqrt(n)) or ``'hadamard'``
    (structured orthogonal, width a power of two; README "Weight ensembles").
    Counts (``width``, ``depth``, ``samples``, ``pairs``, ``seed``) must be
    whole numbers, as on the command line.
    Network defaults as :func:`curve`. Runs with the GIL released; Ctrl-C
    raises ``KeyboardInterrupt``.

    Returns a dict with float64 arrays of shape (len(c0), depth + 1):
    ``q_mean``, ``q_se`` (q-hat: mean squared pre-activation), ``c_mean``,
    ``c_se`` (c-hat: correlation of each pair), means and standard errors over
    the networks (SE is NaN with one sample), and ``q_theory``, ``c_theory``;
    plus ``c0`` (array), ``samples``, ``backend``, ``adapter``, ``kernel``
    (the GPU variant that ran, None on the CPU), ``weights``, ``backend_note``,
    ``wall_seconds`` and ``network``.
    """
    c0s, _ = _c0_list(c0)
    net = _net(n_states, W_std, b_std, q0, spacing, amplitude, activation, levels, thresholds)
    counts = [_whole(k, v) for k, v in
              [("width", width), ("depth", depth), ("samples", samples), ("pairs", pairs), ("seed", seed)]]
    if counts[4] < 0:
        raise ValueError(f"invalid seed = {seed}: give a whole number >= 0")
    _quiet_wayland_probe()
    d = _quantdepth.simulate(
        net,
        c0s,
        _whole("width", width),
        _whole("depth", depth),
        _whole("samples", samples),
        _whole("pairs", pairs),
        _whole("seed", seed),
        str(backend),
        None if kernel is None else str(kernel),
        str(weights),
    )
    return _arrays(d, ["c0", "q_mean", "q_se", "c_mean", "c_se", "q_theory", "c_theory"])


def run(
    config_path: Union[str, "pathlib.Path"],
    out: Optional[Union[str, "pathlib.Path"]] = None,
    *,
    backend: Optional[str] = None,
    seed: Optional[int] = None,
    kernel: Optional[str] = None,
) -> pathlib.Path:
    """Run an experiment from a config (``quantdepth run CONFIG``) and return
    the results folder.

    The folder (under ``out``, else the config's ``outputs.dir``, else
    ``results``) holds config.toml, meta.json, curves.csv/json, summary.json
    and plots/. The wheel that ``pip install .`` builds draws the plots
    (:data:`PLOTS` is true); a build without the ``plots`` feature
    (``maturin develop`` without ``--features plots``) leaves plots/ empty and
    says so with a ``UserWarning``. ``backend`` and ``seed`` override the config's;
    ``kernel`` is the GPU layer kernel as in :func:`simulate`.
    Runs with the GIL released; on Ctrl-C the finished points are kept, the
    folder is marked incomplete and ``KeyboardInterrupt`` names it.
    """
    seed = None if seed is None else _whole("seed", seed)
    if seed is not None and seed < 0:
        raise ValueError(f"invalid seed = {seed}: give a whole number >= 0")
    _quiet_wayland_probe()
    folder, _complete, _table = _quantdepth.run(
        str(config_path),
        None if out is None else str(out),
        None if backend is None else str(backend),
        seed,
        None if kernel is None else str(kernel),
    )
    if not PLOTS:
        warnings.warn(
            f"this build of quantdepth draws no plots (built without the `plots` feature): "
            f"{folder}/plots is empty; rebuild with `maturin develop --features plots` "
            f"(or `pip install .`, which enables it), or run the config with the CLI",
            UserWarning,
            stacklevel=2,
        )
    return pathlib.Path(folder)
