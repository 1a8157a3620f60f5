#!/usr/bin/env python3
"""Fits the polynomial of the fast-numerics GELU with erf (kernels/src/ops/gelu_erf.rs).

The kernel writes the upper tail of the normal distribution, for a = |x| >= 0, as

    Phi(-a) = (1 - u) * P(u) * exp(-a^2 / 2),    u = a / (2 + a),

so P(u) = Phi(-a) * exp(a^2 / 2) / (1 - u): Mills's ratio over sqrt(2 pi), divided by
t = 1 - u = 2 / (2 + a). It is smooth (P(0) = 1/2, and P tends to 1/(2 sqrt(2 pi)) as a
grows); the kernel clamps a at 15, so the fit covers u in [0, 15/17]. (With 4 in place
of 2 the coefficients grow and the f32 evaluation loses two more ulps to cancellation.)

The fit minimizes the largest relative error (Lawson's iteration on a weighted least-
squares fit over Chebyshev nodes), and rounds the coefficients to f32 one at a time from
the constant term, refitting the remaining ones to what the rounded ones leave each time.
It prints the coefficients as Rust f32 literals and the fit's relative error in exact
arithmetic (the f32 evaluation adds its own roundings; the kernel's tests measure the
whole).

Needs numpy and mpmath: pip install numpy mpmath.
"""

import mpmath as mp
import numpy as np

DEGREE = 11
SCALE = 2
CLAMP = 15
NODES = 3000
ITERATIONS = 80

mp.mp.dps = 30


def target(u):
    """P(u) at 30 digits."""
    u = mp.mpf(u)
    a = SCALE * u / (1 - u)
    return mp.ncdf(-a) * mp.exp(a * a / 2) / (1 - u)


def lawson(basis, rhs, scale):
    """Coefficients c minimizing max |basis c - rhs| / scale, approximately."""
    weights = np.full(len(rhs), 1.0 / len(rhs))
    for _ in range(ITERATIONS):
        w = np.sqrt(weights) / scale
        c, *_ = np.linalg.lstsq(basis * w[:, None], rhs * w, rcond=None)
        err = np.abs(basis @ c - rhs) / scale
        weights = weights * err + 1e-300
        weights /= weights.sum()
    return c


def main():
    top = CLAMP / (SCALE + CLAMP)
    k = np.arange(NODES)
    nodes = np.concatenate([[0.0, top], top * (0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / NODES))])
    nodes = nodes.astype(np.float32).astype(np.float64)
    values = np.array([float(target(u)) for u in nodes])
    basis = np.vander(nodes, DEGREE + 1, increasing=True)
    rest = values.copy()
    coefficients = []
    for j in range(DEGREE + 1):
        c = np.float32(lawson(basis[:, j:], rest, np.abs(values))[0])
        coefficients.append(c)
        rest = rest - float(c) * basis[:, j]
    print(f"relative error of the fit with f32 coefficients: {np.abs(rest / values).max():.3e}")
    for c in coefficients:
        print(f"    {np.format_float_positional(c, unique=True, trim='-')},")


if __name__ == "__main__":
    main()
