"""Bjøntegaard delta rate (BD-rate): the average bitrate difference between two RD curves at equal PSNR.

Both curves are turned into ``log10(rate)`` as a function of PSNR (dB), each
interpolated through its own points; the difference of the two integrals over
the common PSNR range, divided by the range's width, is the mean log-rate
difference ``d``, reported as ``(10**d - 1) * 100`` percent. Negative means the
test codec needs fewer bits than the anchor for the same PSNR.

Two interpolations:

* ``"pchip"`` (the default): piecewise cubic Hermite interpolation (Fritsch-
  Carlson monotone slopes, the same interpolant as SciPy's
  ``PchipInterpolator``), integrated exactly. This is what the JCT-VC/JVET
  common-test-conditions sheet and the ``bjontegaard`` package use; it never
  overshoots between points, so it stays sane with 4-6 unevenly spread points,
  where the single cubic can swing.
* ``"cubic"``: the original VCEG-M33 method, one least-squares polynomial of
  degree 3 (``min(3, n - 1)`` for fewer than 4 points) per curve.

Rates may be in any unit (bpp here); only their ratio matters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METHODS = ("pchip", "cubic")
DEFAULT_METHOD = "pchip"
MIN_POINTS = 4
"""Fewest points per curve for a BD-rate to stand on: VCEG-M33 fits a cubic through four; with fewer the
interpolation between points is a guess (``gsi bench`` warns)."""


def _curve(rate: Sequence[float], psnr: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted PSNR (strictly increasing) and log10 rate of one RD curve; raises ``ValueError`` for unusable input."""
    r = np.asarray(rate, dtype=np.float64)
    p = np.asarray(psnr, dtype=np.float64)
    if r.shape != p.shape or r.ndim != 1:
        raise ValueError(f"rate and PSNR must be 1-D of one length, got {r.shape} and {p.shape}")
    if r.size < 2:
        raise ValueError(f"a BD-rate curve needs at least 2 points, got {r.size}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(p))) or np.any(r <= 0):
        raise ValueError("rates must be positive and finite, PSNRs finite")
    order = np.argsort(p, kind="stable")
    p, r = p[order], r[order]
    if np.any(np.diff(p) <= 0):
        raise ValueError("two points of one curve have the same PSNR")
    return p, np.log10(r)


def common_range(psnr_a: Sequence[float], psnr_b: Sequence[float]) -> tuple[float, float]:
    """The PSNR interval (dB) that both curves cover: ``(max of minima, min of maxima)``; empty if ``lo >= hi``."""
    return max(min(psnr_a), min(psnr_b)), min(max(psnr_a), max(psnr_b))


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Knot derivatives of the monotone piecewise cubic Hermite interpolant (as SciPy's ``PchipInterpolator``)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = x.size
    d = np.zeros(n)
    if n == 2:
        d[:] = delta[0]
        return d
    for k in range(1, n - 1):
        a, b = delta[k - 1], delta[k]
        if a == 0 or b == 0 or np.sign(a) != np.sign(b):
            d[k] = 0.0
        else:  # weighted harmonic mean
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / a + w2 / b)
    d[0] = _end_slope(h[0], h[1], delta[0], delta[1])
    d[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """One-sided three-point end slope, limited to keep the interpolant shape-preserving."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return float(d)


def pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over ``[lo, hi]`` (inside ``[x[0], x[-1]]``) of the PCHIP through ``(x, y)``."""
    d = pchip_slopes(x, y)
    total = 0.0
    for k in range(x.size - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        delta = (y[k + 1] - y[k]) / h
        c2 = (3 * delta - 2 * d[k] - d[k + 1]) / h
        c3 = (d[k] + d[k + 1] - 2 * delta) / h**2
        poly = np.polynomial.Polynomial([y[k], d[k], c2, c3])  # in t = x - x[k]
        total += float(poly.integ()(b - x[k]) - poly.integ()(a - x[k]))
    return total


def _cubic_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    deg = min(3, x.size - 1)
    poly = np.polynomial.Polynomial.fit(x, y, deg)
    anti = poly.integ()
    return float(anti(hi) - anti(lo))


def bd_rate(anchor_rate: Sequence[float], anchor_psnr: Sequence[float], test_rate: Sequence[float],
            test_psnr: Sequence[float], method: str = DEFAULT_METHOD) -> float:
    """BD-rate in percent of the test curve against the anchor (negative = the test needs fewer bits).

    Each curve is ``rate`` (e.g. bpp) and ``psnr`` (dB) at two or more points,
    in any order. Returns ``nan`` when the PSNR ranges do not overlap. Raises
    ``ValueError`` for fewer than 2 points, non-positive rates, repeated PSNRs
    within a curve or an unknown ``method`` (see :data:`METHODS`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown BD-rate method {method!r}; valid: {', '.join(METHODS)}")
    pa, ya = _curve(anchor_rate, anchor_psnr)
    pt, yt = _curve(test_rate, test_psnr)
    lo, hi = common_range(pa, pt)
    if not hi > lo:
        return math.nan
    integral = pchip_integral if method == "pchip" else _cubic_integral
    mean_diff = (integral(pt, yt, lo, hi) - integral(pa, ya, lo, hi)) / (hi - lo)
    return (10.0**mean_diff - 1.0) * 100.0


__all__ = ["DEFAULT_METHOD", "METHODS", "MIN_POINTS", "bd_rate", "common_range", "pchip_integral", "pchip_slopes"]
