"""Bjontegaard delta rate (BD-rate): the average rate difference of two rate-distortion curves
at equal quality, in percent (negative = the test codec needs fewer bits than the reference).

Method (VCEG-M33, with the JVET piecewise cubic variant): for each curve, log(rate) is
interpolated as a function of quality (PSNR, MS-SSIM in dB, ...); both interpolants are
integrated over the overlap of the two quality ranges, and the mean log-rate difference
``d`` gives ``BD-rate = (exp(d) - 1) * 100``.

* ``method="pchip"`` (default): piecewise cubic Hermite interpolation (monotone, no overshoot).
* ``method="cubic"``: the classic least-squares cubic polynomial fit (needs 4 points or more).

An optional ``rate_range=(lo, hi)`` keeps only the points whose rate lies in it, as the Kodak
anchors do with 0.1-2 bpp.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["bd_rate", "quality_at_rate", "METHODS"]

METHODS = ("pchip", "cubic")


def _curve(rate: Sequence[float], quality: Sequence[float],
           rate_range: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """(quality, log rate) sorted by quality, finite points inside ``rate_range`` only."""
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError("rate and quality must be 1-D sequences of the same length")
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    if rate_range is not None:
        keep &= (r >= rate_range[0]) & (r <= rate_range[1])
    r, q = r[keep], q[keep]
    order = np.argsort(q, kind="stable")
    q, lr = q[order], np.log(r[order])
    if np.any(np.diff(q) <= 0):
        raise ValueError("quality values must be distinct (a rate-distortion curve, not a cloud)")
    return q, lr


def _integral(q: np.ndarray, lr: np.ndarray, lo: float, hi: float, method: str) -> float:
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        return float(PchipInterpolator(q, lr).integrate(lo, hi))
    if method == "cubic":
        p = np.polyint(np.polyfit(q, lr, 3))
        return float(np.polyval(p, hi) - np.polyval(p, lo))
    raise ValueError(f"unknown BD-rate method {method!r}; choose from {', '.join(METHODS)}")


def bd_rate(rate_ref: Sequence[float], quality_ref: Sequence[float],
            rate_test: Sequence[float], quality_test: Sequence[float],
            method: str = "pchip", rate_range: tuple[float, float] | None = None) -> float:
    """BD-rate of the test curve against the reference curve, in percent.

    Rates are positive (bpp, bytes, kbit/s: any unit, the same for both curves); quality is
    higher-is-better (PSNR, MS-SSIM dB). Returns ``nan`` when the curves (after the
    ``rate_range`` filter) do not overlap in quality or have too few points for ``method``
    (2 for pchip, 4 for cubic).
    """
    if method not in METHODS:
        raise ValueError(f"unknown BD-rate method {method!r}; choose from {', '.join(METHODS)}")
    q1, r1 = _curve(rate_ref, quality_ref, rate_range)
    q2, r2 = _curve(rate_test, quality_test, rate_range)
    need = 2 if method == "pchip" else 4
    if len(q1) < need or len(q2) < need:
        return math.nan
    lo, hi = max(q1[0], q2[0]), min(q1[-1], q2[-1])
    if hi <= lo:
        return math.nan
    d = (_integral(q2, r2, lo, hi, method) - _integral(q1, r1, lo, hi, method)) / (hi - lo)
    return (math.exp(d) - 1.0) * 100.0


def quality_at_rate(rate: Sequence[float], quality: Sequence[float], target: float) -> float:
    """Quality of a curve at ``target`` rate, linear in log(rate) between the two measured
    points around it (as the README tables quote it); ``nan`` outside the measured range."""
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    order = np.argsort(r, kind="stable")
    r, q = r[order], q[order]
    if len(r) < 1 or not r[0] <= target <= r[-1]:
        return math.nan
    return float(np.interp(math.log(target), np.log(r), q))
