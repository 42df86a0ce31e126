#!/usr/bin/env python3
"""Independent high-precision reference values for quantdepth's tests.

Computed with mpmath at 40 significant digits, by formulas other than the
ones the library uses, so agreement is a real check:

* 1 − χ(D̃) for the uniform quantizer, as (V − S²)/V with S = Σ ϕ(ĝₖ) and
  V = Σ_{k,m} Φ(min)Φ̄(max) summed in 40-digit arithmetic (the cancellation
  that ruins this formula in f64 is harmless at 40 digits);
* Φ₂(x, y; ρ) by direct quadrature of ∫ ϕ(t) Φ((y − ρt)/√(1−ρ²)) dt over
  (−∞, x].

Usage: python3 scripts/reference_values.py   (needs `pip install mpmath`)
"""
import mpmath as mp

mp.mp.dps = 40


def one_minus_chi(n, d):
    d = mp.mpf(d)
    g = [d * (k - mp.mpf(n) / 2) for k in range(1, n)]
    sf = [mp.erfc(x / mp.sqrt(2)) / 2 for x in g]
    cdf = [1 - s for s in sf]
    s = mp.fsum(mp.npdf(x) for x in g)
    v = mp.mpf(0)
    prefix = mp.mpf(0)
    for k in range(len(g)):
        v += sf[k] * (cdf[k] + 2 * prefix)
        prefix += cdf[k]
    return (v - s * s) / v


def bvn_cdf(x, y, rho):
    x, y, rho = mp.mpf(x), mp.mpf(y), mp.mpf(rho)
    r = mp.sqrt(1 - rho * rho)
    f = lambda t: mp.npdf(t) * mp.ncdf((y - rho * t) / r)
    return mp.quad(f, [-mp.inf, min(x, 0), x] if x > 0 else [-mp.inf, x])


if __name__ == "__main__":
    for n, d in [(1000, "0.008785464581101902"), (100000, "0.00012137467971523719"),
                 (1000000, "1.34810983036394e-5")]:
        print(f"one_minus_chi N={n} D={d}: {mp.nstr(one_minus_chi(n, d), 20)}")
    for x, y, rho in [(0.5, -1.2, 0.3), (1.0, 2.0, -0.7), (-2.0, -1.5, 0.95), (0.3, 0.3, 0.999),
                      (-1.0, 1.0, -0.9999), (2.5, -0.5, 0.5), (-3.0, -3.0, 0.99)]:
        print(f"bvn_cdf({x}, {y}, {rho}) = {mp.nstr(bvn_cdf(x, y, rho), 20)}")
