#!/usr/bin/env python3
"""The yardsticks for quantdepth's CPU simulator, measured on this machine.

1. SGEMM: numpy's float32 `@` on (B × n) · (n × n), in multiply-adds per second.
2. A plain numpy loop doing the simulator's work for one layer: standard-normal
   weights (numpy Generator, float32), matmul, bias, the uniform quantizer and
   the per-input / per-pair statistics.

Usage: python3 scripts/numpy_baseline.py [--widths 1024,4096] [--batches 16,256]
Prints one JSON object per line.
"""
import argparse
import json
import time

import numpy as np


def best_of(f, reps):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", default="1024,4096")
    ap.add_argument("--batches", default="16,256")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    levels = np.linspace(-1, 1, 4).astype(np.float32)
    inv_spacing, half = np.float32(1 / 0.9957), np.float32(2.0)
    for n in map(int, a.widths.split(",")):
        for b in map(int, a.batches.split(",")):
            h = rng.standard_normal((b, n), dtype=np.float32)
            w = rng.standard_normal((n, n), dtype=np.float32)
            sg = best_of(lambda: h @ w.T, a.reps)

            def layer():
                wl = rng.standard_normal((n, n), dtype=np.float32) * np.float32(1.6 / np.sqrt(n))
                bias = rng.standard_normal(n, dtype=np.float32) * np.float32(0.1)
                k = np.clip(np.floor(h * inv_spacing + half), 0, 3).astype(np.intp)
                out = levels[k] @ wl.T + bias
                sumsq = np.einsum("ij,ij->i", out, out, dtype=np.float64)
                dots = np.einsum("ij,ij->i", out[0::2], out[1::2], dtype=np.float64)
                return sumsq, dots

            t = best_of(layer, a.reps)
            tn = best_of(lambda: rng.standard_normal((n, n), dtype=np.float32), a.reps)
            print(json.dumps({
                "width": n, "batch": b,
                "sgemm_madds_per_s": n * n * b / sg,
                "numpy_layer_madds_per_s": n * n * b / t,
                "numpy_layer_seconds": t,
                "numpy_normals_per_s": n * n / tn,
            }), flush=True)


if __name__ == "__main__":
    main()
