"""The shared rANS coder: round trips, adversarial inputs, code length, robustness."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitstream import (CdfTables, FormatError, GaussianTables, RansDecoder, RansEncoder,
                       gaussian_pmf, quantize_pmf)

RNG = np.random.default_rng(1234)
GAUSS = GaussianTables()


def roundtrip(calls):
    """calls: list of ("i", symbols, indexes, tables) / ("c", symbols, pmf, precision)."""
    enc = RansEncoder()
    for c in calls:
        if c[0] == "i":
            enc.encode_indexed(c[1], c[2], c[3])
        else:
            enc.encode_categorical(c[1], c[2], c[3])
    data = enc.flush()
    dec = RansDecoder(data)
    for c in calls:
        out = dec.decode_indexed(c[2], c[3]) if c[0] == "i" else dec.decode_categorical(c[2], c[3])
        np.testing.assert_array_equal(out, np.asarray(c[1]).ravel())
    dec.finish()
    assert dec.checksum == enc.checksum
    return data


def random_pmf(n, k, sd=2.0, dtype=np.float32):
    logits = RNG.normal(0, sd, (n, k))
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(dtype)


def sample(pmf):
    c = np.cumsum(pmf.astype(np.float64), 1)
    return (c < RNG.uniform(0, 1, (len(pmf), 1)) * c[:, -1:]).sum(1).clip(0, pmf.shape[1] - 1)


def gaussian_symbols(n, lo=0.11, hi=64.0):
    scales = np.exp(RNG.uniform(np.log(lo), np.log(hi), n))
    return np.rint(RNG.normal(0, scales)).astype(np.int32), scales


def test_empty_stream():
    data = RansEncoder().flush()
    assert len(data) == 1
    RansDecoder(data).finish()
    data = roundtrip([("i", np.zeros(0, np.int32), np.zeros(0, np.int32), GAUSS),
                      ("c", np.zeros(0, np.int32), np.zeros((0, 4)), 16)])
    assert len(data) == 1


def test_single_symbol_each_path():
    roundtrip([("i", [3], [5], GAUSS)])
    roundtrip([("c", [2], [[0.1, 0.2, 0.7]], 24)])


def test_certain_symbol_costs_nothing():
    # K = 1: the only symbol has probability one and needs no bits at all
    data = roundtrip([("c", np.zeros(1000, np.int32), np.ones((1000, 1)), 24)])
    assert len(data) == 1


def test_all_identical_symbols_and_long_streams():
    n = 1_000_000
    sym = np.zeros(n, np.int32)
    data = roundtrip([("i", sym, np.full(n, 0, np.int32), GAUSS)])  # smallest scale
    # P(0) for the smallest table is close to 1: far below a bit per symbol
    assert len(data) * 8 / n < 0.01


def test_million_mixed_symbols():
    sym, scales = gaussian_symbols(600_000)
    pmf = random_pmf(400_000, 16)
    csym = sample(pmf)
    roundtrip([("i", sym[:300_000], GAUSS.index(scales[:300_000]), GAUSS),
               ("c", csym[:200_000], pmf[:200_000], 24),
               ("i", sym[300_000:], GAUSS.index(scales[300_000:]), GAUSS),
               ("c", csym[200_000:], pmf[200_000:], 12)])


def test_escapes_cover_the_int32_range():
    t = CdfTables.from_pmfs([np.array([0.5, 0.3, 0.2])], [-1], [1e-3])
    sym = np.array([-1, 0, 1, 2, -2, 1000, -1000, 2**31 - 1, -2**31, 65535, -65536], np.int32)
    roundtrip([("i", sym, np.zeros(sym.size, np.int32), t)])
    big = RNG.integers(-2**31, 2**31, 5000).astype(np.int32)
    roundtrip([("i", big, RNG.integers(0, len(GAUSS), 5000).astype(np.int32), GAUSS)])


def test_extreme_probabilities():
    k = 256
    pmf = np.full((2000, k), 1e-30)
    pmf[:, 7] = 1.0
    sym = np.full(2000, 7)
    sym[::100] = RNG.integers(0, k, 20)  # the rare ones must still be codable
    roundtrip([("c", sym, pmf, 24)])
    # zeros are allowed: every symbol keeps frequency >= 1
    pmf = np.zeros((100, 5))
    pmf[:, 0] = 1
    roundtrip([("c", np.arange(100) % 5, pmf, 16)])
    # unnormalised rows, huge and tiny magnitudes, float64
    roundtrip([("c", [0, 1, 2], np.array([[1e300, 1e300, 1.0], [3e-200, 1e-300, 0.0],
                                          [5.0, 6.0, 7.0]]), 24)])
    with pytest.raises(ValueError):  # no usable resolution left near the denormals
        quantize_pmf(np.array([[3e-300, 1e-300]]))


def test_precision_bounds():
    pmf = random_pmf(100, 4)
    for prec in (3, 16, 28):
        roundtrip([("c", sample(pmf), pmf, prec)])
    with pytest.raises(ValueError):
        RansEncoder().encode_categorical([0], [[1.0]], precision=29)
    with pytest.raises(ValueError):
        RansEncoder().encode_categorical([0], np.ones((1, 300)), precision=8)


@pytest.mark.parametrize("bad", [[[0.5, -0.1, 0.6]], [[np.nan, 1.0]], [[np.inf, 1.0]],
                                 [[0.0, 0.0]], [[-0.0, 0.0]]])
def test_invalid_pmfs_rejected(bad):
    with pytest.raises(ValueError):
        RansEncoder().encode_categorical([0], np.array(bad))
    with pytest.raises(ValueError):
        quantize_pmf(np.array(bad))


def test_symbol_and_index_validation():
    with pytest.raises(ValueError):
        RansEncoder().encode_categorical([3], [[0.5, 0.5]])
    with pytest.raises(ValueError):
        RansEncoder().encode_indexed([0], [len(GAUSS)], GAUSS)
    with pytest.raises(ValueError):
        RansEncoder().encode_indexed([0, 1], [0], GAUSS)
    with pytest.raises(ValueError):
        RansEncoder().encode_indexed([0.5], [0], GAUSS)


def test_quantize_pmf_contract():
    pmf = random_pmf(500, 37, sd=4.0)
    f = quantize_pmf(pmf, 16)
    assert f.dtype == np.int64 and f.shape == pmf.shape
    assert (f >= 1).all() and (f.sum(1) == 1 << 16).all()
    # layout independence: a transposed copy, float64 values, a slice
    np.testing.assert_array_equal(quantize_pmf(np.ascontiguousarray(pmf.T).T, 16), f)
    np.testing.assert_array_equal(quantize_pmf(pmf.astype(np.float64), 16), f)
    np.testing.assert_array_equal(quantize_pmf(pmf[100:200], 16), f[100:200])
    # the coder uses exactly these frequencies: the code length matches them
    sym = sample(pmf)
    data = roundtrip([("c", sym, pmf, 16)])
    model_bits = (16 - np.log2(f[np.arange(len(sym)), sym])).sum()
    assert abs(len(data) * 8 - model_bits) < 64


def test_categorical_code_length_near_ideal():
    pmf = random_pmf(200_000, 256, sd=2.2)
    sym = sample(pmf)
    p = pmf.astype(np.float64)
    ideal = -np.log2(p[np.arange(len(sym)), sym] / p.sum(1)).sum()
    data = roundtrip([("c", sym, pmf, 24)])
    assert len(data) * 8 < ideal * 1.001


def test_indexed_code_length_near_table_ideal():
    sym, scales = gaussian_symbols(300_000)
    idx = GAUSS.index(scales)
    data = roundtrip([("i", sym, idx, GAUSS)])
    j = GAUSS.bases[idx] + sym - GAUSS.offsets[idx]
    inside = (sym - GAUSS.offsets[idx] >= 0) & (sym - GAUSS.offsets[idx] < GAUSS.sizes[idx] - 1)
    assert inside.all()
    f = GAUSS.cdf[j + 1].astype(np.int64) - GAUSS.cdf[j]
    table_bits = (GAUSS.precision - np.log2(f)).sum()
    assert len(data) * 8 < table_bits * 1.001
    ideal = -np.log2(gaussian_pmf(sym, scales)).sum()
    assert len(data) * 8 < ideal * 1.005


def test_against_constriction():
    constriction = pytest.importorskip("constriction")
    pmf = random_pmf(50_000, 64, dtype=np.float64)
    sym = sample(pmf).astype(np.int32)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(sym, constriction.stream.model.Categorical(perfect=False),
                         pmf / pmf.sum(1, keepdims=True))
    theirs = coder.get_compressed().nbytes
    ours = len(roundtrip([("c", sym, pmf, 24)]))
    assert abs(ours - theirs) / theirs < 0.002


def test_gaussian_tables_index():
    lv = GAUSS.levels
    idx = GAUSS.index(np.array([0.0, lv[0], lv[5], lv[-1], 1e9, np.nan, -1.0]))
    np.testing.assert_array_equal(idx, [0, 0, 5, len(lv) - 1, len(lv) - 1, len(lv) - 1, 0])
    # nearest in log scale: just below / above the geometric midpoint
    mid = np.sqrt(lv[10] * lv[11])
    np.testing.assert_array_equal(GAUSS.index([mid * 0.999999, mid * 1.000001]), [10, 11])
    np.testing.assert_array_equal(GAUSS.index(np.float32([1.0])), GAUSS.index([np.float32(1.0)]))


def test_lane_modes():
    # below and above the multi-lane threshold
    for n in (100, 16383, 16384, 40000):
        sym, scales = gaussian_symbols(n)
        data = roundtrip([("i", sym, GAUSS.index(scales), GAUSS)])
        assert data[0] == (1 if n < 16384 else 4)


def test_desync_is_detected():
    pmf = random_pmf(5000, 16)
    sym = sample(pmf)
    enc = RansEncoder()
    enc.encode_categorical(sym, pmf)
    data = enc.flush()
    wrong = pmf.copy()
    wrong[:, 0] *= 1.5  # a decoder whose probabilities drifted
    dec = RansDecoder(data)
    out = dec.decode_categorical(wrong)
    assert dec.checksum != enc.checksum or not np.array_equal(out, sym)
    with pytest.raises(FormatError):
        dec.finish()


def test_truncated_and_random_streams_never_crash():
    sym, scales = gaussian_symbols(30000)
    idx = GAUSS.index(scales)
    enc = RansEncoder()
    enc.encode_indexed(sym, idx, GAUSS)
    data = enc.flush()
    streams = [data[:n] for n in (0, 1, 2, 9, 33, len(data) // 2, len(data) - 1)]
    streams += [bytes(RNG.integers(0, 256, RNG.integers(1, 400)).astype(np.uint8))
                for _ in range(200)]
    streams += [bytes([1]) + bytes(RNG.integers(0, 256, 50).astype(np.uint8)) for _ in range(100)]
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    streams.append(bytes(flipped))
    for s in streams:
        try:
            d = RansDecoder(s)
            d.decode_indexed(idx[:2000], GAUSS)
            d.decode_categorical(random_pmf(100, 8))
            d.finish()
        except FormatError:
            pass


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("i"), st.lists(st.integers(-300, 300), max_size=50),
              st.integers(0, len(GAUSS) - 1)),
    st.tuples(st.just("c"), st.integers(1, 40), st.integers(0, 60), st.integers(8, 28),
              st.integers(0, 2**31 - 1))), max_size=8))
def test_property_any_call_sequence_roundtrips(spec):
    calls = []
    for c in spec:
        if c[0] == "i":
            sym = np.array(c[1], np.int32)
            calls.append(("i", sym, np.full(sym.size, c[2], np.int32), GAUSS))
        else:
            _, k, n, prec, seed = c
            if k > (1 << prec) // 2:
                continue
            r = np.random.default_rng(seed)
            pmf = r.dirichlet(np.full(k, 0.3), n) if n else np.zeros((0, k))
            pmf[r.random(pmf.shape) < 0.2] = 0.0
            pmf[:, 0] += 1e-9
            sym = np.array([r.choice(k, p=p / p.sum()) for p in pmf], np.int32)
            calls.append(("c", sym, pmf, prec))
    roundtrip(calls)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_subnormal=False), min_size=1, max_size=70),
       st.integers(7, 28))
def test_property_quantize_pmf(p, prec):
    p = np.array([p])
    if p.max() < 1e-280 or p.shape[1] > (1 << prec) // 2:  # documented limits
        return
    f = quantize_pmf(p, prec)
    assert (f >= 1).all() and f.sum() == 1 << prec


def test_streams_identical_across_thread_counts():
    """Encoding with 1 and 2 numba threads gives the same bytes (quantization, table indexes)."""
    script = (
        "import numpy as np, sys, hashlib\n"
        "from bitstream import GaussianTables, RansEncoder\n"
        "r = np.random.default_rng(5)\n"
        "t = GaussianTables()\n"
        "s = np.exp(r.uniform(-2, 4, 50000)); y = np.rint(r.normal(0, s)).astype(np.int32)\n"
        "p = r.dirichlet(np.full(40, 0.5), 50000).astype(np.float32)\n"
        "e = RansEncoder(); e.encode_indexed(y, t.index(s), t)\n"
        "e.encode_categorical(p.argmax(1), p); sys.stdout.write(hashlib.sha256(e.flush()).hexdigest())\n")
    digests = set()
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                           cwd=Path(__file__).resolve().parents[1])
        assert r.returncode == 0, r.stderr
        digests.add(r.stdout)
    assert len(digests) == 1


def test_bench_rans_tool_runs(tmp_path):
    pytest.importorskip("constriction")
    from tools.bench_rans import main as bench

    out = tmp_path / "b.json"
    assert bench(["-n", "3000", "--repeats", "1", "--peers", "constriction", "-o", str(out)]) == 0
    import json

    r = json.loads(out.read_text())
    for w in ("gaussian", "categorical"):
        assert set(r[w]) >= {"ncodec", "constriction", "ideal_bits_per_symbol"}
        assert r[w]["ncodec"]["overhead_vs_ideal_pct"] < 2.0
