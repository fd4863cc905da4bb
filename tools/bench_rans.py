"""Entropy-coder throughput: ncodec's rANS against compressai's and constriction's, one run.

The two workloads of ../shared/anchors/ANCHORS.md:

* G: ``n`` discretised Gaussian symbols, per-symbol scale log-uniform in [0.11, 64];
* C: ``n`` 8-bit symbols, each with its own 256-entry pmf (float32, as models emit them).

Times are end to end through each library's Python API (ncodec: scale -> table index,
operation building, coding, ``bytes``; decode likewise, plus the final stream check), the
median of ``--repeats`` runs. Sizes are compared with the ideal ``-sum log2 p``. Writes JSON.

    python -m tools.bench_rans -o results/bench_rans.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from bitstream import GaussianTables, RansDecoder, RansEncoder, gaussian_pmf


def _median_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def workload_g(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(np.log(0.11), np.log(64.0), n))
    symbols = np.rint(rng.normal(0.0, scales)).astype(np.int32)
    ideal = -np.log2(gaussian_pmf(symbols, scales))
    return symbols, scales, float(ideal.sum())


def workload_c(n: int, k: int = 256, seed: int = 0, chunk: int = 1 << 16):
    """Softmax pmfs of Gaussian logits (sd 1.45, giving ~6.5 bits/symbol); symbols drawn from
    them. Returns float32 pmfs (rows sum to 1 up to float32 rounding)."""
    rng = np.random.default_rng(seed)
    pmf = np.empty((n, k), np.float32)
    symbols = np.empty(n, np.int32)
    ideal = 0.0
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        logits = rng.normal(0.0, 1.45, (b - a, k))
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        c = np.cumsum(p, 1)
        s = (c < rng.uniform(0, 1, (b - a, 1)) * c[:, -1:]).sum(1).clip(0, k - 1)
        pmf[a:b] = p
        symbols[a:b] = s
        p32 = pmf[a:b].astype(np.float64)
        ideal -= np.log2(p32[np.arange(b - a), s] / p32.sum(1)).sum()
    return symbols, pmf, float(ideal)


def _entry(n, enc_s, dec_s, nbytes, ideal_bits, **extra):
    bits = nbytes * 8
    return {"enc_s": enc_s, "dec_s": dec_s, "bytes": nbytes,
            "Msym_per_s_enc": n / enc_s / 1e6, "Msym_per_s_dec": n / dec_s / 1e6,
            "bits_per_symbol": bits / n, "overhead_vs_ideal_pct": 100 * (bits / ideal_bits - 1),
            **extra}


def bench_ncodec_g(symbols, scales, ideal, repeats):
    tables = GaussianTables()

    def enc():
        e = RansEncoder()
        e.encode_indexed(symbols, tables.index(scales), tables)
        return e.flush()

    def dec():
        d = RansDecoder(data)
        out = d.decode_indexed(tables.index(scales), tables)
        d.finish()
        return out

    data = enc()  # compile outside the timing
    dec()
    enc_s, data = _median_time(enc, repeats)
    dec_s, out = _median_time(dec, repeats)
    assert np.array_equal(out, symbols)
    idx = tables.index(scales)
    f = (tables.cdf[tables.bases[idx] + symbols - tables.offsets[idx] + 1].astype(np.int64)
         - tables.cdf[tables.bases[idx] + symbols - tables.offsets[idx]])
    table_bits = float((tables.precision - np.log2(f)).sum())
    return _entry(len(symbols), enc_s, dec_s, len(data), ideal,
                  overhead_vs_tables_used_pct=100 * (len(data) * 8 / table_bits - 1),
                  note=f"{len(tables)} log-spaced scale levels 0.11..64, {tables.precision}-bit "
                       "tables, nearest level in log scale")


def bench_ncodec_c(symbols, pmf, ideal, repeats):
    def enc():
        e = RansEncoder()
        e.encode_categorical(symbols, pmf)
        return e.flush()

    def dec():
        d = RansDecoder(data)
        out = d.decode_categorical(pmf)
        d.finish()
        return out

    data = enc()
    dec()
    enc_s, data = _median_time(enc, repeats)
    dec_s, out = _median_time(dec, repeats)
    assert np.array_equal(out, symbols)
    return _entry(len(symbols), enc_s, dec_s, len(data), ideal,
                  note="float32 pmfs quantized by bitstream.quantize_pmf at 24 bits inside "
                       "the timed calls")


def bench_compressai_g(symbols, scales, ideal, repeats):
    import torch
    from compressai.ans import RansDecoder as CDec, RansEncoder as CEnc
    from compressai.entropy_models import GaussianConditional
    from compressai.models.google import get_scale_table

    gc = GaussianConditional(None)
    gc.update_scale_table(get_scale_table())
    gc.update()
    cdf, lengths, offsets = gc.quantized_cdf.tolist(), gc.cdf_length.tolist(), gc.offset.tolist()
    t_scales = torch.from_numpy(scales.astype(np.float32))

    def enc():
        idx = gc.build_indexes(t_scales).tolist()
        return CEnc().encode_with_indexes(symbols.tolist(), idx, cdf, lengths, offsets)

    def dec():
        idx = gc.build_indexes(t_scales).tolist()
        d = CDec()
        d.set_stream(data)
        return d.decode_stream(idx, cdf, lengths, offsets)

    enc_s, data = _median_time(enc, repeats)
    dec_s, out = _median_time(dec, repeats)
    assert np.array_equal(np.asarray(out), symbols)
    return _entry(len(symbols), enc_s, dec_s, len(data), ideal,
                  note="GaussianConditional default 64-level scale table; build_indexes and "
                       "list conversion inside the timing")


def bench_compressai_c(symbols, pmf, ideal, repeats, chunk=16384):
    """compressai has no per-symbol-pmf API: one stream per chunk with per-symbol CDF lists."""
    from compressai.ans import RansDecoder as CDec, RansEncoder as CEnc

    from bitstream import quantize_pmf

    k = pmf.shape[1]

    def cdfs(a, b):
        f = quantize_pmf(pmf[a:b], 16)
        c = np.zeros((b - a, k + 2), np.int64)
        c[:, 1:k + 1] = np.cumsum(f, 1)
        c[:, k + 1] = 1 << 16  # compressai's escape slot, never used here
        c[:, k] = (1 << 16) - 1
        c[:, 1:k] = np.minimum(c[:, 1:k], (1 << 16) - 1 - np.arange(k - 1, 0, -1))
        return c.tolist()

    n = len(symbols)
    spans = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]

    def enc():
        return [CEnc().encode_with_indexes(symbols[a:b].tolist(), list(range(b - a)), cdfs(a, b),
                                           [k + 2] * (b - a), [0] * (b - a)) for a, b in spans]

    def dec():
        out = []
        for d, (a, b) in zip(data, spans):
            dec = CDec()
            dec.set_stream(d)
            out.append(dec.decode_stream(list(range(b - a)), cdfs(a, b), [k + 2] * (b - a),
                                         [0] * (b - a)))
        return np.concatenate(out)

    enc_s, data = _median_time(enc, repeats)
    dec_s, out = _median_time(dec, repeats)
    assert np.array_equal(out, symbols)
    return _entry(n, enc_s, dec_s, sum(map(len, data)), ideal,
                  note=f"one stream per {chunk} symbols; 16-bit CDFs quantized and converted "
                       "to lists inside the timing")


def bench_constriction_g(symbols, scales, ideal, repeats):
    import constriction

    model = constriction.stream.model.QuantizedGaussian(-512, 512)
    means = np.zeros(len(symbols))

    def enc():
        c = constriction.stream.stack.AnsCoder()
        c.encode_reverse(symbols, model, means, scales)
        return c.get_compressed()

    def dec():
        return constriction.stream.stack.AnsCoder(data).decode(model, means, scales)

    enc_s, data = _median_time(enc, repeats)
    dec_s, out = _median_time(dec, repeats)
    assert np.array_equal(out, symbols)
    return _entry(len(symbols), enc_s, dec_s, data.nbytes, ideal,
                  note="stack.AnsCoder, QuantizedGaussian(-512, 512), float64 means/stds")


def bench_constriction_c(symbols, pmf, ideal, repeats):
    import constriction

    model = constriction.stream.model.Categorical(perfect=False)
    p64 = pmf.astype(np.float64)
    p64 /= p64.sum(1, keepdims=True)

    def enc():
        c = constriction.stream.stack.AnsCoder()
        c.encode_reverse(symbols, model, p64)
        return c.get_compressed()

    def dec():
        return constriction.stream.stack.AnsCoder(data).decode(model, p64)

    enc_s, data = _median_time(enc, repeats)
    dec_s, out = _median_time(dec, repeats)
    assert np.array_equal(out, symbols)
    return _entry(len(symbols), enc_s, dec_s, data.nbytes, ideal,
                  note="stack.AnsCoder, Categorical(perfect=False), the same pmfs as float64 "
                       "(conversion outside the timing)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="symbols per workload")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peers", default="compressai,constriction",
                    help="comma-separated peers to time beside ncodec ('' for none)")
    ap.add_argument("-o", "--output", default="results/bench_rans.json")
    args = ap.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    res = {"n": args.n, "repeats": args.repeats, "machine": platform.processor() or platform.machine(),
           "anchors": "../shared/anchors/bench_entropy.json"}

    sym, scales, ideal = workload_g(args.n)
    g = {"ideal_bits_per_symbol": ideal / args.n, "ncodec": bench_ncodec_g(sym, scales, ideal, args.repeats)}
    for p in peers:
        g[p] = globals()[f"bench_{p}_g"](sym, scales, ideal, args.repeats)
    res["gaussian"] = g

    sym, pmf, ideal = workload_c(args.n)
    c = {"ideal_bits_per_symbol": ideal / args.n, "ncodec": bench_ncodec_c(sym, pmf, ideal, args.repeats)}
    for p in peers:
        c[p] = globals()[f"bench_{p}_c"](sym, pmf, ideal, 1 if p == "compressai" else args.repeats)
    res["categorical"] = c

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    for w in ("gaussian", "categorical"):
        for name, r in res[w].items():
            if isinstance(r, dict):
                print(f"{w:12s} {name:13s} enc {r['Msym_per_s_enc']:7.2f}  dec "
                      f"{r['Msym_per_s_dec']:7.2f} Msym/s  {r['overhead_vs_ideal_pct']:+.3f} % vs ideal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
