"""Shared fixtures: the `quantdepth` command line, to compare numbers and
messages with the Python package for the same inputs."""

import json
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _cli_path():
    env = os.environ.get("QUANTDEPTH_BIN")
    if env:
        return pathlib.Path(env)
    return REPO / "target" / "release" / "quantdepth"


class Cli:
    def __init__(self, path):
        self.path = path

    def run(self, *args):
        return subprocess.run(
            [str(self.path), *map(str, args)], capture_output=True, text=True, timeout=300
        )

    def json(self, *args):
        out = self.run(*args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def error(self, *args):
        """The CLI's error message, without its 'error: ' prefix."""
        out = self.run(*args)
        assert out.returncode != 0, f"{args} succeeded: {out.stdout[:200]}"
        # Notes (e.g. which backend was taken) may come first; the error is last
        # and may span lines (a TOML error shows the line it points at).
        at = out.stderr.rfind("error: ")
        assert at == 0 or (at > 0 and out.stderr[at - 1] == "\n"), out.stderr
        return out.stderr[at + len("error: "):].rstrip("\n")


@pytest.fixture(scope="session")
def cli():
    """The CLI built by `cargo build --release` (or QUANTDEPTH_BIN). Missing,
    the comparisons skip; with QUANTDEPTH_REQUIRE_CLI=1 (CI) they fail."""
    path = _cli_path()
    if not path.exists():
        if os.environ.get("QUANTDEPTH_REQUIRE_CLI") == "1":
            pytest.fail(f"QUANTDEPTH_REQUIRE_CLI=1 but no quantdepth binary at {path}")
        pytest.skip(f"no quantdepth binary at {path}: run `cargo build --release` or set QUANTDEPTH_BIN")
    return Cli(path)
