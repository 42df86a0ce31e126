"""simulate and run release the GIL, and Ctrl-C (SIGINT) stops them."""

import _thread
import json
import signal
import threading
import time

import pytest

import quantdepth as qd

# Large enough to take many seconds on any CPU: width 2048, 4000 layers.
LONG = dict(width=2048, depth=4000, samples=4, backend="cpu")


def _ticks_during(call):
    """Runs call() while another Python thread records a tick every 5 ms;
    returns the ticks that fell inside the call (its first and last 50 ms
    excluded) and the call's duration."""
    ticks, stop = [], threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    time.sleep(0.02)
    start = time.perf_counter()
    call()
    end = time.perf_counter()
    stop.set()
    t.join()
    return [x for x in ticks if start + 0.05 < x < end - 0.05], end - start


def test_simulate_releases_the_gil():
    # Holding the GIL, the ticker could not run at all during the call. The
    # call is sized to take seconds (0.3 s at depth 40 on a quiet 2-core VM
    # was too close to the 0.3 s floor below).
    inside, seconds = _ticks_during(
        lambda: qd.simulate(16, 0.5, width=1024, depth=300, samples=4, backend="cpu")
    )
    assert seconds > 0.3, f"the call took only {seconds:.2f} s: too short to tell"
    # A 5 ms ticker on a loaded 2-core machine: at least a tick per 50 ms.
    assert len(inside) >= (seconds - 0.1) / 0.05, (len(inside), seconds)


@pytest.fixture(autouse=True)
def _sigint_raises_keyboard_interrupt():
    """A process started in the background by a non-interactive shell (as CI
    may start the tests) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so `_thread.interrupt_main` does nothing.
    Install Python's default handler for these tests, as an interactive
    session has it, and restore the inherited one afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_after(seconds):
    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    return timer


def test_ctrl_c_stops_simulate():
    timer = _interrupt_after(0.5)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        qd.simulate(16, 0.5, **LONG)
    elapsed = time.perf_counter() - start
    timer.join()
    # The flag is checked every 50 ms and the simulator stops after the layer
    # it is on (milliseconds at width 2048): far below the run's length.
    assert elapsed < 10, f"KeyboardInterrupt came after {elapsed:.1f} s"


def test_ctrl_c_stops_run_and_keeps_the_folder_marked_incomplete(tmp_path):
    config = tmp_path / "long.toml"
    config.write_text(
        f"""
name = "long"
backend = "cpu"

[network]
activation = "uniform"
sigma_w = "opt"
width = {LONG["width"]}
depth = {LONG["depth"]}
samples = {LONG["samples"]}

[inputs]
kind = "pairs"
c0 = [0.5]

[sweep]
states = [4, 8]
"""
    )
    timer = _interrupt_after(0.5)
    with pytest.raises(KeyboardInterrupt) as e:
        qd.run(config, out=tmp_path)
    timer.join()
    folders = list(tmp_path.glob("long-*"))
    assert len(folders) == 1
    assert str(folders[0]) in str(e.value)
    meta = json.loads((folders[0] / "meta.json").read_text())
    assert meta["status"] == "interrupted", meta


def test_ctrl_c_stops_a_long_curve():
    # N = 256 with b_std > 0: every layer is 32,000 bivariate normal CDFs
    # (c* > 0), so 10^7 layers would take days; the curve runs on a worker
    # thread that stops at the next layer once Ctrl-C sets its flag (it
    # ignored Ctrl-C for its whole length before).
    timer = _interrupt_after(0.5)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        qd.curve(256, 10**7, 0.5, b_std=0.3)
    elapsed = time.perf_counter() - start
    timer.join()
    # c* (tens of O(N²) sums, seconds) is found before the first layer.
    assert elapsed < 30, f"KeyboardInterrupt came after {elapsed:.1f} s"
