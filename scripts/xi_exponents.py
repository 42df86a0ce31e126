#!/usr/bin/env python3
"""ξ_emp beside ξ_max per N, and the exponents of both against N + 1, from a
results folder's summary.json (e.g. of configs/scaling_cpu.toml).

    python3 scripts/xi_exponents.py results/scaling_cpu-*/summary.json [--min-states 16]

Both exponents are the same estimator, the ordinary least-squares slope of
ln ξ against ln(N + 1) over the same N, so they compare like with like. The
interval of the empirical one propagates each ξ_emp's interval (σ = half-
width / 1.96 on the log scale) through the slope's linear weights:
var b = Σ cᵢ² σᵢ², cᵢ = (xᵢ − x̄)/Sxx; it is as optimistic as the per-point
intervals. Standard library only.
"""
import json
import math
import sys

# Student t quantiles (0.975) for dof 1..30.
def ols(x, y):
    xm = sum(x) / len(x)
    ym = sum(y) / len(y)
    sxx = sum((xi - xm) ** 2 for xi in x)
    c = [(xi - xm) / sxx for xi in x]
    return sum(ci * yi for ci, yi in zip(c, y)), c


def main():
    args = sys.argv[1:]
    lo = 0
    if "--min-states" in args:
        i = args.index("--min-states")
        lo = int(args[i + 1])
        del args[i:i + 2]
    d = json.load(open(args[0]))
    rows = []
    for p in d["points"]:
        n = p["network"]["states"]
        f = p["xi_emp"]
        rows.append((n, p["xi_theory"], f, p["depth"], p["width"], p["samples"], p["wall_seconds"]))
    rows.sort()
    print(f"{'N':>4} {'width':>7} {'depth':>6} {'E':>3} {'xi_max':>10} {'xi_emp':>10} {'95% interval':>22} {'rel':>8} {'s':>7}")
    for n, xt, f, depth, width, e, wall in rows:
        if f is None:
            print(f"{n:>4} {width:>7} {depth:>6} {e:>3} {xt:>10.3f} {'-':>10}")
            continue
        print(f"{n:>4} {width:>7} {depth:>6} {e:>3} {xt:>10.3f} {f['xi']:>10.3f} "
              f"[{f['ci_low']:>9.3f}, {f['ci_high']:>9.3f}] {f['xi'] / xt - 1:>+8.2%} {wall:>7.1f}")
    for cut in sorted({0, lo}):
        sel = [r for r in rows if r[0] >= cut and r[2] is not None and math.isfinite(r[2]["ci_high"])]
        if len(sel) < 3:
            continue
        x = [math.log(r[0] + 1) for r in sel]
        y = [math.log(r[2]["xi"]) for r in sel]
        s = [(math.log(r[2]["ci_high"]) - math.log(r[2]["ci_low"])) / (2 * 1.96) for r in sel]
        b, c = ols(x, y)
        se = math.sqrt(sum((ci * si) ** 2 for ci, si in zip(c, s)))
        bt, _ = ols(x, [math.log(r[1]) for r in sel])
        ns = [r[0] for r in sel]
        print(f"N in {ns}: exponent of xi_emp {b:.4f}, 95 % interval [{b - 1.96 * se:.4f}, {b + 1.96 * se:.4f}]; "
              f"of xi_max {bt:.4f} (difference {b - bt:+.4f} ± {1.96 * se:.4f})")


if __name__ == "__main__":
    main()
