"""Exact, deterministic conditionals of a hidden Chow-Liu tree for entropy coding.

Everything here is float64 arithmetic in numba kernels with one fixed order of operations
(no parallel reductions, no fast-math), so encoder and decoder compute bit-identical pmfs
whatever the thread count or batch layout. The parameters come from the shipped uint8 codes
``q`` as ``2 ** (-q / step)`` through a table of exact constants (no libm call), then every
row is normalised by a sequential sum.

Efficient conditionals (the paper's scheme specialised to trees)
-----------------------------------------------------------------
Variables are coded in depth-first *pre-order* of the tree. When variable ``j`` is next, the
observed set is: its ancestors, and every subtree visited before it (complete). Its own subtree
is unobserved, so marginalising it contributes exactly 1 and

    p(x_j = v | x_<j)  ∝  sum_z out_j(z) L_j(v | z),
    out_j(b)  ∝  sum_a out_p(a) * in_p(a) * T_j(b | a),

where ``p`` is the parent and ``in_p`` the product of ``L_p(x_p | .)`` and the upward messages
of ``p``'s children finished so far. A child's message ``m_c(a) = sum_b T_c(b|a) in_c(b)`` is
computed once, when the last variable of its subtree has been coded ("closing" it). Each
variable therefore costs O(K^2 + K V): one pass over the circuit in total for all D
conditionals, instead of one pass per variable (:func:`naive_conditionals`, kept as the
reference and for the speed comparison). Outer loops that recompute the circuit per variable
cost O(D^2 K^2).
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["CircuitTables", "SequentialDecoder", "AdaptiveLeaf", "dequantize", "tree_tables"]

_jit = nb.njit(cache=True, nogil=True)

#: 2 ** (-r / 8) for r = 0..7, exact float64 constants (no libm involved)
_FRAC8 = np.array([float.fromhex(h) for h in (
    "0x1.0000000000000p+0", "0x1.d5818dcfba487p-1", "0x1.ae89f995ad3adp-1", "0x1.8ace5422aa0dbp-1",
    "0x1.6a09e667f3bcdp-1", "0x1.4bfdad5362a27p-1", "0x1.306fe0a31b715p-1", "0x1.172b83c7d517bp-1")])


@_jit
def _dequantize_rows(q, out):
    """out[r, :] = normalise(2 ** (-q[r, :] / 8)), rows of a 2-D view; sequential sums."""
    n, k = q.shape
    for r in range(n):
        s = 0.0
        for i in range(k):
            c = np.int64(q[r, i])
            v = _FRAC8[c % 8] * (2.0 ** -(c // 8))
            out[r, i] = v
            s += v
        for i in range(k):
            out[r, i] = out[r, i] / s


def dequantize(q: np.ndarray, step: int = 8) -> np.ndarray:
    """uint8 codes of ``-log2(p) * step`` to float64 probabilities normalised over the last axis."""
    if step != 8:
        raise ValueError("only 1/8-bit codes are supported")
    q = np.ascontiguousarray(q, np.uint8)
    out = np.empty(q.shape, np.float64)
    _dequantize_rows(q.reshape(-1, q.shape[-1]), out.reshape(-1, q.shape[-1]))
    return out


def tree_tables(parent: np.ndarray):
    """Pre-order, each node's position in it, children (CSR) and the close lists: after the
    variable at position ``i`` is coded, the subtrees rooted at ``close_idx[close_ptr[i]:
    close_ptr[i+1]]`` (innermost first) are complete."""
    from .circuits import preorder

    parent = np.asarray(parent, np.int64)
    d = len(parent)
    order = preorder(parent)
    pos = np.empty(d, np.int64)
    pos[order] = np.arange(d)
    # last pre-order position inside each subtree
    last = pos.copy()
    for u in order[::-1]:
        p = parent[u]
        if p >= 0:
            last[p] = max(last[p], last[u])
    closes: list[list[int]] = [[] for _ in range(d)]
    for u in order[::-1]:  # deeper nodes are closed before their ancestors at the same position
        closes[last[u]].append(u)
    for lst in closes:  # innermost first: larger pre-order position first
        lst.sort(key=lambda u: -pos[u])
    close_ptr = np.zeros(d + 1, np.int64)
    close_ptr[1:] = np.cumsum([len(c) for c in closes])
    close_idx = np.asarray([u for c in closes for u in c], np.int64)
    kids: list[list[int]] = [[] for _ in range(d)]
    for u in order:
        if parent[u] >= 0:
            kids[parent[u]].append(u)
    child_ptr = np.zeros(d + 1, np.int64)
    child_ptr[1:] = np.cumsum([len(c) for c in kids])
    child_idx = np.asarray([u for c in kids for u in c], np.int64)
    return order, pos, close_ptr, close_idx, child_ptr, child_idx


# ------------------------------------------------------------------------------------------
# efficient scheme: pre-order, work reused across variables
# ------------------------------------------------------------------------------------------
@_jit
def _pmf_row(bi, j, parent, prior, trans, leaf, out, ins, row):
    """Outside distribution of node j's hidden state and the pmf of X_j (into ``row``)."""
    k = prior.shape[0]
    p = parent[j]
    if p < 0:
        for b in range(k):
            out[bi, j, b] = prior[b]
    else:
        s = 0.0
        for b in range(k):
            acc = 0.0
            for a in range(k):
                acc += (out[bi, p, a] * ins[bi, p, a]) * trans[j, a, b]
            out[bi, j, b] = acc
            s += acc
        for b in range(k):
            out[bi, j, b] = out[bi, j, b] / s
    v = leaf.shape[2]
    for i in range(v):
        row[i] = 0.0
    for a in range(k):
        w = out[bi, j, a]
        for i in range(v):
            row[i] += w * leaf[j, a, i]


@_jit
def _observe(bi, i, xval, order, parent, close_ptr, close_idx, trans, leaf, ins, tmp):
    """Record X_{order[i]} = xval and close the subtrees that are now complete."""
    k = trans.shape[1]
    j = order[i]
    for a in range(k):
        ins[bi, j, a] = leaf[j, a, xval]
    for t in range(close_ptr[i], close_ptr[i + 1]):
        c = close_idx[t]
        p = parent[c]
        if p < 0:
            continue
        s = 0.0
        for a in range(k):
            acc = 0.0
            for b in range(k):
                acc += trans[c, a, b] * ins[bi, c, b]
            tmp[a] = acc
            s += acc
        s2 = 0.0
        for a in range(k):
            ins[bi, p, a] = ins[bi, p, a] * (tmp[a] / s)
            s2 += ins[bi, p, a]
        for a in range(k):
            ins[bi, p, a] = ins[bi, p, a] / s2


@_jit
def _all_conditionals(x, order, parent, close_ptr, close_idx, prior, trans, leaf, pmf):
    """Encoder side: pmf[b, i] = p(X_{order[i]} | earlier variables) for fully known rows x."""
    bsz = x.shape[0]
    d, k = trans.shape[0], trans.shape[1]
    out = np.empty((bsz, d, k))
    ins = np.empty((bsz, d, k))
    tmp = np.empty(k)
    for bi in range(bsz):
        for i in range(d):
            j = order[i]
            _pmf_row(bi, j, parent, prior, trans, leaf, out, ins, pmf[bi, i])
            _observe(bi, i, x[bi, j], order, parent, close_ptr, close_idx, trans, leaf, ins, tmp)


@_jit
def _step_pmfs(i, order, parent, prior, trans, leaf, out, ins, rows):
    j = order[i]
    for bi in range(rows.shape[0]):
        _pmf_row(bi, j, parent, prior, trans, leaf, out, ins, rows[bi])


@_jit
def _step_observe(i, xs, order, parent, close_ptr, close_idx, trans, leaf, ins, tmp):
    for bi in range(xs.shape[0]):
        _observe(bi, i, xs[bi], order, parent, close_ptr, close_idx, trans, leaf, ins, tmp)


# ------------------------------------------------------------------------------------------
# general queries: any evidence set (used per pixel neighbourhood) and the naive scheme
# ------------------------------------------------------------------------------------------
@_jit
def _query(xrow, observed, j, order, parent, child_ptr, child_idx, prior, trans, leaf,
           ins, msg, out, tmp, row, qleaf, wrow, qedge, urow, vrow):
    """p(X_j = . | the variables with observed[.] true) into ``row`` (unnormalised), by one
    full upward pass (reverse pre-order) and the outside pass down the root-to-j path.
    ``qleaf`` (K x V) is the leaf used for X_j itself (``leaf[j]``, or an adapted copy) and
    ``qedge`` the distribution of j's hidden state given its parent's (``trans[j]``; for the
    root a 1 x K prior), possibly adapted. Outputs for the adaptation: ``wrow`` the weights of
    j's states (``row = wrow @ qleaf``), ``urow`` the parent-side evidence (1 for the root) and
    ``vrow`` the evidence below j, so that the posterior of (parent state a, state b) after
    X_j = e is proportional to ``urow[a] qedge[a, b] vrow[b] qleaf[b, e]``."""
    d, k = trans.shape[0], trans.shape[1]
    for t in range(d - 1, -1, -1):
        u = order[t]
        for a in range(k):
            ins[u, a] = leaf[u, a, xrow[u]] if (observed[u] and u != j) else 1.0
        for ci in range(child_ptr[u], child_ptr[u + 1]):
            c = child_idx[ci]
            for a in range(k):
                ins[u, a] = ins[u, a] * msg[c, a]
        s = 0.0
        for a in range(k):
            s += ins[u, a]
        for a in range(k):
            ins[u, a] = ins[u, a] / s
        if parent[u] >= 0:
            s = 0.0
            for a in range(k):
                acc = 0.0
                for b in range(k):
                    acc += trans[u, a, b] * ins[u, b]
                msg[u, a] = acc
                s += acc
            for a in range(k):
                msg[u, a] = msg[u, a] / s
    # root-to-j path
    n = 0
    u = j
    while u >= 0:
        tmp[n] = u
        n += 1
        u = parent[u]
    for a in range(k):
        out[a] = qedge[0, a] if parent[j] < 0 else prior[a]
    for t in range(n - 1, 0, -1):
        p = np.int64(tmp[t])
        c = np.int64(tmp[t - 1])
        # everything at p except the message coming up from c
        for a in range(k):
            w = out[a] * (leaf[p, a, xrow[p]] if observed[p] else 1.0)
            for ci in range(child_ptr[p], child_ptr[p + 1]):
                cc = child_idx[ci]
                if cc != c:
                    w = w * msg[cc, a]
            ins[p, a] = w  # scratch: p's ins is no longer needed
        s = 0.0
        for b in range(k):
            acc = 0.0
            for a in range(k):
                acc += ins[p, a] * (qedge[a, b] if c == j else trans[c, a, b])
            out[b] = acc
            s += acc
        for b in range(k):
            out[b] = out[b] / s
    v = row.shape[0]
    for i in range(v):
        row[i] = 0.0
    pj = parent[j]
    if pj < 0:
        urow[0] = 1.0
    else:
        s = 0.0
        for a in range(k):
            s += ins[pj, a]
        for a in range(k):
            urow[a] = ins[pj, a] / s
    for a in range(k):
        vrow[a] = ins[j, a]
        w = out[a] * ins[j, a]
        wrow[a] = w
        for i in range(v):
            row[i] += w * qleaf[a, i]


@_jit
def _naive_all(x, order, parent, child_ptr, child_idx, prior, trans, leaf, pmf):
    d, k = trans.shape[0], trans.shape[1]
    ins = np.empty((d, k))
    msg = np.empty((d, k))
    out = np.empty(k)
    tmp = np.empty(max(d, k))
    wrow = np.empty(k)
    urow = np.empty(k)
    vrow = np.empty(k)
    observed = np.zeros(d, np.bool_)
    for bi in range(x.shape[0]):
        observed[:] = False
        for i in range(d):
            j = order[i]
            _query(x[bi], observed, j, order, parent, child_ptr, child_idx, prior, trans, leaf,
                   ins, msg, out, tmp, pmf[bi, i], leaf[j], wrow,
                   prior.reshape(1, k) if parent[j] < 0 else trans[j], urow, vrow)
            observed[j] = True


@_jit
def _queries(x, observed, j, order, parent, child_ptr, child_idx, prior, trans, leaf, rows,
             qleaf, wts, qedge, us, vs):
    d, k = trans.shape[0], trans.shape[1]
    ins = np.empty((d, k))
    msg = np.empty((d, k))
    out = np.empty(k)
    tmp = np.empty(max(d, k))
    for r in range(x.shape[0]):
        _query(x[r], observed, j, order, parent, child_ptr, child_idx, prior, trans, leaf,
               ins, msg, out, tmp, rows[r], qleaf, wts[r], qedge, us[r], vs[r])


_pjit = nb.njit(cache=True, nogil=True, parallel=True)
_BLOCK = 256


@_pjit
def _queries_par(x, observed, j, order, parent, child_ptr, child_idx, prior, trans, leaf, rows,
                 qleaf, wts, qedge, us, vs):
    """:func:`_queries` over blocks of rows in parallel (each row is computed by the same
    serial code, so the result does not depend on the thread count)."""
    d, k = trans.shape[0], trans.shape[1]
    nblk = (x.shape[0] + _BLOCK - 1) // _BLOCK
    for bk in nb.prange(nblk):
        ins = np.empty((d, k))
        msg = np.empty((d, k))
        out = np.empty(k)
        tmp = np.empty(max(d, k))
        for r in range(bk * _BLOCK, min(x.shape[0], (bk + 1) * _BLOCK)):
            _query(x[r], observed, j, order, parent, child_ptr, child_idx, prior, trans, leaf,
                   ins, msg, out, tmp, rows[r], qleaf, wts[r], qedge, us[r], vs[r])


@_jit
def _adapt(us, vs, syms, qleaf, lcounts, ltotals, lbase, qedge, ecounts, etotals, ebase,
           strength, decay):
    """Online EM of one variable's leaf and incoming edge (``qedge``: K_in x K; the root's
    prior as 1 x K): scale the counts by ``decay`` (forget old data), add each coded symbol's
    posterior over (parent state, state), then ``q = (strength * base + counts) /
    (strength + totals)`` row by row. Fixed order of operations: deterministic."""
    k, v = qleaf.shape
    kin = qedge.shape[0]
    post = np.empty((kin, k))
    if decay < 1.0:
        for a in range(k):
            ltotals[a] *= decay
            for i in range(v):
                lcounts[a, i] *= decay
        for a in range(kin):
            etotals[a] *= decay
            for b in range(k):
                ecounts[a, b] *= decay
    for r in range(syms.shape[0]):
        e = syms[r]
        s = 0.0
        for a in range(kin):
            for b in range(k):
                post[a, b] = us[r, a] * qedge[a, b] * vs[r, b] * qleaf[b, e]
                s += post[a, b]
        for a in range(kin):
            for b in range(k):
                p = post[a, b] / s
                ecounts[a, b] += p
                etotals[a] += p
                lcounts[b, e] += p
                ltotals[b] += p
    for a in range(k):
        den = strength + ltotals[a]
        for i in range(v):
            qleaf[a, i] = (strength * lbase[a, i] + lcounts[a, i]) / den
    for a in range(kin):
        den = strength + etotals[a]
        for b in range(k):
            qedge[a, b] = (strength * ebase[a, b] + ecounts[a, b]) / den


class AdaptiveLeaf:
    """A variable's leaf and incoming edge (the distribution of its hidden state given its
    parent's, or the prior at the root) that adapt to the data being coded: online EM on the
    symbols coded so far, pulled towards the shipped parameters with weight ``strength``
    pseudo-samples, old counts decayed by ``decay`` per update. Encoder and decoder make the
    same :meth:`update` calls, so they stay bit-identical. ``edge=False`` adapts the leaf only."""

    def __init__(self, tables: "CircuitTables", j: int, strength: float, decay: float = 1.0,
                 edge: bool = True):
        self.base = np.ascontiguousarray(tables.leaf[j])
        self.leaf = self.base.copy()
        self.counts = np.zeros_like(self.base)
        self.totals = np.zeros(self.base.shape[0])
        root = tables.parent[j] < 0
        self.ebase = np.ascontiguousarray(tables.prior[None] if root else tables.trans[j])
        self.edge = self.ebase.copy()
        self.ecounts = np.zeros_like(self.ebase)
        self.etotals = np.zeros(self.ebase.shape[0])
        self.strength = float(strength)
        self.decay = float(decay)
        self.adapt_edge = edge

    def update(self, us: np.ndarray, vs: np.ndarray, syms: np.ndarray) -> None:
        """Learn from the symbols just coded (``us``/``vs`` from :meth:`CircuitTables.query`)."""
        if not self.adapt_edge:  # a fixed edge: its counts are discarded every time
            self.ecounts[:] = 0.0
            self.etotals[:] = 0.0
        _adapt(us, vs, np.ascontiguousarray(syms, np.int64), self.leaf, self.counts, self.totals,
               self.base, self.edge, self.ecounts, self.etotals, self.ebase, self.strength,
               self.decay)
        if not self.adapt_edge:
            self.edge[:] = self.ebase


class CircuitTables:
    """A shipped HCLT in coding form: float64 probabilities and the tree tables.

    Build with :meth:`from_codes` (shipped uint8 codes) or :meth:`from_probabilities`.
    """

    def __init__(self, parent, prior, trans, leaf):
        self.parent = np.ascontiguousarray(parent, np.int64)
        self.prior = np.ascontiguousarray(prior, np.float64)
        self.trans = np.ascontiguousarray(trans, np.float64)
        self.leaf = np.ascontiguousarray(leaf, np.float64)
        d = len(self.parent)
        k = self.prior.shape[0]
        if self.trans.shape != (d, k, k) or self.leaf.shape[:2] != (d, k):
            raise ValueError("inconsistent circuit shapes")
        (self.order, self.pos, self.close_ptr, self.close_idx,
         self.child_ptr, self.child_idx) = tree_tables(self.parent)

    @classmethod
    def from_codes(cls, tensors: dict) -> "CircuitTables":
        """From the shipped tensors ``parent``, ``prior``, ``trans``, ``leaf`` (uint8 codes)."""
        return cls(tensors["parent"], dequantize(tensors["prior"]), dequantize(tensors["trans"]),
                   dequantize(tensors["leaf"]))

    @property
    def num_vars(self) -> int:
        return len(self.parent)

    @property
    def alphabet(self) -> int:
        return self.leaf.shape[2]

    def conditionals(self, x: np.ndarray) -> np.ndarray:
        """Efficient scheme: ``pmf[b, i] = p(X_{order[i]} = . | X_{order[:i]})`` for rows
        ``x`` (``B x D``); returns ``B x D x V`` float64 (rows unnormalised)."""
        x = np.ascontiguousarray(x, np.int64)
        pmf = np.empty((x.shape[0], self.num_vars, self.alphabet))
        _all_conditionals(x, self.order, self.parent, self.close_ptr, self.close_idx,
                          self.prior, self.trans, self.leaf, pmf)
        return pmf

    def naive_conditionals(self, x: np.ndarray) -> np.ndarray:
        """The same conditionals with one full circuit pass per variable (reference)."""
        x = np.ascontiguousarray(x, np.int64)
        pmf = np.empty((x.shape[0], self.num_vars, self.alphabet))
        _naive_all(x, self.order, self.parent, self.child_ptr, self.child_idx, self.prior,
                   self.trans, self.leaf, pmf)
        return pmf

    def query(self, x: np.ndarray, observed: np.ndarray, j: int,
              leaf: "AdaptiveLeaf | None" = None, weights: bool = False):
        """``p(X_j = . | X_S)`` for each row of ``x`` (``N x D``), ``S`` = ``observed``
        (bool ``D``; variables outside S are summed out). Returns ``N x V`` (unnormalised),
        and with ``weights`` also ``(us, vs)``, what :meth:`AdaptiveLeaf.update` needs.
        ``leaf``: an :class:`AdaptiveLeaf` used for X_j instead of the shipped parameters."""
        x = np.ascontiguousarray(x, np.int64)
        k = self.prior.shape[0]
        rows = np.empty((x.shape[0], self.alphabet))
        wts = np.empty((x.shape[0], k))
        us = np.empty((x.shape[0], k))
        vs = np.empty((x.shape[0], k))
        if leaf is None:
            qleaf = self.leaf[j]
            qedge = self.prior[None] if self.parent[j] < 0 else self.trans[j]
        else:
            qleaf, qedge = leaf.leaf, leaf.edge
        # thread launches cost milliseconds on a loaded machine: small batches stay serial
        (_queries_par if x.shape[0] >= 16 * _BLOCK else _queries)(x, np.ascontiguousarray(observed, np.bool_), j, self.order, self.parent,
                 self.child_ptr, self.child_idx, self.prior, self.trans, self.leaf, rows,
                 np.ascontiguousarray(qleaf), wts, np.ascontiguousarray(qedge), us, vs)
        return (rows, (us, vs)) if weights else rows

    def sequential(self, batch: int) -> "SequentialDecoder":
        """A decoder-side state for ``batch`` rows coded in pre-order."""
        return SequentialDecoder(self, batch)


class SequentialDecoder:
    """Decoder side of the efficient scheme: ``pmfs(i)`` gives the pmf rows of the variable
    at pre-order position ``i`` for every row of the batch, ``observe(i, values)`` records it.
    Calls must alternate for i = 0, 1, ..., D-1. Bit-identical to :meth:`CircuitTables.conditionals`."""

    def __init__(self, tables: CircuitTables, batch: int):
        self.t = tables
        d, k = tables.trans.shape[:2]
        self.out = np.empty((batch, d, k))
        self.ins = np.empty((batch, d, k))
        self.tmp = np.empty(k)
        self.rows = np.empty((batch, tables.alphabet))

    def pmfs(self, i: int) -> np.ndarray:
        t = self.t
        _step_pmfs(i, t.order, t.parent, t.prior, t.trans, t.leaf, self.out, self.ins, self.rows)
        return self.rows

    def observe(self, i: int, values: np.ndarray) -> None:
        t = self.t
        _step_observe(i, np.ascontiguousarray(values, np.int64), t.order, t.parent, t.close_ptr,
                      t.close_idx, t.trans, t.leaf, self.ins, self.tmp)
