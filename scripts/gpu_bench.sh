#!/usr/bin/env bash
# One measurement run on a GPU machine (../shared/GPU.md says how to get the
# binary and the Vulkan loader there): every layer kernel variant with
# `quantdepth bench`, the PyTorch yardstick doing the same layers on the same
# card (scripts/torch_baseline.py), and the ratio per (n, B), all written to
# one folder. Nothing here is tuned to a card; the card's name is in every
# result line.
#
# Usage: scripts/gpu_bench.sh [OUT_DIR]
#   WIDTHS=1024,4096,16384 BATCHES=16,64,256 LAYERS=4 SAMPLES=8  (defaults; smaller
#   values give a dry run on lavapipe: WIDTHS=256 BATCHES=16,130 LAYERS=1)
#   QUANTDEPTH=path/to/quantdepth (default target/release/quantdepth)
#   PYTHON=python3 (with torch; the yardstick is skipped if it has none)
#   SCALING=1 also runs configs/scaling_gpu.toml for N = 2, 4, 8, 16, 32
#   (ξ_emp; tens of minutes on a data-centre card, far too long elsewhere)
#   TRAIN_BENCH=path/to/train-bench-binary also times the training step
#   (TRAIN_WIDTHS=512,2048,4096, L = 16, B = 32) beside PyTorch on CUDA
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-bench-$(date -u +%Y%m%dT%H%M%SZ)}"
widths="${WIDTHS:-1024,4096,16384}"
batches="${BATCHES:-16,64,256}"
layers="${LAYERS:-4}"
# The stacked variants are timed for a run of this many networks (S of them
# per dispatch); configs/scaling_gpu.toml runs 8 per point.
samples="${SAMPLES:-8}"
qd="${QUANTDEPTH:-target/release/quantdepth}"
py="${PYTHON:-python3}"
mkdir -p "$out"
export QUANTDEPTH_CACHE_DIR="$out/cache"
{
    date -u
    uname -a
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
} > "$out/machine.txt"
"$qd" bench --backend gpu --widths "$widths" --batches "$batches" --layers "$layers" \
    --weights gaussian --no-baseline --samples "$samples" --json > "$out/bench.jsonl" 2> "$out/bench.log"
if "$py" -c "import torch" 2>/dev/null; then
    "$py" scripts/torch_baseline.py --widths "$widths" --batches "$batches" \
        --layers "$layers" > "$out/torch.jsonl" 2> "$out/torch.log"
else
    echo "no torch in $py: PyTorch yardstick skipped" | tee "$out/torch.log"
    : > "$out/torch.jsonl"
fi
# Per (n, B): each variant's time per layer, the fastest, PyTorch's, and the
# ratio (PyTorch time / quantdepth time: above 1 means quantdepth is faster).
"$py" - "$out" <<'EOF' | tee "$out/summary.txt"
import json, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/bench.jsonl") if l.strip()]
variants = [r for r in rows if "clock" in r]
torch_rows = {(r["width"], r["batch"]): r for r in map(json.loads, filter(str.strip, open(f"{out}/torch.jsonl")))}
cells = {}
for r in variants:
    cells.setdefault((r["width"], r["batch"]), []).append(r)
print("adapter:", variants[0]["adapter"] if variants else "-", "| driver:", variants[0]["driver"] if variants else "-")
print("s/layer: per network-layer (a stacked dispatch's time over S); * the fastest variant of its (n, B);")
print("torch/ours: PyTorch's time over ours (above 1: quantdepth faster); torch device: where PyTorch ran")
print(f"{'n':>6} {'B':>4} {'variant':>20} {'s/layer':>10} {'% FP32':>7}  {'torch s/layer':>13} {'torch/ours':>10}  torch device")
for (n, b), rs in sorted(cells.items()):
    best = min(rs, key=lambda r: r["seconds_per_layer"])
    for r in rs:
        mark = "*" if r is best else " "
        frac = r["fp32_peak_fraction"]
        t = torch_rows.get((n, b))
        tt = t["torch_layer_seconds"] if t else None
        s = r["seconds_per_layer"]
        peak = f"{100 * frac:.1f}%" if frac is not None else "-"
        torch = f"{tt:.3e}" if tt is not None else "-"
        ratio = f"{tt / s:.2f}" if tt else "-"
        name = r["kernel"] + (f" (S={r['stack']})" if r.get("stack", 1) > 1 else "")
        print(f"{n:>6} {b:>4} {mark + name:>20} {s:>10.3e} {peak:>7}  "
              f"{torch:>13} {ratio:>10}  {t['device'] if t else '-'}")
EOF
# Training: the step's rate on the card (benches/train.rs built with
# `cargo bench --bench train --no-run`, path in TRAIN_BENCH) beside PyTorch
# doing the same step on the same card (scripts/train_baseline.py).
if [ -n "${TRAIN_BENCH:-}" ]; then
    tw="${TRAIN_WIDTHS:-512,2048,4096}"
    "$TRAIN_BENCH" --widths "$tw" --batch 32 --depth 16 > "$out/train_bench.txt" 2>&1 || true
    if "$py" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
        "$py" scripts/train_baseline.py --widths "$tw" --batch 32 --depth 16 --impl torch \
            --device cuda --steps 200 > "$out/train_torch.jsonl" 2> "$out/train_torch.log" || true
    fi
    cat "$out/train_bench.txt" "$out/train_torch.jsonl" 2>/dev/null || true
fi
if [ "${SCALING:-0}" = 1 ]; then
    sed 's/^states = .*/states = [2, 4, 8, 16, 32]/; s/^name = .*/name = "scaling_gpu_subset"/' \
        configs/scaling_gpu.toml > "$out/scaling_gpu_subset.toml"
    "$qd" run "$out/scaling_gpu_subset.toml" --out "$out/scaling" > "$out/scaling.txt" 2> "$out/scaling.log"
fi
echo "results in $out"
