"""quantdepth.nn: quantize with numpy (always), the torch helpers where torch
is installed."""

import math

import numpy as np
import pytest

import quantdepth as qd
from quantdepth import nn


def test_quantize_is_right_continuous_at_the_thresholds():
    levels, thresholds = [-1.0, 0.0, 2.0], [-0.5, 0.7]
    x = np.array([-3.0, -0.5000001, -0.5, 0.0, 0.6999999, 0.7, 5.0, np.nan])
    y = nn.quantize(x, levels, thresholds)
    assert np.array_equal(y[:-1], [-1.0, -1.0, 0.0, 0.0, 0.0, 2.0, 2.0])  # phi(g_k) = y_k
    assert math.isnan(y[-1])
    assert y.shape == x.shape and y.dtype == np.float64


def test_quantize_keeps_float_dtype_and_shape():
    init = qd.optimal_init(4)
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    y = nn.quantize(x, init["levels"], init["thresholds"])
    assert y.dtype == np.float32 and y.shape == (3, 4)
    assert set(np.unique(y)) <= set(init["levels"].astype(np.float32))
    assert nn.quantize(np.arange(3), [0, 1], [1]).dtype == np.float64  # ints: float64
    assert nn.quantize(0.5, [0, 1], [1]) == 0.0


def test_quantized_second_moment_is_the_variance_fixed_point():
    # sigma_w^2 E[phi(sqrt(q*) z)^2] = q* at the optimal init (sigma_b = 0): a
    # Monte Carlo mean of 10^6 draws within 5 standard errors of q*/W_std^2.
    init = qd.optimal_init(16)
    z = np.random.default_rng(0).standard_normal(1_000_000) * math.sqrt(init["q_star"])
    phi2 = nn.quantize(z, init["levels"], init["thresholds"]) ** 2
    want = init["q_star"] / init["W_std"] ** 2
    se = phi2.std() / math.sqrt(phi2.size)
    assert abs(phi2.mean() - want) < 5 * se, (phi2.mean(), want, se)


def test_quantize_names_a_bad_quantizer():
    for levels, thresholds, want in [
        ([1.0], [], "invalid number of levels = 1"),
        ([0.0, 1.0, 2.0], [0.5], "3 levels need exactly 2 thresholds"),
        ([0.0, 1.0, 1.0], [0.0, 1.0], "invalid level 2 = 1.0: levels must be strictly increasing"),
        ([0.0, 1.0], [np.inf], "invalid threshold 0 = inf: must be a finite number"),
    ]:
        with pytest.raises(ValueError, match=want.replace("(", r"\(").replace(".", r"\.")):
            nn.quantize(np.zeros(3), levels, thresholds)


def test_importing_the_package_does_not_import_torch():
    # torch is optional: `import quantdepth.nn` must not pull it in (even
    # where it is installed), only the torch helpers do.
    import subprocess
    import sys

    code = "import sys, quantdepth, quantdepth.nn; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_torch_ste_forward_backward_and_init():
    torch = pytest.importorskip("torch")
    init = qd.optimal_init(16)
    x = torch.linspace(-3, 3, 101, dtype=torch.float64, requires_grad=True)
    y = nn.quantize_ste(x, init["levels"], init["thresholds"], init["ste_slope"], init["ste_threshold"])
    assert torch.equal(y.detach(), torch.as_tensor(nn.quantize(x.detach().numpy(), init["levels"], init["thresholds"])))
    y.sum().backward()
    want = init["ste_slope"] * (x.detach().abs() <= init["ste_threshold"]).double()
    assert torch.equal(x.grad, want)

    model = torch.nn.Sequential(torch.nn.Linear(400, 300), torch.nn.Linear(300, 200))
    out = nn.init_(model, 16, generator=torch.Generator().manual_seed(0))
    assert out["W_std"] == init["W_std"]
    for layer in model:
        w = layer.weight.detach()
        std = init["W_std"] / math.sqrt(layer.in_features)
        # The sample std of n normals is within 5/sqrt(2n) of the true std (relative).
        assert abs(w.std().item() / std - 1) < 5 / math.sqrt(2 * w.numel())
        assert torch.count_nonzero(layer.bias) == 0
