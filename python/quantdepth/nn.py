"""Helpers for models with quantized activations: pure Python, numpy only at
import (torch is imported only when a torch helper is used).

- :func:`quantize` — the quantizer phi of the theory, for numpy arrays and
  torch tensors;
- :data:`QuantizeSTE` — a ``torch.autograd.Function``: phi forward, the
  straight-through estimator s * 1{|x| <= t} backward;
- :func:`quantize_ste` — ``QuantizeSTE.apply`` with keyword defaults;
- :func:`init_` — sets every ``nn.Linear`` of a module to the theory's
  initialization (:func:`quantdepth.optimal_init`).

Semantics of ``quantize(x, levels, thresholds)``: with levels
y_0 < ... < y_{N-1} and thresholds g_1 < ... < g_{N-1},

    phi(x) = y_k,  k = #{ j : g_j <= x }

so phi is right-continuous: phi(g_k) = y_k (the Heaviside convention
H(0) = 1 of the theory), phi(x) = y_0 below g_1 and y_{N-1} from g_{N-1} on.
NaN maps to NaN. This is ``torch.bucketize(x, thresholds, right=True)``
and ``numpy.searchsorted(thresholds, x, side="right")`` indexing the levels.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

__all__ = ["quantize", "quantize_ste", "init_", "QuantizeSTE"]


def _check(levels: Any, thresholds: Any) -> None:
    n_l, n_t = len(levels), len(thresholds)
    if n_l < 2:
        raise ValueError(f"invalid number of levels = {n_l}: a quantizer needs at least 2 levels")
    if n_t + 1 != n_l:
        raise ValueError(
            f"invalid number of thresholds = {n_t}: {n_l} levels need exactly {n_l - 1} thresholds"
        )
    for name, v in (("level", np.asarray(levels, dtype=np.float64)), ("threshold", np.asarray(thresholds, dtype=np.float64))):
        if not np.all(np.isfinite(v)):
            i = int(np.flatnonzero(~np.isfinite(v))[0])
            raise ValueError(f"invalid {name} {i} = {v[i]}: must be a finite number")
        bad = np.flatnonzero(np.diff(v) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise ValueError(
                f"invalid {name} {i} = {v[i]}: {name}s must be strictly increasing, "
                f"but the previous one is {v[i - 1]}"
            )


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def quantize(x: Any, levels: Sequence[float], thresholds: Sequence[float]) -> Any:
    """phi(x) = levels[#{thresholds <= x}], elementwise (see the module's docs).

    ``x``: a numpy array (or anything ``numpy.asarray`` takes) or a torch
    tensor; the result has the same shape, and for floating ``x`` the same
    dtype (float64 otherwise). ``levels`` and ``thresholds`` (N and N - 1
    strictly increasing finite numbers, e.g. from
    :func:`quantdepth.optimal_init`) may be sequences, arrays or tensors.
    Raises ``ValueError`` naming the first bad entry.
    """
    if _is_torch(x):
        import torch

        lv = torch.as_tensor(levels, dtype=x.dtype if x.is_floating_point() else torch.float64, device=x.device)
        th = torch.as_tensor(thresholds, dtype=lv.dtype, device=x.device)
        _check(lv.detach().cpu().numpy(), th.detach().cpu().numpy())
        y = lv[torch.bucketize(x.to(lv.dtype), th, right=True)]
        return torch.where(torch.isnan(x), torch.full_like(y, float("nan")), y)
    lv = np.asarray(levels, dtype=np.float64)
    th = np.asarray(thresholds, dtype=np.float64)
    _check(lv, th)
    xa = np.asarray(x)
    out_dtype = xa.dtype if np.issubdtype(xa.dtype, np.floating) else np.float64
    y = lv[np.searchsorted(th, xa, side="right")]
    if np.issubdtype(xa.dtype, np.floating):
        y = np.where(np.isnan(xa), np.nan, y)
    return np.asarray(y, dtype=out_dtype)


_STE = None


def _ste_function() -> Any:
    """Builds (once) the torch.autograd.Function; torch is imported here."""
    global _STE
    if _STE is None:
        import torch

        class QuantizeSTE(torch.autograd.Function):
            """phi(x) forward; the straight-through estimator backward:
            grad_x = grad_y * s * 1{|x| <= t}.

            ``QuantizeSTE.apply(x, levels, thresholds, ste_slope, ste_threshold)``
            with levels and thresholds as tensors on x's device.
            """

            @staticmethod
            def forward(ctx: Any, x: Any, levels: Any, thresholds: Any, ste_slope: float, ste_threshold: float) -> Any:
                ctx.save_for_backward(x)
                ctx.ste_slope = float(ste_slope)
                ctx.ste_threshold = float(ste_threshold)
                return levels.to(x.dtype)[torch.bucketize(x, thresholds.to(x.dtype), right=True)]

            @staticmethod
            def backward(ctx: Any, grad: Any) -> Any:
                (x,) = ctx.saved_tensors
                mask = (x.abs() <= ctx.ste_threshold).to(grad.dtype)
                return grad * (ctx.ste_slope * mask), None, None, None, None

        _STE = QuantizeSTE
    return _STE


def __getattr__(name: str) -> Any:
    # PEP 562: `quantdepth.nn.QuantizeSTE` imports torch only when asked for.
    if name == "QuantizeSTE":
        return _ste_function()
    raise AttributeError(f"module 'quantdepth.nn' has no attribute '{name}'")


def quantize_ste(
    x: Any,
    levels: Any,
    thresholds: Any,
    ste_slope: float,
    ste_threshold: float = 1.0,
) -> Any:
    """``QuantizeSTE.apply``: phi(x) forward, s * 1{|x| <= t} backward, for a
    torch tensor ``x``. Use ``ste_slope = optimal_init(N)["ste_slope"]`` and
    its ``ste_threshold`` so gradient norms neither grow nor shrink (M = 1)."""
    import torch

    if not (math.isfinite(ste_slope) and ste_slope > 0):
        raise ValueError(f"invalid ste slope = {ste_slope}: a finite number > 0")
    if not ste_threshold > 0:
        raise ValueError(f"invalid ste threshold = {ste_threshold}: a number > 0 (inf for the identity surrogate)")
    lv = torch.as_tensor(levels, device=x.device)
    th = torch.as_tensor(thresholds, device=x.device)
    _check(lv.detach().cpu().numpy(), th.detach().cpu().numpy())
    return _ste_function().apply(x, lv, th, ste_slope, ste_threshold)


def init_(
    module: Any,
    n_states: int,
    amplitude: float = 1.0,
    b_std: float = 0.0,
    generator: Optional[Any] = None,
) -> Dict[str, Any]:
    """Sets every ``torch.nn.Linear`` in ``module`` to the theory's
    initialization for N-state activations: weights ~ N(0, W_std**2 / fan_in),
    biases ~ N(0, b_std**2) (zero for b_std = 0). Returns
    :func:`quantdepth.optimal_init`'s dict (levels, thresholds, ste_slope, ...)
    for the quantizer between the layers. In place, without gradient tracking.
    """
    import torch

    from . import optimal_init

    init = optimal_init(n_states, amplitude=amplitude, b_std=b_std)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, init["W_std"] / math.sqrt(m.in_features), generator=generator)
                if m.bias is not None:
                    if init["b_std"] > 0:
                        m.bias.normal_(0.0, init["b_std"], generator=generator)
                    else:
                        m.bias.zero_()
    return init
