#!/usr/bin/env python3
"""Yardsticks for quantdepth's training step: the same network and SGD step
written in numpy float32 and in PyTorch (CPU or CUDA), timed in one run.

The network is the trainer's (src/train/model.rs): L weight layers,
784 → n, L − 2 × (n → n), n → 10; the 4-level uniform quantizer after each
hidden layer; softmax cross-entropy; the straight-through estimator
s·1{|h| ≤ t} in the backward pass; SGD with momentum (v ← μv + g, w ← w − ηv).

Multiply-adds per step are counted as the trainer counts them:
3·B·Σ fan_in·fan_out − B·784·n (the first layer's input gradient is never
computed). Rates are per second of process CPU time on the CPU (these machines
are shared) and of CUDA-event time on a GPU; wall time is printed beside.

Usage: python3 scripts/train_baseline.py [--widths 512,2048] [--depth 16]
       [--batch 32] [--steps S] [--impl numpy,torch] [--device cpu|cuda]
       [--threads T]
Prints one JSON object per line.
"""
import argparse
import json
import os
import time

import numpy as np

STATES = 4
SPACING = 0.5  # threshold spacing Δ; the op count does not depend on it
AMPLITUDE = 1.0
STE_SLOPE = 1.0
STE_THRESHOLD = 1.0
LR = 1e-3
MOMENTUM = 0.5
INPUT = 784
CLASSES = 10


def shapes(n, depth):
    dims = [INPUT] + [n] * (depth - 1) + [CLASSES]
    return list(zip(dims[:-1], dims[1:]))


def macs_per_step(n, depth, batch):
    return 3 * batch * sum(i * o for i, o in shapes(n, depth)) - batch * INPUT * n


def phi_np(h, out):
    np.floor(h / SPACING + STATES / 2, out=out)
    np.clip(out, 0, STATES - 1, out=out)
    out *= 2 * AMPLITUDE / (STATES - 1)
    out -= AMPLITUDE
    return out


class NumpyTrainer:
    """Batch-major float32 numpy, every buffer allocated once."""

    def __init__(self, n, depth, batch, rng):
        self.shapes = shapes(n, depth)
        self.w = [(rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32) for i, o in self.shapes]
        self.b = [np.zeros(o, np.float32) for _, o in self.shapes]
        self.vw = [np.zeros_like(w) for w in self.w]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.h = [np.zeros((batch, o), np.float32) for _, o in self.shapes]
        self.a = [np.zeros((batch, o), np.float32) for _, o in self.shapes[:-1]]
        self.g = [np.zeros((batch, o), np.float32) for _, o in self.shapes]
        self.gw = [np.zeros_like(w) for w in self.w]
        self.mask = [np.zeros((batch, o), bool) for _, o in self.shapes[:-1]]

    def step(self, x, y):
        inp = x
        last = len(self.w) - 1
        for l, (w, b) in enumerate(zip(self.w, self.b)):
            np.matmul(inp, w.T, out=self.h[l])
            self.h[l] += b
            if l < last:
                phi_np(self.h[l], self.a[l])
                inp = self.a[l]
        z = self.h[last]
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        loss = -np.log(z[np.arange(len(y)), y]).mean()
        g = self.g[last]
        g[...] = z
        g[np.arange(len(y)), y] -= 1.0
        g /= len(y)
        for l in range(last, -1, -1):
            prev = x if l == 0 else self.a[l - 1]
            np.matmul(self.g[l].T, prev, out=self.gw[l])
            gb = self.g[l].sum(axis=0)
            if l > 0:
                np.matmul(self.g[l], self.w[l], out=self.g[l - 1])
                np.less_equal(np.abs(self.h[l - 1]), STE_THRESHOLD, out=self.mask[l - 1])
                self.g[l - 1] *= self.mask[l - 1]
                self.g[l - 1] *= STE_SLOPE
            self.vw[l] *= MOMENTUM
            self.vw[l] += self.gw[l]
            self.w[l] -= LR * self.vw[l]
            self.vb[l] *= MOMENTUM
            self.vb[l] += gb
            self.b[l] -= LR * self.vb[l]
        return float(loss)

    def sync(self):
        pass


def torch_trainer(n, depth, batch, device):
    import torch

    class Quantize(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h):
            ctx.save_for_backward(h)
            k = torch.clamp(torch.floor(h / SPACING + STATES / 2), 0, STATES - 1)
            return k * (2 * AMPLITUDE / (STATES - 1)) - AMPLITUDE

        @staticmethod
        def backward(ctx, g):
            (h,) = ctx.saved_tensors
            return g * (h.abs() <= STE_THRESHOLD) * STE_SLOPE

    layers = [torch.nn.Linear(i, o).to(device) for i, o in shapes(n, depth)]
    params = [p for layer in layers for p in layer.parameters()]
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()

    class T:
        def step(self, x, y):
            h = x
            for l, layer in enumerate(layers):
                h = layer(h)
                if l + 1 < len(layers):
                    h = Quantize.apply(h)
            loss = loss_fn(h, y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            return loss

        def sync(self):
            if device.type == "cuda":
                torch.cuda.synchronize()

    return T()


def timed(trainer, x, y, steps, reps):
    """Best of `reps` runs of `steps` steps: (cpu seconds, wall seconds) per step."""
    for _ in range(2):
        trainer.step(x, y)
    trainer.sync()
    best = None
    for _ in range(reps):
        c, w = time.process_time(), time.perf_counter()
        for _ in range(steps):
            trainer.step(x, y)
        trainer.sync()
        c, w = (time.process_time() - c) / steps, (time.perf_counter() - w) / steps
        if best is None or w < best[1]:
            best = (c, w)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", default="512,2048")
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=0, help="steps per timing (0: about 2e9 MACs)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--impl", default="numpy,torch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    a = ap.parse_args()
    if a.depth < 2 or a.batch < 1:
        ap.error("--depth must be at least 2 and --batch at least 1")
    rng = np.random.default_rng(0)
    for n in map(int, a.widths.split(",")):
        macs = macs_per_step(n, a.depth, a.batch)
        steps = a.steps or max(2, min(500, int(2e9 / macs)))
        x = rng.standard_normal((a.batch, INPUT)).astype(np.float32)
        y = (np.arange(a.batch) % CLASSES).astype(np.int64)
        for impl in a.impl.split(","):
            row = {"impl": impl, "width": n, "depth": a.depth, "batch": a.batch,
                   "macs_per_step": macs, "steps": steps}
            if impl == "numpy":
                t = NumpyTrainer(n, a.depth, a.batch, rng)
                cpu, wall = timed(t, x, y, steps, a.reps)
                row.update(device="cpu", threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"))
            elif impl == "torch":
                try:
                    import torch
                except ImportError:
                    row.update(skipped="torch is not installed")
                    print(json.dumps(row), flush=True)
                    continue
                if a.threads:
                    torch.set_num_threads(a.threads)
                device = torch.device(a.device)
                t = torch_trainer(n, a.depth, a.batch, device)
                xt = torch.from_numpy(x).to(device)
                yt = torch.from_numpy(y).to(device)
                cpu, wall = timed(t, xt, yt, steps, a.reps)
                row.update(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                           threads=torch.get_num_threads(), torch=torch.__version__)
            else:
                ap.error(f"--impl: unknown implementation {impl!r} (numpy, torch)")
            row.update(cpu_seconds_per_step=cpu, wall_seconds_per_step=wall,
                       macs_per_cpu_second=macs / cpu if cpu > 0 else None,
                       macs_per_wall_second=macs / wall)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
