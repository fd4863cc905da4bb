"""Hidden Chow-Liu tree (HCLT) probabilistic circuits, after Liu & Van den Broeck (2021) and
"Lossless Compression with Probabilistic Circuits" (Liu, Mandt, Van den Broeck, ICLR 2022).

An HCLT over ``D`` observed categorical variables ``X_i`` (alphabet ``V``) has one hidden
variable ``Z_i`` with ``K`` states per observed variable. The hidden variables form the
Chow-Liu tree of the observed ones (maximum spanning tree of pairwise mutual information):

    p(x) = sum_z  prior(z_root) * prod_{i != root} T_i(z_i | z_parent(i)) * prod_i L_i(x_i | z_i)

As a circuit this is a smooth, decomposable (structured-decomposable) PC with sum nodes of
K children per tree edge and categorical input nodes ``L_i``. Every marginal (any subset of
variables summed out) costs one upward pass: a summed-out input node evaluates to 1.

This module holds the torch side: structure learning, the vectorised upward pass (tree levels
processed in batches, log domain), and mini-batch EM whose expected flows come from autograd
(``d log p / d log theta`` is the circuit flow of parameter ``theta``). The exact, deterministic
float64 conditionals used for coding live in :mod:`models.hclt_coding`.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch
from torch import nn

__all__ = ["mutual_information", "chow_liu_tree", "preorder", "HCLT", "conditional_nll", "fit_conditional"]


def mutual_information(x: np.ndarray, alphabet: int, bins: int | None = None,
                       max_samples: int = 4000, seed: int = 0) -> np.ndarray:
    """Pairwise mutual information (nats) of the columns of ``x`` (``N x D`` ints in
    ``0..alphabet-1``), each first quantized to ``bins`` equal-width bins (default: no binning).
    Uses at most ``max_samples`` rows (random, fixed seed). Returns a ``D x D`` float64 array."""
    x = np.asarray(x)
    if x.shape[0] > max_samples:
        x = x[np.random.default_rng(seed).choice(x.shape[0], max_samples, replace=False)]
    nb = alphabet if bins is None else bins
    q = (x.astype(np.int64) * nb) // alphabet
    n, d = q.shape
    onehot = np.zeros((n, d * nb), np.float32)
    onehot[np.arange(n)[:, None], np.arange(d)[None, :] * nb + q] = 1.0
    t = torch.from_numpy(onehot)
    joint = (t.T @ t).double().numpy().reshape(d, nb, d, nb) / n
    marg = np.einsum("iaia->ia", joint)  # (d, nb)
    outer = marg[:, :, None, None] * marg[None, None, :, :]  # [i, a, j, b]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / outer), 0.0)
    mi = terms.sum(axis=(1, 3))
    np.fill_diagonal(mi, 0.0)
    return mi


def _farthest(adj: list[list[int]], src: int) -> tuple[int, list[int]]:
    """BFS from ``src``: the farthest node and the parent array."""
    par = [-2] * len(adj)
    par[src] = -1
    dq, last = deque([src]), src
    while dq:
        u = dq.popleft()
        last = u
        for v in adj[u]:
            if par[v] == -2:
                par[v] = u
                dq.append(v)
    return last, par


def chow_liu_tree(mi: np.ndarray) -> np.ndarray:
    """Maximum spanning tree of ``mi`` (Prim), rooted at its centre (smallest height).
    Returns ``parent`` (``D`` ints, -1 at the root)."""
    d = mi.shape[0]
    in_tree = np.zeros(d, bool)
    best = np.full(d, -np.inf)
    frm = np.full(d, -1)
    in_tree[0] = True
    best[:] = mi[0]
    frm[:] = 0
    adj: list[list[int]] = [[] for _ in range(d)]
    for _ in range(d - 1):
        cand = np.where(in_tree, -np.inf, best)
        v = int(np.argmax(cand))
        u = int(frm[v])
        adj[u].append(v)
        adj[v].append(u)
        in_tree[v] = True
        upd = (~in_tree) & (mi[v] > best)
        best[upd] = mi[v][upd]
        frm[upd] = v
    a, _ = _farthest(adj, 0)
    b, par = _farthest(adj, a)
    path = [b]
    while par[path[-1]] != -1:
        path.append(par[path[-1]])
    centre = path[len(path) // 2]
    _, parent = _farthest(adj, centre)
    return np.asarray(parent, np.int64)


def preorder(parent: np.ndarray) -> np.ndarray:
    """Depth-first pre-order of a tree given by ``parent`` (children in increasing index)."""
    parent = np.asarray(parent)
    children: list[list[int]] = [[] for _ in range(len(parent))]
    root = -1
    for v, p in enumerate(parent):
        if p < 0:
            root = v
        else:
            children[p].append(v)
    out, stack = [], [root]
    while stack:
        u = stack.pop()
        out.append(u)
        stack.extend(reversed(children[u]))
    return np.asarray(out, np.int64)


class HCLT(nn.Module):
    """A hidden Chow-Liu tree circuit with ``K`` hidden states and categorical leaves over
    ``V`` symbols. Parameters are kept as normalised log-probabilities:

    * ``log_prior`` (K): the root's hidden distribution,
    * ``log_trans`` (D, K, K): ``log T_i(z_i = b | z_parent = a)`` at ``[i, a, b]`` (root row unused),
    * ``log_leaf`` (D, K, V): ``log L_i(x_i = v | z_i = k)`` at ``[i, k, v]``.
    """

    def __init__(self, parent: np.ndarray, num_states: int, alphabet: int, seed: int = 0):
        super().__init__()
        parent = np.asarray(parent, np.int64)
        d = len(parent)
        self.num_vars, self.num_states, self.alphabet = d, num_states, alphabet
        self.register_buffer("parent", torch.from_numpy(parent.copy()))
        g = torch.Generator().manual_seed(seed)
        k, v = num_states, alphabet
        self.log_prior = nn.Parameter(torch.log_softmax(torch.randn(k, generator=g) * 0.1, 0))
        self.log_trans = nn.Parameter(torch.log_softmax(torch.randn(d, k, k, generator=g), -1))
        self.log_leaf = nn.Parameter(torch.log_softmax(torch.randn(d, k, v, generator=g), -1))
        self._build_levels(parent)

    # -- structure --------------------------------------------------------------------------
    def _build_levels(self, parent: np.ndarray) -> None:
        d = len(parent)
        depth = np.zeros(d, np.int64)
        for u in preorder(parent):
            if parent[u] >= 0:
                depth[u] = depth[parent[u]] + 1
        self.height = int(depth.max())
        self.levels = [torch.from_numpy(np.flatnonzero(depth == h)) for h in range(self.height + 1)]
        pos = np.zeros(d, np.int64)
        for lv in self.levels:
            pos[lv.numpy()] = np.arange(len(lv))
        # for level h >= 1: the position of each node's parent inside level h - 1
        self.parent_pos = [None] + [torch.from_numpy(pos[parent[lv.numpy()]])
                                    for lv in self.levels[1:]]
        self.root = int(self.levels[0][0])

    @classmethod
    def learn(cls, x: np.ndarray, num_states: int, alphabet: int, bins: int | None = None,
              seed: int = 0) -> "HCLT":
        """Structure from data ``x`` (``N x D`` ints): mutual information, Chow-Liu tree, then
        leaves initialised from data (per-variable histogram mixed with noise per state)."""
        parent = chow_liu_tree(mutual_information(x, alphabet, bins, seed=seed))
        model = cls(parent, num_states, alphabet, seed)
        model.init_leaves(x, seed)
        return model

    @torch.no_grad()
    def init_leaves(self, x: np.ndarray, seed: int = 0) -> None:
        """Leaf init: each hidden state's leaf is the variable's histogram of a random data
        subset (different per state), smoothed; breaks the symmetry between states."""
        rng = np.random.default_rng(seed)
        x = np.asarray(x)
        d, k, v = self.num_vars, self.num_states, self.alphabet
        leaf = np.empty((d, k, v))
        m = min(len(x), 256)
        for s in range(k):
            sub = x[rng.choice(len(x), m, replace=len(x) < m)]
            cnt = np.zeros((d, v))
            np.add.at(cnt, (np.broadcast_to(np.arange(d), sub.shape), sub), 1.0)
            leaf[:, s] = cnt + 0.5
        leaf /= leaf.sum(-1, keepdims=True)
        self.log_leaf.copy_(torch.from_numpy(np.log(leaf)).float())

    # -- evaluation -------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, observed: torch.Tensor | None = None) -> torch.Tensor:
        """``log p`` of each row of ``x`` (``B x D`` long), with the variables where
        ``observed`` (bool, ``D`` or ``B x D``) is False summed out (marginal). Differentiable."""
        b = x.shape[0]
        k = self.num_states
        acc = None  # children's messages for the level being processed, (B, n_level, K)
        dev = x.device
        for h in range(self.height, -1, -1):
            nodes = self.levels[h].to(dev)
            xs = x[:, nodes]
            lin = self.log_leaf[nodes[None, :], :, xs]  # (B, n, K)
            if observed is not None:
                obs = observed[..., nodes] if observed.dim() == 2 else observed[nodes][None]
                lin = torch.where(obs[..., None], lin, torch.zeros((), dtype=lin.dtype))
            if acc is not None:
                lin = lin + acc
            if h == 0:
                return torch.logsumexp(lin[:, 0] + self.log_prior, -1)
            m = lin.detach().amax(-1, keepdim=True)
            e = torch.exp(lin - m).transpose(0, 1)  # (n, B, K)
            trans = torch.exp(self.log_trans[nodes]).transpose(1, 2)  # (n, K_child, K_parent)
            msg = torch.log(torch.bmm(e, trans)).transpose(0, 1) + m  # (B, n, K_parent)
            acc = torch.zeros(b, len(self.levels[h - 1]), k, dtype=msg.dtype,
                              device=dev).index_add(1, self.parent_pos[h].to(dev), msg)
        raise AssertionError("unreachable")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of each row (all variables observed)."""
        return self.log_prob(x)

    # -- learning ---------------------------------------------------------------------------
    def em_step(self, x: torch.Tensor, step_size: float = 0.1, pseudocount: float = 0.1,
                observed: torch.Tensor | None = None) -> float:
        """One mini-batch EM step on batch ``x``: expected flows by autograd, then
        ``theta <- (1 - step_size) * theta + step_size * normalise(flows + pseudocount)``.
        Returns the batch's mean log-likelihood (nats) before the update."""
        params = (self.log_prior, self.log_trans, self.log_leaf)
        for p in params:
            p.grad = None
        ll = self.log_prob(x, observed)
        ll.sum().backward()
        with torch.no_grad():
            for p in params:
                flows = p.grad.clamp_min(0) + pseudocount / p.shape[-1]
                new = flows / flows.sum(-1, keepdim=True)
                mixed = (1 - step_size) * torch.exp(p) + step_size * new
                p.copy_(torch.log(mixed / mixed.sum(-1, keepdim=True)))
                p.grad = None
        return float(ll.detach().mean())

    def probabilities(self) -> dict[str, np.ndarray]:
        """The parameters as normalised float64 numpy arrays (for export and coding)."""
        out = {}
        for name in ("log_prior", "log_trans", "log_leaf"):
            p = torch.exp(getattr(self, name).detach().double().cpu()).numpy()
            out[name[4:]] = p / p.sum(-1, keepdims=True)
        out["parent"] = self.parent.cpu().numpy()
        return out


def conditional_nll(model: HCLT, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """``-log p(x_targets | x_context)`` per row (nats): the joint minus the marginal of the
    ``context`` variables (bool mask ``D``), both exact circuit evaluations."""
    return model.log_prob(x, context) - model.log_prob(x)


def fit_conditional(model: HCLT, x: torch.Tensor, context: torch.Tensor, epochs: int = 1,
                    batch: int = 4096, lr: float = 0.01, seed: int = 0,
                    callback=None) -> list[float]:
    """Gradient ascent (Adam) on the conditional log-likelihood ``log p(targets | context)``,
    the quantity the codec pays for; parameters are re-normalised after every step. Returns
    the mean training loss (bits per row) of each epoch."""
    params = [model.log_prior, model.log_trans, model.log_leaf]
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g).to(x.device)
        tot = 0.0
        for i in range(0, len(x), batch):
            xb = x[perm[i:i + batch]]
            loss = conditional_nll(model, xb, context).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p in params:
                    p.copy_(torch.log_softmax(p, -1))
            tot += float(loss.detach()) * len(xb)
            if callback is not None:
                callback()
        losses.append(tot / len(x) / float(np.log(2)))
    return losses
