"""Hidden Chow-Liu tree circuits: structure, exact marginals, EM, and the coding conditionals."""
import itertools

import numpy as np
import pytest
import torch

from models.circuits import HCLT, chow_liu_tree, conditional_nll, mutual_information, preorder
from models.hclt_coding import CircuitTables, dequantize


def _chain_data(n=3000, d=6, v=4, seed=0):
    """Markov chain x0 -> x1 -> ... : the Chow-Liu tree must be the chain."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, d), np.int64)
    x[:, 0] = rng.integers(0, v, n)
    for i in range(1, d):
        keep = rng.random(n) < 0.85
        x[:, i] = np.where(keep, x[:, i - 1], rng.integers(0, v, n))
    return x


def _tiny(seed=0, d=4, k=2, v=3):
    parent = np.array([-1, 0, 0, 1][:d])
    return HCLT(parent, k, v, seed=seed)


def test_chow_liu_recovers_chain():
    x = _chain_data()
    parent = chow_liu_tree(mutual_information(x, 4))
    edges = {tuple(sorted((i, int(p)))) for i, p in enumerate(parent) if p >= 0}
    assert edges == {(i, i + 1) for i in range(5)}
    assert (parent < 0).sum() == 1
    assert sorted(preorder(parent)) == list(range(6))


def test_joint_sums_to_one_and_marginals_are_exact():
    m = _tiny()
    allx = torch.tensor(list(itertools.product(range(3), repeat=4)))
    with torch.no_grad():
        p = torch.exp(m(allx).double())
        assert abs(float(p.sum()) - 1) < 1e-5
        obs = torch.tensor([True, False, True, False])
        marg = torch.exp(m.log_prob(allx, obs).double())
        # brute force: sum the joint over the unobserved variables
        key = allx[:, 0] * 3 + allx[:, 2]
        brute = torch.zeros(9, dtype=torch.float64).index_add(0, key, p)
        assert torch.allclose(marg, brute[key], atol=1e-6)


def test_em_increases_likelihood():
    x = torch.from_numpy(_chain_data(d=6))
    m = HCLT.learn(x.numpy(), 4, 4)
    before = float(m(x).detach().mean())
    for _ in range(10):
        m.em_step(x, 0.5)
    assert float(m(x).detach().mean()) > before + 0.1


def _tables(m: HCLT) -> CircuitTables:
    p = m.probabilities()
    return CircuitTables(p["parent"], p["prior"], p["trans"], p["leaf"])


def test_efficient_conditionals_match_naive_and_joint():
    torch.manual_seed(0)
    m = HCLT.learn(_chain_data(d=6), 3, 4, seed=1)
    t = _tables(m)
    x = _chain_data(n=5, d=6, seed=3)
    eff, naive = t.conditionals(x), t.naive_conditionals(x)
    eff, naive = eff / eff.sum(-1, keepdims=True), naive / naive.sum(-1, keepdims=True)
    assert np.allclose(eff, naive, rtol=0, atol=1e-12)
    # chain rule: the product of the conditionals is the joint
    ll = np.log(np.take_along_axis(eff, x[:, t.order][:, :, None], 2)).sum((1, 2))
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).double().numpy()
    assert np.allclose(ll, ref, atol=1e-4)


def test_sequential_decoder_is_bit_identical():
    m = HCLT.learn(_chain_data(d=6), 3, 4, seed=2)
    t = _tables(m)
    x = _chain_data(n=7, d=6, seed=4)
    pmf = t.conditionals(x)
    seq = t.sequential(len(x))
    for i in range(t.num_vars):
        assert np.array_equal(seq.pmfs(i), pmf[:, i])
        seq.observe(i, x[:, t.order[i]])


def test_query_is_the_exact_conditional():
    m = _tiny(seed=3)
    t = _tables(m)
    allx = torch.tensor(list(itertools.product(range(3), repeat=4)))
    with torch.no_grad():
        p = torch.exp(m(allx).double()).numpy().reshape(3, 3, 3, 3)
    x = np.array([[2, 0, 1, 0]])
    observed = np.array([True, False, True, False])
    q = t.query(x, observed, 3)[0]
    brute = p[2, :, 1, :].sum(0)
    assert np.allclose(q / q.sum(), brute / brute.sum(), atol=1e-6)
    # conditional_nll agrees with the query (target 3 given 0 and 2; variable 1 summed out)
    ctx = torch.tensor([True, False, True, False])
    with torch.no_grad():
        nll = conditional_nll(m, torch.tensor([[2, 0, 1, 1]]), ctx)  # joint over {0,2,3}, 1 observed
    assert torch.isfinite(nll).all()


def test_dequantize_is_normalised_and_exact_powers():
    q = np.array([[0, 8, 16, 255], [3, 3, 3, 3]], np.uint8)
    p = dequantize(q)
    assert np.allclose(p.sum(-1), 1)
    assert p[0, 0] / p[0, 1] == 2.0 and p[0, 1] / p[0, 2] == 2.0
    assert np.all(p[1] == 0.25)


@pytest.mark.parametrize("k", [1, 2])
def test_conditionals_independent_of_batch_layout(k):
    m = HCLT.learn(_chain_data(d=6), 4, 4, seed=k)
    t = _tables(m)
    x = _chain_data(n=6, d=6, seed=9)
    whole = t.conditionals(x)
    parts = np.concatenate([t.conditionals(x[i:i + k]) for i in range(0, 6, k)])
    assert np.array_equal(whole, parts)


def test_adaptive_leaf_learns_the_coded_data_and_stays_normalised():
    from models.hclt_coding import AdaptiveLeaf

    m = HCLT.learn(_chain_data(d=6), 3, 4, seed=5)
    t = _tables(m)
    x = _chain_data(n=400, d=6, seed=6)
    x[:, 2] = 3  # the coded data always shows symbol 3 for variable 2
    observed = np.ones(6, bool)
    observed[2] = False
    leaf = AdaptiveLeaf(t, 2, strength=8.0, decay=0.99)
    first = None
    for i in range(0, 400, 50):
        rows, (us, vs) = t.query(x[i:i + 50], observed, 2, leaf, weights=True)
        p3 = (rows[:, 3] / rows.sum(1)).mean()
        first = p3 if first is None else first
        leaf.update(us, vs, x[i:i + 50, 2])
        assert np.allclose(leaf.leaf.sum(1), 1)
    assert p3 > max(first, 0.9)
