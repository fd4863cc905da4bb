"""Interleaved range asymmetric numeral systems (rANS) coder, compiled with numba.

Model of the coder
------------------
Every coded *operation* is a triple ``(start, freq, precision)``: the symbol occupies the
interval ``[start, start + freq)`` of ``[0, 2**precision)``, which costs
``precision - log2(freq)`` bits. Two symbol paths produce such operations and may be mixed
freely in one stream:

* **indexed** symbols: integer values plus, per value, an index into a registered
  :class:`CdfTables` set (quantized CDFs built once per model). A value outside its table's
  range is coded as the table's escape symbol followed by the value in bypass bits.
* **categorical** symbols: each with its own probability vector (a row of an ``N x K`` array),
  turned into integer frequencies by :func:`quantize_pmf`, the single documented function
  that both encoder and decoder apply.

State: ``lanes`` 64-bit states, operation ``j`` uses lane ``j % lanes`` (interleaving lets the
CPU overlap independent lanes); renormalisation moves 32-bit words through one shared word
stream. rANS is last-in-first-out: :class:`RansEncoder` buffers the operations of all its
``encode_*`` calls and codes them in reverse in :meth:`RansEncoder.flush`, so the decoder's
``decode_*`` calls, made in the same order with the same models, return the symbols in
forward order.

Invertibility
-------------
``RansDecoder(RansEncoder(...).flush())`` returns exactly the encoded symbols if and only if
the decoder is given bit-identical models (tables, table indexes, pmfs) in the same call
order. The decoder never reads out of bounds on any input; :meth:`RansDecoder.finish`
checks that the stream ended exactly where the encoder started (all lanes back to their
initial state, every word consumed) and raises :class:`FormatError` otherwise, which turns
model drift between encoder and decoder into an error instead of garbage.

Stream layout (``bytes``)
-------------------------
One byte: the lane count. Then, for one lane, the lane starts at state 0 and the stream is
``head || words`` where ``head`` is the final state in as few little-endian bytes as it
needs (``0..8``) and ``words`` the 32-bit little-endian renormalisation words in decode
order; the head length follows from the total length (no words: the head is everything;
otherwise the head holds 5..8 bytes and ``len(words) % 4 == 0``). For ``lanes > 1`` the lanes
start at ``2**32`` and the stream is ``8 * lanes`` bytes of final states followed by the
words. Small streams therefore cost almost exactly their information content.
"""
from __future__ import annotations

import hashlib
import math
import zlib
from typing import Sequence

from numpy.typing import ArrayLike

import numba as nb
import numpy as np

from .errors import FormatError

__all__ = [
    "CdfTables",
    "RansEncoder",
    "RansDecoder",
    "quantize_pmf",
    "MAX_PRECISION",
]

MAX_PRECISION = 28  #: upper bound for any table or pmf precision (bits)
_ESC_LEN_BITS = 6  # escape payload: bit length of the zig-zag distance, uniform over 64 values
_BYPASS_CHUNK = 16  # bypass bits are coded in chunks of at most 16 bits
_MULTI_LANE_MIN_OPS = 1 << 14  # below this many operations a stream uses one (compact) lane
_LANES = 4

_U32 = np.uint64(32)
_U64 = np.uint64(64)
_ONE = np.uint64(1)
_LOW = np.uint64(1 << 32)
_MASK32 = np.uint64(0xFFFFFFFF)

_jit = nb.njit(cache=True, nogil=True)
_pjit = nb.njit(cache=True, nogil=True, parallel=True)
# Start numba's thread pool now, at import: with the OpenMP layer its start sets the OpenMP
# thread count that torch shares to numba's default (all cores). Started later, by the first
# parallel kernel inside a codec call, it would undo a caller's torch.set_num_threads.
nb.get_num_threads()


# ----------------------------------------------------------------------------------------
# pmf quantization: the one function that maps probabilities to integer frequencies
# ----------------------------------------------------------------------------------------
@_jit
def _row_scale(p, bits, total):
    """``(w, sc)`` of one pmf row for :func:`quantize_pmf`, or ``(-1, -1)`` for a row that is
    not finite, has a negative entry or is all zero.

    ``bits`` is the row viewed as unsigned integers: for non-negative floats their order is
    the order of the values, while negative, infinite and NaN entries have larger patterns
    than any finite non-negative value; one integer maximum therefore finds both the
    exponent of ``max(p)`` and any bad entry. ``w`` is the power of two that puts ``max(p)``
    in ``[2**31, 2**32)``. Only that maximum, an exact integer sum and element-wise IEEE
    operations are involved: the same result on every machine and in any vector width."""
    k = p.shape[0]
    top = bits[0]
    for i in range(k):
        top = max(top, bits[i])
    if bits.itemsize == 4:
        inf_bits, mant, bias = np.uint64(0x7F800000), 23, 127
    else:
        inf_bits, mant, bias = np.uint64(0x7FF0000000000000), 52, 1023
    t = np.uint64(top)
    if t >= inf_bits or t == 0:
        return -1.0, -1.0
    w = math.ldexp(1.0, 31 - (np.int64(t >> np.uint64(mant)) - bias))
    if w > 1e290:  # max(p) is (nearly) denormal: no usable resolution
        return -1.0, -1.0
    s = 0
    for i in range(k):
        s += np.int64(np.float64(p[i]) * w)
    return w, (total - k) / np.float64(s)


@_jit
def _q(v, w, sc):
    """floor(floor(v * w) * sc): the quantized share of one entry (frequency minus one)."""
    return np.int32(np.float64(np.int64(np.float64(v) * w)) * sc)


@_pjit
def _cum_rows(pmf, bits, precision, out):
    """``out[r, i]``: cumulative frequency of the symbols before ``i`` in row ``r``."""
    total = 1 << precision
    n, k = pmf.shape
    bad = 0
    for r in nb.prange(n):
        w, sc = _row_scale(pmf[r], bits[r], total)
        if sc < 0.0:
            bad += 1
            continue
        row = out[r]
        for i in range(k):  # frequencies (vectorised) ...
            row[i] = _q(pmf[r, i], w, sc) + 1
        acc = 0
        for i in range(k):  # ... then their exclusive prefix sums
            f = row[i]
            row[i] = acc
            acc += f
    return bad


def _check_pmf(pmf: ArrayLike, precision: int) -> np.ndarray:
    pmf = np.asarray(pmf)
    if pmf.ndim != 2 or pmf.shape[1] < 1:
        raise ValueError(f"pmf must be an N x K array with K >= 1, got shape {pmf.shape}")
    if pmf.dtype not in (np.float32, np.float64):
        pmf = pmf.astype(np.float64)
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be in 1..{MAX_PRECISION}, got {precision}")
    if pmf.shape[1] > (1 << precision) // 2:
        raise ValueError(f"{pmf.shape[1]} symbols need more than {precision} bits of precision")
    return np.ascontiguousarray(pmf)


def _bits(pmf: np.ndarray) -> np.ndarray:
    return pmf.view(np.uint32 if pmf.dtype == np.float32 else np.uint64)


def quantize_pmf(pmf: np.ndarray, precision: int = 24) -> np.ndarray:
    """Integer frequencies of each row of ``pmf`` (``N x K``), summing to ``2**precision``.

    In float64: ``u[k] = floor(p[k] * w)`` with ``w`` the power of two that puts ``max(p)``
    in ``[2**31, 2**32)`` (exact integers), then
    ``freq[k] = 1 + floor(u[k] * ((2**precision - K) / sum(u)))`` for every entry but the
    last, which takes what is left of ``2**precision`` (its own share plus the rounding
    remainder, at most K / 2**precision). Only a maximum, an exact integer sum and
    element-wise IEEE operations are involved, so any machine and any vector width give the
    same frequencies. Every symbol keeps ``freq >= 1``
    (coding a symbol of tiny probability stays possible); rows need not be normalised but
    must be finite and non-negative, with a largest entry of at least about 1e-290. The result depends only on the input
    values, never on thread count or memory layout: it is what the coder uses.
    """
    pmf = _check_pmf(pmf, precision)
    cum = np.empty((pmf.shape[0], pmf.shape[1] + 1), dtype=np.int64)
    if _cum_rows(pmf, _bits(pmf), precision, cum):
        raise ValueError("pmf rows must be finite, non-negative and not all zero")
    cum[:, -1] = 1 << precision
    return np.diff(cum, axis=1)


# ----------------------------------------------------------------------------------------
# CDF tables for indexed symbols
# ----------------------------------------------------------------------------------------
class CdfTables:
    """A registered set of quantized CDF tables for indexed symbols.

    Table ``t`` codes the values ``offset[t] .. offset[t] + n_t - 1`` with frequencies that
    sum to ``2**precision``; one extra final slot is the escape symbol, through which values
    outside the range are coded (as an Elias-gamma-like bypass payload). Build the set once
    per model; it is immutable.
    """

    def __init__(self, freqs: Sequence[np.ndarray], offsets: Sequence[int], precision: int = 16):
        """``freqs[t]``: integer frequencies of table ``t`` *including* the escape as the last
        entry, each ``>= 1``, summing to ``2**precision``."""
        if not 1 <= precision <= MAX_PRECISION:
            raise ValueError(f"precision must be in 1..{MAX_PRECISION}, got {precision}")
        if len(freqs) != len(offsets) or not freqs:
            raise ValueError("need one offset per table and at least one table")
        total = 1 << precision
        sizes, cdfs = [], []
        for t, f in enumerate(freqs):
            f = np.asarray(f, dtype=np.int64)
            if f.ndim != 1 or f.size < 2 or f.min() < 1 or int(f.sum()) != total:
                raise ValueError(f"table {t}: need >= 2 frequencies >= 1 summing to 2**{precision}")
            sizes.append(f.size)
            cdfs.append(np.concatenate([[0], np.cumsum(f)]))
        self.precision = precision
        self.sizes = np.asarray(sizes, dtype=np.int64)  # symbols per table, escape included
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.bases = np.concatenate([[0], np.cumsum(self.sizes + 1)[:-1]]).astype(np.int64)
        self.cdf = np.concatenate(cdfs).astype(np.uint32)
        if self.cdf.size and self.cdf.max() > total:
            raise ValueError("cdf out of range")

    @classmethod
    def from_pmfs(cls, pmfs: Sequence[np.ndarray], offsets: Sequence[int],
                  tail_masses: ArrayLike | None = None,
                  precision: int = 16) -> "CdfTables":
        """Tables from probability vectors over each table's range; ``tail_masses[t]`` (default
        0) is the probability of falling outside it (the escape gets at least frequency 1)."""
        tails = np.zeros(len(pmfs)) if tail_masses is None else np.asarray(tail_masses, float)
        freqs = [quantize_pmf(np.append(np.asarray(p, np.float64), tail)[None], precision)[0]
                 for p, tail in zip(pmfs, tails)]
        return cls(freqs, offsets, precision)

    def __len__(self) -> int:
        return int(self.sizes.size)

    def freqs(self, t: int) -> np.ndarray:
        """Frequencies of table ``t`` (escape last)."""
        b, k = self.bases[t], self.sizes[t]
        return np.diff(self.cdf[b:b + k + 1].astype(np.int64))

    def digest(self) -> str:
        """sha256 (hex) of the tables, to tell models apart."""
        h = hashlib.sha256(self.cdf.astype("<u4").tobytes())
        h.update(self.offsets.astype("<i8").tobytes())
        h.update(self.sizes.astype("<i8").tobytes())
        return h.hexdigest()


# ----------------------------------------------------------------------------------------
# operation builders (encoder side)
# ----------------------------------------------------------------------------------------
@_jit
def _bit_length(u):
    n = 0
    while u > 0:
        u >>= 1
        n += 1
    return n


@_jit
def _indexed_ops(symbols, indexes, cdf, bases, sizes, offsets, precision):
    n = symbols.shape[0]
    ntab = sizes.shape[0]
    # pass 1: validate indexes, count escape operations
    extra = 0
    for i in range(n):
        t = indexes[i]
        if t < 0 or t >= ntab:
            return np.empty(0, np.uint32), np.empty(0, np.uint32), np.empty(0, np.uint8), i
        j = np.int64(symbols[i]) - offsets[t]
        if j < 0 or j >= sizes[t] - 1:
            u = 2 * (-j - 1) + 1 if j < 0 else 2 * (j - (sizes[t] - 1))
            nbits = _bit_length(u)
            extra += 1 + (max(nbits - 1, 0) + _BYPASS_CHUNK - 1) // _BYPASS_CHUNK
    starts = np.empty(n + extra, np.uint32)
    freqs = np.empty(n + extra, np.uint32)
    precs = np.empty(n + extra, np.uint8)
    o = 0
    for i in range(n):
        t = indexes[i]
        b = bases[t]
        k = sizes[t]
        j = np.int64(symbols[i]) - offsets[t]
        if j >= 0 and j < k - 1:
            starts[o] = cdf[b + j]
            freqs[o] = cdf[b + j + 1] - cdf[b + j]
            precs[o] = precision
            o += 1
        else:
            starts[o] = cdf[b + k - 1]
            freqs[o] = cdf[b + k] - cdf[b + k - 1]
            precs[o] = precision
            o += 1
            u = 2 * (-j - 1) + 1 if j < 0 else 2 * (j - (k - 1))
            nbits = _bit_length(u)
            starts[o] = nbits
            freqs[o] = 1
            precs[o] = _ESC_LEN_BITS
            o += 1
            rest = nbits - 1  # the leading one bit is implicit
            while rest > 0:
                c = min(rest, _BYPASS_CHUNK)
                rest -= c
                starts[o] = (u >> rest) & ((1 << c) - 1)
                freqs[o] = 1
                precs[o] = c
                o += 1
    return starts, freqs, precs, -1


@_pjit
def _categorical_ops(symbols, pmf, bits, precision, starts, freqs):
    total = 1 << precision
    n, k = pmf.shape
    bad = 0
    for r in nb.prange(n):
        s = symbols[r]
        w, sc = _row_scale(pmf[r], bits[r], total)
        if sc < 0.0 or s < 0 or s >= k:
            bad += 1
            continue
        acc = s
        for i in range(s):
            acc += _q(pmf[r, i], w, sc)
        starts[r] = acc
        freqs[r] = _q(pmf[r, s], w, sc) + 1 if s < k - 1 else total - acc
    return bad


# ----------------------------------------------------------------------------------------
# the coding loops
# ----------------------------------------------------------------------------------------
@_jit
def _encode_ops(starts, freqs, precs, states, out):
    """Code operations in reverse into ``out`` from its end backwards; returns the first
    used word position."""
    lanes = states.shape[0]
    pos = out.shape[0]
    for j in range(starts.shape[0] - 1, -1, -1):
        lane = j % lanes
        x = states[lane]
        f = np.uint64(freqs[j])
        p = np.uint64(precs[j])
        if f < (_ONE << p):  # a certain symbol (freq == total) costs nothing
            if x >= (f << (_U64 - p)):
                pos -= 1
                out[pos] = np.uint32(x & _MASK32)
                x >>= _U32
            x = ((x // f) << p) + (x % f) + np.uint64(starts[j])
        states[lane] = x
    return pos


@_jit
def _pop(states, lane, words, cur, start, freq, prec, slot):
    """Advance ``lane`` past a decoded symbol; returns the new word position."""
    x = np.uint64(freq) * (states[lane] >> np.uint64(prec)) + slot - np.uint64(start)
    if x < _LOW and cur < words.shape[0]:
        x = (x << _U32) | np.uint64(words[cur])
        cur += 1
    states[lane] = x
    return cur


@_jit
def _decode_uniform(states, words, cur, op, nbits):
    lane = op % states.shape[0]
    slot = states[lane] & ((_ONE << np.uint64(nbits)) - _ONE)
    cur = _pop(states, lane, words, cur, slot, 1, nbits, slot)
    return np.int64(slot), cur


@_jit
def _decode_indexed(states, words, io, indexes, cdf, bases, sizes, offsets, precision, out):
    """io = [word position, operation count, error flag]."""
    cur = io[0]
    op = io[1]
    lanes = states.shape[0]
    mask = (_ONE << np.uint64(precision)) - _ONE
    ntab = sizes.shape[0]
    for i in range(indexes.shape[0]):
        t = indexes[i]
        if t < 0 or t >= ntab:
            io[2] = 1
            break
        b = bases[t]
        k = sizes[t]
        lane = op % lanes
        op += 1
        slot = states[lane] & mask
        lo = 0
        hi = k
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if np.uint64(cdf[b + mid]) <= slot:
                lo = mid
            else:
                hi = mid
        start = cdf[b + lo]
        cur = _pop(states, lane, words, cur, start, cdf[b + lo + 1] - start, precision, slot)
        if lo < k - 1:
            out[i] = offsets[t] + lo
            continue
        nbits, cur = _decode_uniform(states, words, cur, op, _ESC_LEN_BITS)
        op += 1
        if nbits > 33:
            io[2] = 2
            break
        u = np.int64(1) if nbits > 0 else np.int64(0)
        rest = nbits - 1
        while rest > 0:
            c = min(rest, _BYPASS_CHUNK)
            rest -= c
            v, cur = _decode_uniform(states, words, cur, op, c)
            op += 1
            u = (u << c) | v
        if u & 1:
            val = offsets[t] - 1 - (u >> 1)
        else:
            val = offsets[t] + k - 1 + (u >> 1)
        if val < -2147483648 or val > 2147483647:
            io[2] = 2
            break
        out[i] = val
    io[0] = cur
    io[1] = op
    return


@_pjit
def _row_scales(pmf, bits, precision, ws, scs):
    total = 1 << precision
    bad = 0
    for r in nb.prange(pmf.shape[0]):
        ws[r], scs[r] = _row_scale(pmf[r], bits[r], total)
        if scs[r] < 0.0:
            bad += 1
    return bad


@_jit
def _decode_categorical(states, words, io, pmf, ws, scs, precision, out):
    """Decode one symbol per pmf row, with ``(w, sc)`` from ``_row_scales``. Per row: the
    frequencies as in ``_cum_rows`` (vectorised), their sums per block of 16, a bisection
    over the block starts and a short scan inside the block."""
    cur = io[0]
    op = io[1]
    lanes = states.shape[0]
    total = np.int64(1) << precision
    mask = np.uint64(total - 1)
    k = pmf.shape[1]
    blk = 16
    nblk = (k + blk - 1) // blk
    row = np.zeros(nblk * blk, np.int32)
    starts = np.empty(nblk, np.int64)
    for r in range(pmf.shape[0]):
        w = ws[r]
        sc = scs[r]
        for i in range(k):
            row[i] = _q(pmf[r, i], w, sc) + 1
        acc = 0
        for b in range(nblk):
            starts[b] = acc
            s = 0
            for j in range(b * blk, b * blk + blk):
                s += row[j]
            acc += s
        lane = op % lanes
        op += 1
        slot = np.int64(states[lane] & mask)
        b = 0  # the last block whose start is <= slot (starts[0] == 0)
        n = nblk
        while n > 1:
            half = n >> 1
            b = b + half if starts[b + half] <= slot else b
            n -= half
        cum = starts[b]
        i = b * blk
        while i < k - 1 and cum + row[i] <= slot:  # the last entry takes the rest
            cum += row[i]
            i += 1
        f = row[i] if i < k - 1 else total - cum
        cur = _pop(states, lane, words, cur, cum, f, precision, np.uint64(slot))
        out[r] = i
    io[0] = cur
    io[1] = op


# ----------------------------------------------------------------------------------------
# public coder objects
# ----------------------------------------------------------------------------------------
def _as_1d(a: ArrayLike, dtype: type, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        a = a.reshape(-1)
    if not np.can_cast(a.dtype, dtype, casting="same_kind") and a.size:
        raise ValueError(f"{name} must be integers, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype)


class RansEncoder:
    """Collects ``encode_*`` calls; :meth:`flush` returns the stream as ``bytes``.

    The encoder also keeps a CRC32 of every symbol passed in (int32 little-endian, call
    order), :attr:`checksum`, which a container stores so that decoders can verify it.
    """

    def __init__(self) -> None:
        self._ops: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._n = 0
        self.checksum = 0

    def _add(self, starts: np.ndarray, freqs: np.ndarray, precs: np.ndarray,
             symbols: np.ndarray) -> None:
        self._ops.append((starts, freqs, precs))
        self._n += starts.size
        self.checksum = zlib.crc32(symbols.astype("<i4", copy=False).tobytes(), self.checksum)

    def encode_indexed(self, symbols: ArrayLike, indexes: ArrayLike, tables: CdfTables) -> None:
        """Code integer ``symbols`` (any shape, flattened in C order) with table ``indexes[i]``."""
        symbols = _as_1d(symbols, np.int32, "symbols")
        indexes = _as_1d(indexes, np.int32, "indexes")
        if symbols.size != indexes.size:
            raise ValueError(f"{symbols.size} symbols but {indexes.size} table indexes")
        starts, freqs, precs, bad = _indexed_ops(symbols, indexes, tables.cdf, tables.bases,
                                                 tables.sizes, tables.offsets, tables.precision)
        if bad >= 0:
            raise ValueError(f"table index {indexes[bad]} out of range 0..{len(tables) - 1}")
        self._add(starts, freqs, precs, symbols)

    def encode_categorical(self, symbols: ArrayLike, pmf: ArrayLike, precision: int = 24) -> None:
        """Code ``symbols[i]`` in ``0..K-1`` with probabilities ``pmf[i]`` (``N x K``), quantized
        by :func:`quantize_pmf` at ``precision`` bits."""
        pmf = _check_pmf(pmf, precision)
        symbols = _as_1d(symbols, np.int32, "symbols")
        if symbols.size != pmf.shape[0]:
            raise ValueError(f"{symbols.size} symbols but {pmf.shape[0]} pmf rows")
        starts = np.empty(symbols.size, np.uint32)
        freqs = np.empty(symbols.size, np.uint32)
        if _categorical_ops(symbols, pmf, _bits(pmf), precision, starts, freqs):
            raise ValueError("symbols must lie in 0..K-1 and pmf rows be finite, non-negative, "
                             "not all zero")
        self._add(starts, freqs, np.full(symbols.size, precision, np.uint8), symbols)

    def flush(self) -> bytes:
        """The coded stream. The encoder is reset afterwards."""
        if self._ops:
            starts, freqs, precs = (np.concatenate(a) for a in zip(*self._ops))
        else:
            starts = freqs = np.empty(0, np.uint32)
            precs = np.empty(0, np.uint8)
        lanes = _LANES if self._n >= _MULTI_LANE_MIN_OPS else 1
        states = np.full(lanes, 0 if lanes == 1 else 1 << 32, dtype=np.uint64)
        out = np.empty(self._n + 1, np.uint32)
        pos = _encode_ops(starts, freqs, precs, states, out)
        body = out[pos:].astype("<u4").tobytes()
        if lanes == 1:
            x = int(states[0])
            nbytes = (x.bit_length() + 7) // 8
            head = x.to_bytes(nbytes, "little")
        else:
            head = states.astype("<u8").tobytes()
        self._ops, self._n = [], 0
        return bytes([lanes]) + head + body


class RansDecoder:
    """Decodes a stream made by :class:`RansEncoder`, call by call in the encoder's order."""

    def __init__(self, data: bytes) -> None:
        data = bytes(data)
        if not data:
            raise FormatError("rANS stream is empty (missing its lane byte)")
        lanes = data[0]
        rest = data[1:]
        if lanes == 1:
            n = len(rest)
            hlen = n if n <= 8 else 5 + (n - 5) % 4
            self._init = np.zeros(1, np.uint64)
            states = np.array([int.from_bytes(rest[:hlen], "little")], dtype=np.uint64)
        elif lanes == _LANES:
            hlen = 8 * lanes
            if len(rest) < hlen or (len(rest) - hlen) % 4:
                raise FormatError("rANS stream is truncated")
            self._init = np.full(lanes, 1 << 32, np.uint64)
            states = np.frombuffer(rest[:hlen], dtype="<u8").astype(np.uint64)
        else:
            raise FormatError(f"rANS stream has an unsupported lane count {lanes}")
        self._states = states
        self._words = np.frombuffer(rest[hlen:], dtype="<u4").astype(np.uint32)
        self._io = np.zeros(3, np.int64)
        self.checksum = 0

    def _done(self, out: np.ndarray) -> np.ndarray:
        if self._io[2]:
            raise FormatError("rANS stream is corrupt (escape payload out of range)")
        self.checksum = zlib.crc32(out.astype("<i4", copy=False).tobytes(), self.checksum)
        return out

    def decode_indexed(self, indexes: ArrayLike, tables: CdfTables) -> np.ndarray:
        """Symbols coded with :meth:`RansEncoder.encode_indexed`; returns int32, flattened."""
        indexes = _as_1d(indexes, np.int32, "indexes")
        out = np.empty(indexes.size, np.int32)
        _decode_indexed(self._states, self._words, self._io, indexes, tables.cdf, tables.bases,
                        tables.sizes, tables.offsets, tables.precision, out)
        if self._io[2] == 1:
            raise ValueError(f"table index out of range 0..{len(tables) - 1}")
        return self._done(out)

    def decode_categorical(self, pmf: ArrayLike, precision: int = 24) -> np.ndarray:
        """Symbols coded with :meth:`RansEncoder.encode_categorical` and the same ``pmf``."""
        pmf = _check_pmf(pmf, precision)
        n = pmf.shape[0]
        out = np.empty(n, np.int32)
        ws = np.empty(n, np.float64)
        scs = np.empty(n, np.float64)
        if _row_scales(pmf, _bits(pmf), precision, ws, scs):
            raise ValueError("pmf rows must be finite, non-negative and not all zero")
        _decode_categorical(self._states, self._words, self._io, pmf, ws, scs, precision, out)
        return self._done(out)

    def finish(self) -> None:
        """Check that the whole stream was consumed exactly; raises :class:`FormatError`."""
        if self._io[0] != self._words.size or not np.array_equal(self._states, self._init):
            raise FormatError("rANS stream does not match its model (decoder desynchronized, "
                              "wrong model or corrupt data)")
