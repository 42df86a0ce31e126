"""The new user's path through the Python package: it refuses what the CLI
refuses (fractional counts, strings for numbers) with the CLI's reason, keeps
the driver probe's noise off the terminal, takes the CLI's options that it
lacked (weights=, bits=), says where plots are missing, and shows a clean
namespace."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import quantdepth as qd


@pytest.mark.parametrize(
    "cli_args,call,reason",
    [
        # `theory curve --depth 10.7`: the CLI's count parser; Python took int(10.7) = 10.
        (["theory", "curve", "--states", "8", "--depth", "10.7"],
         lambda: qd.curve(8, depth=10.7), "10.7 is not a whole number: give e.g. 11"),
        (["simulate", "--backend", "cpu", "--states", "4", "--c0", "0.5", "--width", "64.7",
          "--depth", "3", "--samples", "2"],
         lambda: qd.simulate(4, 0.5, width=64.7, depth=3, samples=2, backend="cpu"),
         "64.7 is not a whole number: give e.g. 65"),
        (["simulate", "--backend", "cpu", "--states", "4", "--c0", "0.5", "--width", "64",
          "--depth", "3", "--samples", "2.9"],
         lambda: qd.simulate(4, 0.5, width=64, depth=3, samples=2.9, backend="cpu"),
         "2.9 is not a whole number: give e.g. 3"),
        (["simulate", "--backend", "cpu", "--states", "4", "--c0", "0.5", "--width", "64",
          "--depth", "3.5", "--samples", "2"],
         lambda: qd.simulate(4, 0.5, width=64, depth=3.5, samples=2, backend="cpu"),
         "3.5 is not a whole number: give e.g. 4"),
        (["simulate", "--backend", "cpu", "--states", "4", "--c0", "0.5", "--width", "64",
          "--depth", "3", "--samples", "2", "--pairs", "1.5"],
         lambda: qd.simulate(4, 0.5, width=64, depth=3, samples=2, pairs=1.5, backend="cpu"),
         "1.5 is not a whole number: give e.g. 2"),
    ],
)
def test_fractional_counts_are_refused_with_the_cli_reason(cli, cli_args, call, reason):
    out = cli.run(*cli_args)
    assert out.returncode != 0 and reason in out.stderr, out.stderr
    with pytest.raises(ValueError) as e:
        call()
    assert reason in str(e.value), str(e.value)


def test_whole_floats_are_accepted_as_the_cli_accepts_1e3():
    # The CLI takes `--depth 1e1`; Python takes 10.0 (and numpy integers) the same.
    q, _ = qd.curve(8, depth=10.0)
    assert q.shape == (11,)
    q, _ = qd.curve(8, depth=np.int64(10))
    assert q.shape == (11,)


def test_a_string_for_w_std_is_a_clear_error():
    # Was: "could not convert string to float: 'opt'".
    with pytest.raises(ValueError) as e:
        qd.curve(8, depth=10, W_std="opt")
    msg = str(e.value)
    assert msg.startswith("invalid W_std = 'opt': give a number"), msg
    assert "W_std=None" in msg, msg
    with pytest.raises(ValueError) as e:
        qd.simulate(4, 0.5, width=8, depth=3, samples=2, backend="cpu", W_std="opt")
    assert "invalid W_std = 'opt'" in str(e.value)
    with pytest.raises(ValueError) as e:
        qd.curve(8, depth="ten")
    assert str(e.value).startswith("invalid depth = 'ten': 'ten' is not a number"), str(e.value)


def test_optimal_init_takes_bits_as_init_does(cli):
    by_bits = qd.optimal_init(bits=4)
    assert by_bits["n_states"] == 16 and by_bits["bits"] == 4
    # 2.5286408548: sigma_w^opt of N = 16 (README), the same as optimal_init(16).
    assert by_bits["W_std"] == qd.optimal_init(16)["W_std"]
    assert abs(by_bits["W_std"] - 2.5286408548) < 5e-11
    want = cli.json("init", "--bits", "4")
    assert by_bits["W_std"] == want["W_std"] == want["sigma_w"]
    # The CLI's refusal of 0 bits, word for word.
    with pytest.raises(ValueError) as e:
        qd.optimal_init(bits=0)
    assert str(e.value) == cli.error("init", "--bits", "0")
    with pytest.raises(ValueError) as e:
        qd.optimal_init(bits=2.5)
    assert "2.5 is not a whole number" in str(e.value)
    for kw in [dict(), dict(n_states=16, bits=4)]:
        with pytest.raises(ValueError) as e:
            qd.optimal_init(**kw)
        assert "give exactly one of n_states (N) and bits" in str(e.value)


def test_weight_std_has_one_name_in_python_and_the_cli_json(cli):
    init = qd.optimal_init(8)
    js = cli.json("init", "--states", "8")
    # W_std everywhere; sigma_w stays as an alias with the same value.
    assert init["W_std"] == js["W_std"] == init["sigma_w"] == js["sigma_w"]
    assert init["b_std"] == js["b_std"] == 0.0
    # First Linear layer on standardized inputs: std sqrt(q* - b_std^2) = 1 at q* = 1.
    assert init["first_layer_W_std"] == js["first_layer_W_std"] == 1.0


def test_simulate_takes_the_weight_ensemble():
    kw = dict(width=64, depth=4, samples=3, backend="cpu", seed=7)
    g = qd.simulate(4, 0.5, **kw)
    h = qd.simulate(4, 0.5, weights="hadamard", **kw)
    assert g["weights"] == "gaussian" and h["weights"] == "hadamard"
    # Different ensembles draw different networks: the estimates differ.
    assert not np.array_equal(g["c_mean"], h["c_mean"])
    with pytest.raises(ValueError) as e:
        qd.simulate(4, 0.5, weights="orthogonal", **kw)
    assert 'invalid weights = "orthogonal": one of "gaussian", "rademacher", "hadamard"' in str(e.value)


def test_simulate_keeps_the_wayland_probe_quiet():
    # A child with XDG_RUNTIME_DIR unset: the GPU probe (backend "auto") must
    # not print libwayland's "error: XDG_RUNTIME_DIR is invalid" line.
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    code = (
        "import quantdepth as qd; "
        "qd.simulate(4, 0.5, width=16, depth=2, samples=2, backend='auto')"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "XDG_RUNTIME_DIR" not in out.stderr, out.stderr


def test_dir_shows_the_public_api_only():
    names = dir(qd)
    for hidden in ["Any", "Dict", "np", "pathlib", "Optional", "annotations", "os", "warnings"]:
        assert hidden not in names, names
    for public in ["optimal_init", "curve", "simulate", "run", "optimal", "scaling", "backward", "nn"]:
        assert public in names, names


def test_run_draws_plots_or_says_it_does_not(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        'name = "tiny"\nseed = 2\nbackend = "cpu"\n[network]\nactivation = "uniform"\n'
        'sigma_w = "opt"\nwidth = 32\ndepth = 4\nsamples = 2\n[inputs]\nkind = "pairs"\n'
        'c0 = [0.5]\npairs = 1\n[sweep]\nstates = [2]\n'
    )
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        folder = qd.run(config, out=tmp_path / "results")
    drawn = any((folder / "plots").glob("*.png"))
    said = [str(x.message) for x in w if "draws no plots" in str(x.message)]
    # The wheel `pip install .` builds has the plots feature (pyproject.toml): plots drawn.
    assert drawn == qd.PLOTS
    assert (len(said) == 1) == (not qd.PLOTS), said
