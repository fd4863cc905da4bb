"""Pixel neighbourhoods of natural images as circuit variables (the photo lossless codec).

Each pixel becomes one row of ``NUM_VARS`` categorical variables (alphabet ``ALPHABET``):

* three *targets*, coded in this order: the prediction residuals of G, R and B, as symbols
  ``(value - prediction) mod 256`` re-centred at 128. G is predicted by CALIC's gradient-
  adjusted predictor (GAP) on the G plane; R and B by ``G + MED`` on the R-G / B-G planes
  (MED: LOCO-I's median edge detector; the decoded G of the same pixel removes most of the
  inter-channel correlation);
* twelve *context* variables from already decoded neighbours: the three local gradients of G
  (``NE-N``, ``N-NW``, ``NW-W``), the G residuals at W, N, NW, NE, the R and B residuals at W
  and N, and the disagreement ``MED - GAP`` of two G predictors, each on a signed logarithmic
  scale of 17 levels.

The circuit models the joint of the row; the codec codes every target with its exact
conditional given the context and the targets already coded (marginals of the circuit). A
grey image uses the G targets and G contexts only: the other variables are summed out.

Decoding order is a wavefront: pixel (r, c) needs W, NW, N and NE, so all pixels with the same
``2 r + c`` are independent and are decoded as one batch.
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["ALPHABET", "NUM_VARS", "TARGETS", "GRAY_CONTEXT", "COLOR_CONTEXT", "pixel_variables", "wavefronts",
           "context_rows", "reconstruct"]

ALPHABET = 256
NUM_VARS = 15
TARGETS = (0, 1, 2)  #: residual variables of G, R, B
#: context variables that exist for a grey image (G gradients and G residuals)
GRAY_CONTEXT = (3, 4, 5, 6, 7, 8, 9, 14)
COLOR_CONTEXT = tuple(range(3, NUM_VARS))

_jit = nb.njit(cache=True, nogil=True)


@_jit
def _q(d):
    """Signed logarithmic quantizer: 0, ±1, ±2, ±3..4, ±5..8, ..., ±65.. -> 0..16 (8 is zero)."""
    a = abs(d)
    if a == 0:
        m = 0
    elif a <= 2:
        m = a
    else:
        m = 2
        t = a - 1
        while t > 1 and m < 8:
            t >>= 1
            m += 1
        # a in 3..4 -> 3, 5..8 -> 4, 9..16 -> 5, 17..32 -> 6, 33..64 -> 7, 65.. -> 8
        m = min(m, 8)
    return 8 + m if d > 0 else 8 - m


@_jit
def _med(w, n, nw):
    if nw >= max(w, n):
        return min(w, n)
    if nw <= min(w, n):
        return max(w, n)
    return w + n - nw


@_jit
def _gap(a, ch, r, c, h, w):
    """CALIC's gradient-adjusted prediction (GAP) of plane ``ch`` at (r, c), borders as
    :func:`_neigh` (WW, NN, NNE fall back to W, N, NE)."""
    wv, n, nw, ne = _neigh(a, ch, r, c, h, w)
    ww = a[ch, r, c - 2] if c >= 2 else wv
    nn = a[ch, r - 2, c] if r >= 2 else n
    nne = a[ch, r - 2, c + 1] if (r >= 2 and c + 1 < w) else ne
    dh = abs(wv - ww) + abs(n - nw) + abs(n - ne)
    dv = abs(wv - nw) + abs(n - nn) + abs(ne - nne)
    if dv - dh > 80:
        return wv
    if dh - dv > 80:
        return n
    base4 = 2 * (wv + n) + (ne - nw)  # 4 x ((W + N) / 2 + (NE - NW) / 4)
    if dv - dh > 32:
        p8 = base4 + 4 * wv
    elif dv - dh > 8:
        p8 = (3 * base4 + 4 * wv) // 2
    elif dh - dv > 32:
        p8 = base4 + 4 * n
    elif dh - dv > 8:
        p8 = (3 * base4 + 4 * n) // 2
    else:
        p8 = 2 * base4
    return min(max((p8 + 4) >> 3, 0), 255)


@_jit
def _neigh(a, ch, r, c, h, w):
    """(W, N, NW, NE) of plane ``ch`` with borders: no row above -> all take W; no column to
    the left -> W and NW take N; no column to the right -> NE takes N."""
    if r == 0:
        wv = a[ch, r, c - 1] if c > 0 else 0
        return wv, wv, wv, wv
    n = a[ch, r - 1, c]
    wv = a[ch, r, c - 1] if c > 0 else n
    nw = a[ch, r - 1, c - 1] if c > 0 else n
    ne = a[ch, r - 1, c + 1] if c + 1 < w else n
    return wv, n, nw, ne


@_jit
def _diff_neigh(img, ch, r, c, h, w):
    """(W, N, NW) of plane ``ch`` minus plane G, with the same borders."""
    w1, n1, nw1, _ = _neigh(img, ch, r, c, h, w)
    w0, n0, nw0, _ = _neigh(img, 0, r, c, h, w)
    return w1 - w0, n1 - n0, nw1 - nw0


@_jit
def _predict(img, ch, r, c, h, w):
    """Prediction of channel ``ch`` (0 G, 1 R, 2 B) at (r, c); R and B use the G at (r, c)."""
    if ch == 0:
        return _gap(img, 0, r, c, h, w)
    dw, dn, dnw = _diff_neigh(img, ch, r, c, h, w)
    p = img[0, r, c] + _med(dw, dn, dnw)
    return min(max(p, 0), 255)


@_jit
def _context(img, res, r, c, h, w, row):
    """Context variables 3..13 of pixel (r, c) into ``row`` (needs only decoded neighbours)."""
    wv, n, nw, ne = _neigh(img, 0, r, c, h, w)
    row[3] = _q(ne - n)
    row[4] = _q(n - nw)
    row[5] = _q(nw - wv)
    rw, rn, rnw, rne = _neigh(res, 0, r, c, h, w)
    row[6] = _q(rw)
    row[7] = _q(rn)
    row[8] = _q(rnw)
    row[9] = _q(rne)
    rw, rn, _, _ = _neigh(res, 1, r, c, h, w)
    row[10] = _q(rw)
    row[11] = _q(rn)
    rw, rn, _, _ = _neigh(res, 2, r, c, h, w)
    row[12] = _q(rw)
    row[13] = _q(rn)
    row[14] = _q(_med(wv, n, nw) - _gap(img, 0, r, c, h, w))


@_jit
def _all_variables(img, res, rows):
    nch, h, w = img.shape
    for r in range(h):
        for c in range(w):
            i = r * w + c
            for ch in range(nch):
                e = img[ch, r, c] - _predict(img, ch, r, c, h, w)
                e = ((e + 128) & 255) - 128
                res[ch, r, c] = e
                rows[i, ch] = e + 128
            _context(img, res, r, c, h, w, rows[i])


def _planes(image: np.ndarray) -> np.ndarray:
    """``H x W x C`` uint8 -> ``3 x H x W`` int16 planes ordered G, R, B (grey: G only, rest 0)."""
    h, w, ch = image.shape
    img = np.zeros((3, h, w), np.int16)
    if ch == 1:
        img[0] = image[:, :, 0]
    else:
        img[0], img[1], img[2] = image[:, :, 1], image[:, :, 0], image[:, :, 2]
    return img


def pixel_variables(image: np.ndarray) -> np.ndarray:
    """All pixels' variables of an ``H x W x C`` uint8 image (C = 1 or 3), raster order:
    ``(H*W) x NUM_VARS`` uint8. For grey images the R/B variables are constant (summed out)."""
    img = _planes(image)
    res = np.zeros_like(img)
    rows = np.full((img.shape[1] * img.shape[2], NUM_VARS), 128, np.uint8)
    _all_variables(img, res, rows)
    return rows


def wavefronts(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices (raster numbering) in decoding order and the start of each wave
    (``ptr``, length waves + 1): wave ``t`` holds the pixels with ``2 r + c == t``, by row."""
    r, c = np.divmod(np.arange(h * w), w)
    t = 2 * r + c
    order = np.lexsort((r, t))
    ptr = np.searchsorted(t[order], np.arange(2 * (h - 1) + w + 1))
    return order, ptr


@_jit
def _context_rows(img, res, pix, rows):
    h, w = img.shape[1], img.shape[2]
    for i in range(pix.shape[0]):
        r, c = pix[i] // w, pix[i] % w
        _context(img, res, r, c, h, w, rows[i])


def context_rows(img: np.ndarray, res: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """Decoder side: rows (targets 128) with the context of pixels ``pix`` filled in."""
    rows = np.full((len(pix), NUM_VARS), 128, np.int64)
    _context_rows(img, res, pix, rows)
    return rows


@_jit
def _reconstruct(img, res, pix, ch, syms):
    h, w = img.shape[1], img.shape[2]
    for i in range(pix.shape[0]):
        r, c = pix[i] // w, pix[i] % w
        e = syms[i] - 128
        res[ch, r, c] = e
        img[ch, r, c] = (_predict(img, ch, r, c, h, w) + e) & 255


def reconstruct(img: np.ndarray, res: np.ndarray, pix: np.ndarray, ch: int, syms: np.ndarray) -> None:
    """Decoder side: set channel ``ch`` of pixels ``pix`` from their residual symbols."""
    _reconstruct(img, res, pix, ch, np.ascontiguousarray(syms, np.int64))
