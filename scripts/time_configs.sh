#!/usr/bin/env bash
# Times every shipped config in one run, for the README's "time" column.
# Usage: scripts/time_configs.sh [OUT_ROOT]   (after cargo build --release)
# Prints one line per config: wall seconds of `quantdepth run` and the load
# average before it (other processes slow a 2-core machine down: re-measure
# on a quiet one before quoting). scaling_gpu.toml is skipped (GPU hours).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
bin=target/release/quantdepth
echo "# $(date -u +%FT%TZ) $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
printf '%-44s %10s  %s\n' config seconds "load before (1, 5, 15 min)"
for cfg in configs/quickstart.toml configs/fig1_sigma_sweep.toml configs/fig1_sigma_sweep_unit_spacing.toml \
           configs/fig2_optimal_spacing.toml configs/gradients_ste.toml configs/depth_scale_cpu.toml; do
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    start=$(date +%s.%N)
    "$bin" run "$cfg" --out "$out" >/dev/null 2>&1
    end=$(date +%s.%N)
    printf '%-44s %10.1f  %s\n' "$cfg" "$(echo "$end - $start" | bc)" "$load"
done
