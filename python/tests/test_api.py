"""The Python API against the command line's JSON for the same inputs, its
array shapes and dtypes, and its errors (ValueError with the CLI's message).

Numbers cross the boundary as f64 both ways (Rust -> Python float; Rust ->
JSON shortest round-trip decimal -> Python float, which parses it exactly),
so the same computation gives the same bits: equality is expected.
"""

import math
import os

import numpy as np
import pytest

import quantdepth as qd


def test_optimal_init_16_states_gives_the_published_sigma_w():
    init = qd.optimal_init(16)
    # sigma_w^opt for N = 16, amplitude 1, sigma_b = 0 (`theory curve --states 16` header: 2.528640855).
    assert abs(init["W_std"] - 2.5286408548) < 5e-11
    assert init["b_std"] == 0.0
    assert init["levels"].shape == (16,) and init["levels"].dtype == np.float64
    assert init["thresholds"].shape == (15,) and init["thresholds"].dtype == np.float64
    # q* = 1: spacing = D_opt(16) = 0.335201 (README), thresholds centred on 0.
    assert abs(init["q_star"] - 1.0) < 1e-12
    assert abs(init["spacing"] - 0.335201) < 5e-7
    assert init["thresholds"][7] == 0.0
    assert init["bits"] == 4
    assert abs(init["L_max"] - 6.0 * init["xi"]) < 1e-12 * init["L_max"]
    for key in ["W_std", "b_std", "spacing", "levels", "thresholds", "q_star", "chi", "xi", "L_max", "ste_slope"]:
        assert key in init


def test_optimal_init_matches_cli_init_json(cli):
    for args, kw in [
        (["--states", "16"], {}),
        (["--states", "5", "--amplitude", "2.5", "--kappa", "4"], dict(amplitude=2.5, kappa=4.0)),
        (["--bits", "3", "--sigma-b", "0.2", "--ste-threshold", "0.5"], dict(b_std=0.2, ste_threshold=0.5)),
    ]:
        want = cli.json("init", *args)
        got = qd.optimal_init(want["states"], **kw)
        assert got["W_std"] == want["sigma_w"], args
        assert got["b_std"] == want["sigma_b"]
        assert np.array_equal(got["levels"], np.array(want["levels"]))
        assert np.array_equal(got["thresholds"], np.array(want["thresholds"]))
        for py, js in [("q_star", "q_star"), ("chi", "chi"), ("xi", "xi"), ("L_max", "l_max"),
                       ("ste_slope", "ste_slope"), ("spacing", "spacing"), ("c_star", "c_star"),
                       ("input_scale", "input_scale")]:
            assert got[py] == want[js], (args, py)


def test_curve_matches_cli_theory_curve(cli):
    want = cli.json("theory", "curve", "--states", "6", "--depth", "12", "--c0", "0.3", "--sigma-b", "0.05")
    q, c = qd.curve(6, 12, 0.3, b_std=0.05)
    assert q.shape == (13,) and c.shape == (13,) and q.dtype == np.float64
    assert np.array_equal(q, [p["q"] for p in want["curve"]])
    assert np.array_equal(c, [p["c"] for p in want["curve"]])
    full = qd.curve(6, 12, [0.3, 0.9], b_std=0.05, full=True)
    assert full["q"].shape == (2, 13)
    assert np.array_equal(full["c"][0], c)
    assert full["c_star"] == want["c_star"] and full["xi"] == want["xi_c"] and full["chi"] == want["chi_c_star"]
    assert full["network"]["W_std"] == want["network"]["sigma_w"]


def test_curve_with_explicit_quantizer_and_tanh(cli):
    want = cli.json("theory", "curve", "--levels", "-1,0,2", "--thresholds", "-0.5,0.7",
                    "--sigma-w", "1.3", "--depth", "5", "--c0", "0.2")
    q, c = qd.curve(None, 5, 0.2, W_std=1.3, levels=[-1, 0, 2], thresholds=[-0.5, 0.7])
    assert np.array_equal(c, [p["c"] for p in want["curve"]])
    want = cli.json("theory", "curve", "--activation", "tanh", "--sigma-w", "1.5", "--sigma-b", "0.1", "--depth", "5")
    q, c = qd.curve(None, 5, 0.5, W_std=1.5, b_std=0.1, activation="tanh")
    assert np.array_equal(q, [p["q"] for p in want["curve"]])


def test_optimal_and_scaling_match_cli(cli):
    want = cli.json("theory", "optimal", "--states", "2..6,16")
    got = qd.optimal("2..6,16")
    assert got["n_states"].dtype == np.int64 and list(got["n_states"]) == [2, 3, 4, 5, 6, 16]
    assert math.isnan(got["d_opt"][0]) and want[0]["d_opt"] is None
    for key, js in [("chi_max", "chi_max"), ("one_minus_chi_max", "one_minus_chi_max"),
                    ("xi_max", "xi_max"), ("L_max", "l_max")]:
        assert got[key].dtype == np.float64 and got[key].shape == (6,)
        assert np.array_equal(got[key], [w[js] for w in want]), key
    assert np.array_equal(got["d_opt"][1:], [w["d_opt"] for w in want[1:]])
    # A list of ints (kept in its order) and a single int work too.
    assert np.array_equal(qd.optimal([16, 3])["xi_max"], got["xi_max"][[5, 1]])
    assert qd.optimal(16)["xi_max"].shape == (1,)

    want = cli.json("theory", "scaling", "--states", "3..20,64")
    got = qd.scaling("3..20,64")
    for fit in ["one_minus_chi_max", "xi_max", "d_opt"]:
        for k in ["slope", "stderr", "intercept", "intercept_stderr", "r2"]:
            assert got[fit][k] == want[fit][k], (fit, k)
    le = got["local_exponents"]
    assert np.array_equal(le["exponent"], [x["exponent"] for x in want["local_exponents"]])
    assert np.array_equal(le["n_lo"], [x["n_lo"] for x in want["local_exponents"]])


def test_backward_matches_cli(cli):
    want = cli.json("theory", "backward", "--states", "4", "--depth", "8", "--c0", "0.4", "--ste-threshold", "0.8")
    got = qd.backward(4, 8, 0.4, ste_threshold=0.8)
    assert got["layer"].dtype == np.int64 and got["grad_corr"].shape == (9,)
    assert got["backward_factor"] == want["backward_factor"]
    assert abs(got["backward_factor"] - 1.0) < 1e-13  # the default slope gives M = 1
    assert got["ste_slope"] == want["ste"]["slope"]
    for key in ["c", "grad_norm_ratio", "grad_corr", "ntk_aa", "ntk_ab"]:
        assert np.array_equal(got[key], [p[key] for p in want["curve"]]), key
    assert math.isnan(got["ntk_corr"][0]) and want["curve"][0]["ntk_corr"] is None
    assert np.array_equal(got["ntk_corr"][1:], [p["ntk_corr"] for p in want["curve"][1:]])


def test_finite_width_matches_cli(cli):
    # The 1/n expansion: the same numbers as `quantdepth theory finite-width`,
    # Δq at layer 1 = +0.547 for N = 4 (the orthonormal input layer), flags
    # at N = 2, c0 = 0.999, n = 64, and the STE ratio 1.434 at N = 16, n = 1024.
    want = cli.json("theory", "finite-width", "--states", "4", "--c0", "0.3", "--depth", "6", "--width", "64,1024")
    got = qd.finite_width(4, 6, 0.3, [64, 1024])
    assert got["layer"].dtype == np.int64 and got["dc"].shape == (7,)
    for key in ["q", "c", "dq", "dc", "var_q", "var_c"]:
        assert np.array_equal(got[key], [l[key] for l in want["expansion"]]), key
    for g, w in zip(got["widths"], want["widths"]):
        for key in ["mean_q", "mean_c", "sd_q", "sd_c", "eps1", "eps2"]:
            assert np.array_equal(g[key], [l[key] for l in w["layers"]]), key
    assert abs(got["dq"][1] - 0.5468) < 1e-3
    flags = qd.finite_width(2, 3, 0.999, 64)["widths"][0]["flagged"]
    assert flags.tolist() == [False, True, True, True]
    ste = qd.finite_width(16, 30, 0.5, 1024, ste_threshold=1.0)
    assert abs(ste["widths"][0]["ste_lognormal"] - 1.4337) < 1e-3
    for kw, why in [({"c0": 1.0}, "-1 < c0 < 1"), ({"width": 4}, "at least 8"), ({"weights": "hadamard"}, "Gaussian weights only")]:
        args = {"n_states": 4, "depth": 3, "c0": 0.5, "width": 64, **kw}
        with pytest.raises(ValueError, match=why):
            qd.finite_width(**args)


def test_simulate_matches_cli_simulate_bit_for_bit(cli):
    # One backend and one seed give bitwise the same statistics (fixed reduction order).
    want = cli.json("simulate", "--backend", "cpu", "--states", "4", "--c0", "0.3,0.9", "--pairs", "2",
                    "--width", "128", "--depth", "6", "--samples", "3", "--seed", "7")
    got = qd.simulate(4, [0.3, 0.9], width=128, depth=6, samples=3, pairs=2, seed=7, backend="cpu")
    for key in ["q_mean", "q_se", "c_mean", "c_se", "q_theory", "c_theory"]:
        assert got[key].shape == (2, 7) and got[key].dtype == np.float64, key
    for i, curve in enumerate(want["curves"]):
        for key in ["q_mean", "q_se", "c_mean", "c_se", "q_theory", "c_theory"]:
            assert np.array_equal(got[key][i], [l[key] for l in curve["layers"]]), key
    assert got["samples"] == 3 and got["backend"] == "cpu"
    assert np.array_equal(got["c0"], [0.3, 0.9])


def test_simulate_se_is_nan_with_one_sample_and_agrees_with_theory():
    got = qd.simulate(8, 0.5, width=512, depth=4, samples=1, backend="cpu")
    assert np.all(np.isnan(got["c_se"])) and got["c_mean"].shape == (1, 5)
    # Layer 0 is built exactly: q^0 = q* = 1, c^0 = 0.5, to f32 rounding.
    assert abs(got["q_mean"][0, 0] - 1.0) < 1e-5 and abs(got["c_mean"][0, 0] - 0.5) < 1e-5
    # 12 networks of width 512: every layer within 5 SE of the mean-field curve.
    got = qd.simulate(8, 0.5, width=512, depth=4, samples=12, seed=3, backend="cpu")
    z = (got["c_mean"][0, 1:] - got["c_theory"][0, 1:]) / got["c_se"][0, 1:]
    assert np.all(np.abs(z) < 5), z


def _cli_and_py_messages_agree(cli, cli_args, call):
    with pytest.raises(ValueError) as e:
        call()
    assert str(e.value) == cli.error(*cli_args)


@pytest.mark.parametrize(
    "cli_args,call",
    [
        (["init", "--states", "1"], lambda: qd.optimal_init(1)),
        (["init", "--states", "16", "--amplitude", "-1"], lambda: qd.optimal_init(16, amplitude=-1)),
        (["init", "--states", "4", "--sigma-b", "2"], lambda: qd.optimal_init(4, b_std=2.0)),
        (["init", "--states", "4", "--kappa", "0"], lambda: qd.optimal_init(4, kappa=0.0)),
        (["theory", "curve", "--states", "1"], lambda: qd.curve(1, 10)),
        (["theory", "curve", "--states", "4", "--sigma-w", "-1"], lambda: qd.curve(4, 100, W_std=-1.0)),
        (["theory", "curve", "--states", "4", "--spacing", "0"], lambda: qd.curve(4, 100, spacing=0.0)),
        (["theory", "curve", "--activation", "tanh"], lambda: qd.curve(None, 100, activation="tanh")),
        (["theory", "curve", "--levels", "0,1,1", "--thresholds", "0,1", "--sigma-w", "1"],
         lambda: qd.curve(None, 100, W_std=1.0, levels=[0, 1, 1], thresholds=[0, 1])),
        (["theory", "optimal", "--states", "1..4"], lambda: qd.optimal("1..4")),
        (["theory", "optimal", "--states", "8..3"], lambda: qd.optimal("8..3")),
        (["simulate", "--backend", "cpu", "--states", "4", "--c0", "0.5", "--width", "1", "--depth", "3", "--samples", "2"],
         lambda: qd.simulate(4, 0.5, width=1, depth=3, samples=2, backend="cpu")),
        (["simulate", "--backend", "cpu", "--states", "4", "--c0", "1.5", "--width", "8", "--depth", "3", "--samples", "2"],
         lambda: qd.simulate(4, 1.5, width=8, depth=3, samples=2, backend="cpu")),
        (["simulate", "--backend", "cpu", "--states", "4", "--c0", "0.5", "--width", "8", "--depth", "3", "--samples", "0"],
         lambda: qd.simulate(4, 0.5, width=8, depth=3, samples=0, backend="cpu")),
        (["run", "no/such/config.toml"], lambda: qd.run("no/such/config.toml")),
    ],
)
def test_errors_are_value_errors_with_the_cli_message(cli, cli_args, call):
    _cli_and_py_messages_agree(cli, cli_args, call)


def test_errors_the_cli_parser_catches_are_value_errors_too():
    # Where clap rejects the input before the library sees it (negative counts,
    # a bad c0), Python still gets a ValueError that says what would be right.
    for call, want in [
        (lambda: qd.optimal_init(-3), "invalid states N = -3: a quantizer needs N from 2 to 1048576"),
        (lambda: qd.curve(-3, 10), "invalid states N = -3: a quantizer needs N >= 2 states"),
        (lambda: qd.curve(4, 0), "invalid depth = 0: a depth curve needs at least 1 layer"),
        (lambda: qd.curve(4, 10, c0=1.5), "invalid c0 = 1.5: a correlation must lie in [-1, 1]"),
        (lambda: qd.simulate(4, 0.5, width=-8, depth=3, samples=2, backend="cpu"), "invalid width = -8"),
        (lambda: qd.simulate(4, 0.5, width=8, depth=3, samples=2, backend="cuda"), "invalid backend = cuda: one of auto, cpu, gpu"),
        (lambda: qd.simulate(4, 0.5, width=8, depth=3, samples=2, backend="cpu", kernel="fast"), "invalid kernel = fast: auto or one of tiled, splitk"),
        (lambda: qd.run("configs/quickstart.toml", kernel="fast"), "invalid kernel = fast"),
        (lambda: qd.curve(4, 10, activation="relu"), "give exactly one of"),
        (lambda: qd.curve(None, 10, activation="relu"), "invalid activation = 'relu'"),
        (lambda: qd.scaling([3, 4]), "at least 3 values of N"),
        (lambda: qd.optimal([]), "at least one N >= 2"),
        (lambda: qd.curve(4, 10, c0=[[0.1]]), "a number or a 1-D sequence"),
    ]:
        with pytest.raises(ValueError) as e:
            call()
        assert want in str(e.value), (want, str(e.value))


def test_run_writes_a_results_folder_and_returns_its_path(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        """
name = "tiny"
seed = 2
backend = "cpu"

[network]
activation = "uniform"
sigma_w = "opt"
width = 64
depth = 6
samples = 3

[inputs]
kind = "pairs"
c0 = [0.5]
pairs = 1

[sweep]
states = [2, 4]
"""
    )
    folder = qd.run(config, out=tmp_path / "results")
    assert folder.is_dir() and folder.parent == tmp_path / "results"
    assert folder.name.startswith("tiny-")
    import json

    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "complete", meta
    summary = json.loads((folder / "summary.json").read_text())
    assert len(summary["points"]) == 2
    for name in ["config.toml", "curves.csv", "curves.json"]:
        assert (folder / name).is_file(), name
    # Plots only where the build has them (the CLI always does).
    assert any((folder / "plots").glob("*.svg")) == qd.PLOTS


def test_run_reports_config_errors_as_the_cli_does(cli, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('name = "bad"\n\n[network]\nwidht = 64\n')
    _cli_and_py_messages_agree(cli, ["run", config], lambda: qd.run(config))


def test_simulate_runs_the_gpu_kernel_it_is_given():
    # kernel= reaches the GPU backend: None keeps the library's reference
    # kernel, and a stacked run (3 networks per dispatch) gives each network
    # the tiled kernel's bits, so the statistics are identical (README "GPU
    # kernel variants"). Skipped without a GPU adapter unless
    # QUANTDEPTH_REQUIRE_GPU is set (CI, on lavapipe).
    def sim(kernel):
        return qd.simulate(4, 0.5, width=160, depth=3, samples=3, pairs=3, seed=5, backend="gpu", kernel=kernel)

    try:
        ref = sim(None)
    except RuntimeError as e:
        if os.environ.get("QUANTDEPTH_REQUIRE_GPU"):
            raise
        pytest.skip(f"no GPU adapter: {e}")
    assert ref["kernel"] == "tiled"
    stacked = sim("stacked")
    assert stacked["kernel"] == "stacked (S=3)"
    assert np.array_equal(stacked["c_mean"], ref["c_mean"])
    assert np.array_equal(stacked["q_mean"], ref["q_mean"])
    assert qd.simulate(4, 0.5, width=16, depth=2, samples=2, backend="cpu", kernel="stacked")["kernel"] is None


def test_counts_must_be_whole_numbers():
    # 16.5 states was truncated to 16; a float with an integer value is fine.
    with pytest.raises(ValueError, match="n_states = 16.5: 16.5 is not a whole number"):
        qd.optimal_init(16.5)
    assert qd.optimal_init(16.0)["W_std"] == qd.optimal_init(16)["W_std"]
    with pytest.raises(ValueError, match="depth = 10.5: 10.5 is not a whole number"):
        qd.curve(4, 10.5)
    with pytest.raises(ValueError, match="n_states = 8.25: 8.25 is not a whole number"):
        qd.optimal([4, 8.25])

