"""Parametric table sets for indexed symbols: discretised Gaussians indexed by scale.

The scale -> table mapping is part of the model: :func:`scale_levels` fixes the levels and
:meth:`GaussianTables.index` maps scales to the nearest level in log space by comparing
against fixed float64 boundaries, so identical scale inputs give identical indexes on every
machine (making the *scales* bit-identical is the model's job).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from .rans import CdfTables, quantize_pmf

__all__ = ["scale_levels", "GaussianTables", "gaussian_pmf"]

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _phi(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, accurate in the tails (erfc, not 1 - erf)."""
    return 0.5 * _erfc(-np.asarray(x, np.float64) / math.sqrt(2.0))


def gaussian_pmf(values: np.ndarray, scale: float) -> np.ndarray:
    """P(round(X) = v) for X ~ N(0, scale^2): the discretised Gaussian the tables quantize."""
    v = np.asarray(values, np.float64)
    lo, hi = (v - 0.5) / scale, (v + 0.5) / scale
    # mirror to the lower tail where both CDF values are small, for accuracy
    return np.where(v > 0, _phi(-lo) - _phi(-hi), _phi(hi) - _phi(lo))


def scale_levels(lo: float = 0.11, hi: float = 64.0, n: int = 128) -> np.ndarray:
    """``n`` scales spaced evenly in log between ``lo`` and ``hi``."""
    return np.exp(np.linspace(math.log(lo), math.log(hi), n))


class GaussianTables(CdfTables):
    """Zero-mean discretised Gaussian tables, one per scale level.

    Table ``t`` covers ``-R_t .. R_t`` with ``R_t = ceil(tail_sigmas * levels[t])``; values
    beyond it go through the escape. Code ``round(y - mean)`` with ``index(scale)``.
    """

    def __init__(self, levels: np.ndarray | None = None, precision: int = 16,
                 tail_sigmas: float = 6.0):
        self.levels = scale_levels() if levels is None else np.asarray(levels, np.float64)
        if self.levels.ndim != 1 or self.levels.size < 1 or np.any(np.diff(self.levels) <= 0) \
                or self.levels[0] <= 0:
            raise ValueError("levels must be positive and increasing")
        freqs, offsets = [], []
        for s in self.levels:
            r = int(math.ceil(tail_sigmas * s))
            tail = 2.0 * _phi(-(r + 0.5) / s).item()  # escape: |value| > r
            freqs.append(quantize_pmf(np.append(gaussian_pmf(np.arange(-r, r + 1), s), tail)[None],
                                      precision)[0])
            offsets.append(-r)
        super().__init__(freqs, offsets, precision)
        # boundaries between neighbouring levels: geometric means, float64
        self.bounds = np.sqrt(self.levels[:-1] * self.levels[1:])

    def index(self, scales: np.ndarray) -> np.ndarray:
        """Table index (int32) of each scale (flattened): the level nearest in log scale,
        clamped to the first and last level; NaN maps to the last level."""
        scales = np.ascontiguousarray(np.asarray(scales).ravel())
        if scales.dtype not in (np.float32, np.float64):
            scales = scales.astype(np.float64)
        out = np.empty(scales.size, np.int32)
        _bucket(scales, self.bounds, out)
        return out


@nb.njit(cache=True, nogil=True, parallel=True)
def _bucket(x, bounds, out):
    """out[i] = number of bounds <= x[i] (a right-sided searchsorted), exact comparisons."""
    nb_ = bounds.shape[0]
    for i in nb.prange(x.shape[0]):
        v = np.float64(x[i])
        lo = 0
        hi = nb_
        while lo < hi:
            mid = (lo + hi) >> 1
            if bounds[mid] <= v:
                lo = mid + 1
            else:
                hi = mid
        out[i] = nb_ if v != v else lo
