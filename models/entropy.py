"""Probability models of the image codec and their coder tables.

* Discretised Gaussian conditionals (Ballé et al., ICLR 2018; Minnen et al., NeurIPS 2018):
  the entropy network outputs a mean and a *log* scale on the activation grid; the coder uses
  one quantized table per log-scale level, ``LOG_STEPS_PER_UNIT`` levels per unit of natural
  log. The level of a grid-valued log scale is ``round((log_s - LOG_LO) * 16)``, computed in
  float64 with a power-of-two factor: exact, so encoder and decoder pick the same table.
* The factorized prior of the hyper-latent is CompressAI's :class:`EntropyBottleneck`; its
  per-channel pmfs are evaluated here in numpy float64 in a fixed operation order (no BLAS,
  no threads), so the tables are reproducible, and shipped weights carry them verbatim.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck

from bitstream.rans import CdfTables

__all__ = [
    "LOG_LO", "LOG_HI", "LOG_STEPS_PER_UNIT", "SCALE_MIN", "gaussian_likelihood",
    "scale_table_index", "gaussian_tables", "factorized_tables", "tables_to_arrays",
    "tables_from_arrays",
]

SCALE_MIN = 0.11
LOG_LO = math.log(SCALE_MIN)
LOG_HI = math.log(64.0)
LOG_STEPS_PER_UNIT = 16  # a power of two: the index computation is exact
N_LEVELS = int(math.floor((LOG_HI - LOG_LO) * LOG_STEPS_PER_UNIT)) + 1
TAIL_SIGMAS = 7.0
PRECISION = 16


def gaussian_likelihood(y: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """P(y in [y-0.5, y+0.5]) under N(mean, exp(log_scale)^2), symmetric (upper tail mirrored
    for accuracy), bounded below by 1e-9 with a gradient-preserving bound."""
    scale = torch.exp(torch.clamp(log_scale, LOG_LO, LOG_HI))
    v = torch.abs(y - mean)
    c = -1.0 / math.sqrt(2.0)
    upper = 0.5 * torch.erfc(c * (0.5 - v) / scale)
    lower = 0.5 * torch.erfc(c * (-0.5 - v) / scale)
    lik = upper - lower
    return lik + (torch.clamp(lik, min=1e-9) - lik).detach()


def scale_table_index(log_scale: np.ndarray) -> np.ndarray:
    """Table index of each (float64, grid-valued) log scale: nearest level, clamped. Only
    exact float64 operations and one rounding per value: reproducible everywhere."""
    t = np.floor((np.asarray(log_scale, np.float64) - LOG_LO) * LOG_STEPS_PER_UNIT + 0.5)
    return np.clip(t, 0, N_LEVELS - 1).astype(np.int32)


def _phi(x: np.ndarray) -> np.ndarray:
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    return 0.5 * erfc(-np.asarray(x, np.float64) / math.sqrt(2.0))


def gaussian_tables(precision: int = PRECISION) -> CdfTables:
    """Zero-mean discretised Gaussian tables, one per log-scale level, each over
    ``-R..R`` with ``R = ceil(7 sigma)`` (escape beyond)."""
    pmfs, offsets, tails = [], [], []
    for t in range(N_LEVELS):
        s = math.exp(LOG_LO + t / LOG_STEPS_PER_UNIT)
        r = int(math.ceil(TAIL_SIGMAS * s))
        v = np.arange(-r, r + 1, dtype=np.float64)
        lo, hi = (np.abs(v) - 0.5) / s, (np.abs(v) + 0.5) / s
        pmfs.append(_phi(-lo) - _phi(-hi))
        offsets.append(-r)
        tails.append(2.0 * _phi(-(r + 0.5) / s).item())
    return CdfTables.from_pmfs(pmfs, offsets, tails, precision)


def _softplus(x):
    return np.logaddexp(0.0, x)


def factorized_tables(eb: EntropyBottleneck, precision: int = PRECISION) -> tuple[CdfTables, np.ndarray]:
    """Per-channel tables of an :class:`EntropyBottleneck` (symbols ``round(z - median)``) and
    the medians (float32 values as stored). numpy float64, fixed operation order."""
    q = eb.quantiles.detach().double().numpy()[:, 0, :]  # C x 3
    med = eb.quantiles.detach()[:, 0, 1].numpy().astype(np.float64)
    lo = np.floor(med - q[:, 0]).astype(np.int64)
    hi = np.ceil(q[:, 2] - med).astype(np.int64)
    lo, hi = np.maximum(lo, 1), np.maximum(hi, 1)
    n = int((lo + hi).max()) + 1
    c = q.shape[0]
    sym = np.arange(n)[None, :] - lo[:, None]  # C x n symbol values
    x = sym + med[:, None]
    mats = [eb.matrices[i].detach().double().numpy() for i in range(len(eb.filters) + 1)]
    biases = [eb.biases[i].detach().double().numpy() for i in range(len(eb.filters) + 1)]
    factors = [eb.factors[i].detach().double().numpy() for i in range(len(eb.filters))]

    def logits_cum(v):  # v: C x n -> C x n
        h = v[:, None, :]  # C x 1 x n
        for i, m in enumerate(mats):
            m = _softplus(m)  # C x out x in
            acc = m[:, :, 0, None] * h[:, None, 0, :]
            for j in range(1, m.shape[2]):
                acc = acc + m[:, :, j, None] * h[:, None, j, :]
            h = acc + biases[i]
            if i < len(factors):
                h = h + np.tanh(factors[i]) * np.tanh(h)
        return h[:, 0, :]

    lower, upper = logits_cum(x - 0.5), logits_cum(x + 0.5)
    sign = -np.sign(lower + upper)
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    pmf = np.abs(sig(sign * upper) - sig(sign * lower))
    pmfs, tails = [], []
    for ch in range(c):
        p = pmf[ch, :lo[ch] + hi[ch] + 1]
        pmfs.append(p)
        tails.append(max(0.0, 1.0 - float(p.sum())))
    return CdfTables.from_pmfs(pmfs, (-lo).tolist(), tails, precision), med


def tables_to_arrays(t: CdfTables) -> dict[str, np.ndarray]:
    """A table set as flat int arrays (frequencies incl. escape, sizes, offsets)."""
    freqs = np.concatenate([t.freqs(i) for i in range(len(t))])
    return {"freqs": freqs.astype(np.int32), "sizes": t.sizes.astype(np.int32),
            "offsets": t.offsets.astype(np.int32), "precision": np.array([t.precision], np.int32)}


def tables_from_arrays(a: dict[str, np.ndarray]) -> CdfTables:
    sizes = a["sizes"].astype(np.int64)
    ends = np.cumsum(sizes)
    freqs = np.split(a["freqs"].astype(np.int64), ends[:-1])
    return CdfTables(freqs, a["offsets"].astype(np.int64).tolist(), int(a["precision"][0]))
