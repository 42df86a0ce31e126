#!/usr/bin/env python3
"""The PyTorch yardstick for quantdepth's GPU layer kernels: the same layer
done the way a PyTorch user would, on the same device, in the same run.

Per layer: standard-normal weights (torch.randn, float32, stored: n² floats
written and read), the uniform quantizer φ on the previous pre-activations,
the float32 matmul, the bias, and the per-input / per-pair statistics
(sums of squares, pair dot products), as `quantdepth bench` times its own
layer. Time per layer is the best of --reps runs of --layers layers, timed
with CUDA events on a GPU (after a warm-up layer), else the wall clock.

Usage: python3 scripts/torch_baseline.py [--widths 1024,4096,16384]
       [--batches 16,64,256] [--layers 4] [--reps 3] [--device cuda|cpu]
Prints one JSON object per line: width, batch, device name, seconds per
layer, multiply-adds per second (n²·B per layer), and the SGEMM alone.
"""
import argparse
import json
import time

import torch


def timer(device):
    """A function that times f() in seconds on `device`."""
    if device.type == "cuda":
        def run(f):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            f()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
    else:
        def run(f):
            t = time.perf_counter()
            f()
            return time.perf_counter() - t
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", default="1024,4096,16384")
    ap.add_argument("--batches", default="16,64,256")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    device = torch.device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    gen = torch.Generator(device=device).manual_seed(0)
    # The 4-level uniform quantizer of `quantdepth bench` (levels ±1/3, ±1).
    states = 4
    levels = torch.linspace(-1.0, 1.0, states, device=device)
    spacing = 2.0 / states
    clock = timer(device)
    for n in map(int, a.widths.split(",")):
        for b in map(int, a.batches.split(",")):
            h0 = torch.randn(n, b, device=device, generator=gen)
            scale = 1.6 / n ** 0.5

            def layers(count):
                h = h0
                for _ in range(count):
                    w = torch.randn(n, n, device=device, generator=gen) * scale
                    bias = torch.randn(n, 1, device=device, generator=gen) * 0.1
                    k = torch.clamp(torch.floor(h / spacing + states / 2), 0, states - 1).long()
                    h = w @ levels[k] + bias
                    sumsq = (h.double() ** 2).sum(dim=0)
                    dots = (h[:, 0::2].double() * h[:, 1::2].double()).sum(dim=0)
                # Read one number back, as quantdepth reads its statistics.
                return float(sumsq[0] + dots[0])

            layers(1)
            t = min(clock(lambda: layers(a.layers)) for _ in range(a.reps)) / a.layers
            w = torch.randn(n, n, device=device, generator=gen)
            x = torch.randn(n, b, device=device, generator=gen)
            sg = min(clock(lambda: w @ x) for _ in range(a.reps))
            print(json.dumps({
                "device": name, "width": n, "batch": b,
                "torch_layer_seconds": t,
                "torch_layer_madds_per_s": n * n * b / t,
                "torch_sgemm_madds_per_s": n * n * b / sg,
            }), flush=True)


if __name__ == "__main__":
    main()
