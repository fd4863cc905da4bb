"""Fuzz the container reader and the rANS decoder with mutated, truncated and random files.

Every case goes through ``bitstream.unpack``, the seeking path (``key_units``) and a rANS
decode of each unit payload; anything raised other than ``FormatError`` is a failure, and so
is a case slower than ``--max-case-seconds``. Mutations with their CRCs fixed up reach the
checks behind the CRC. Writes JSON (cases, failures, slowest case, peak memory).

    python -m tools.fuzz_container -n 100000 -o results/fuzz_container.json
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import struct
import time
import traceback
import zlib
from pathlib import Path

import numpy as np

from bitstream import (ColorFormat, ContainerReader, FormatError, GaussianTables, Header,
                       RansDecoder, RansEncoder, StreamKind, UnitType, pack, unpack)

_TABLES = GaussianTables()
_N_SYMBOLS = 64


def _unit_payload(rng: np.random.Generator) -> tuple[int, bytes]:
    sym = np.rint(rng.normal(0, 3, _N_SYMBOLS)).astype(np.int32)
    enc = RansEncoder()
    enc.encode_indexed(sym, _indexes(), _TABLES)
    pmf = np.full((8, 5), 0.2)
    enc.encode_categorical(rng.integers(0, 5, 8), pmf)
    return enc.checksum, enc.flush()


def _indexes() -> np.ndarray:
    return (np.arange(_N_SYMBOLS) * 7 % len(_TABLES)).astype(np.int32)


def seeds(rng: np.random.Generator) -> list[bytes]:
    """Valid files of each kind: one image, a video with key and inter units, a lossless one."""
    out = []
    for kind, frames in ((StreamKind.IMAGE, 1), (StreamKind.VIDEO, 5), (StreamKind.LOSSLESS, 1)):
        units = []
        for i in range(frames):
            crc, payload = _unit_payload(rng)
            units.append((UnitType.KEY if i % 3 == 0 else UnitType.INTER, crc, payload))
        h = Header(kind, 64, 48, ColorFormat.YUV420 if kind == StreamKind.VIDEO else ColorFormat.RGB,
                   model_id="fuzz", quality=3.5, fps_num=30, frame_count=frames,
                   params={"intra_period": 3} if kind == StreamKind.VIDEO else {})
        out.append(pack(h, units))
    return out


def _fix_crcs(b: bytearray) -> bytes:
    """Recompute every chunk CRC that the chunk walk can reach (to get past the CRC checks):
    chunks are a varint length, a 4-byte type, the payload and the CRC (FORMAT.md)."""
    pos = 10
    while pos < len(b):
        length = shift = 0
        while pos < len(b) and shift < 35:
            length |= (b[pos] & 0x7F) << shift
            shift += 7
            pos += 1
            if not b[pos - 1] & 0x80:
                break
        end = pos + 4 + length
        if end + 4 > len(b):
            break
        struct.pack_into("<I", b, end, zlib.crc32(bytes(b[pos:end])))
        pos = end + 4
    return bytes(b)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    op = rng.integers(0, 9)
    if op == 0:  # truncate
        return bytes(b[:rng.integers(0, len(b))])
    if op == 1:  # random bytes
        return bytes(rng.integers(0, 256, rng.integers(0, 300)).astype(np.uint8))
    if op == 2:  # signature + random
        return data[:10] + bytes(rng.integers(0, 256, rng.integers(0, 200)).astype(np.uint8))
    for _ in range(rng.integers(1, 6)):
        i = int(rng.integers(0, len(b))) if b else 0
        if not b:
            break
        if op in (3, 7):
            b[i] ^= 1 << int(rng.integers(0, 8))
        elif op in (4, 8):
            b[i] = int(rng.integers(0, 256))
        elif op == 5:
            del b[i:i + int(rng.integers(1, 16))]
        else:
            b[i:i] = bytes(rng.integers(0, 256, rng.integers(1, 16)).astype(np.uint8))
    if op in (7, 8):  # interesting values in length/size fields, then valid CRCs
        if len(b) > 40 and rng.random() < 0.5:
            j = int(rng.integers(10, len(b) - 4))
            struct.pack_into("<I", b, j, int(rng.choice([0, 1, 0xFFFF, 0x10000, 2**30, 2**31, 2**32 - 1])))
        return _fix_crcs(b)
    return bytes(b)


def check(data: bytes) -> None:
    """Everything a decoder does with an untrusted file; only FormatError may escape."""
    header, units = unpack(data)
    r = ContainerReader(io.BytesIO(data))
    for idx, _ in r.key_units():
        r.seek(idx)
        next(iter(r))
    for u in units:
        dec = RansDecoder(u.payload)
        dec.decode_indexed(_indexes(), _TABLES)
        dec.decode_categorical(np.full((8, 5), 0.2))
        dec.finish()
        if dec.checksum != u.checksum:
            raise FormatError("symbol checksum mismatch")
    header.to_dict()


def fuzz(n: int, seed: int = 0, max_case_seconds: float = 1.0) -> dict:
    rng = np.random.default_rng(seed)
    base = seeds(rng)
    for s in base:
        check(s)  # the seeds themselves are valid
    failures, slowest, outcomes = [], 0.0, {"ok": 0, "FormatError": 0}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_all = time.perf_counter()
    for i in range(n):
        data = mutate(base[i % len(base)], rng)
        t = time.perf_counter()
        try:
            check(data)
            outcomes["ok"] += 1
        except FormatError:
            outcomes["FormatError"] += 1
        except Exception as e:  # noqa: BLE001 - that is what we are looking for
            if len(failures) < 20:
                failures.append({"case": i, "error": repr(e), "input_hex": data[:256].hex(),
                                 "trace": traceback.format_exc(limit=3)})
            else:
                failures.append({"case": i, "error": repr(e)})
        dt = time.perf_counter() - t
        slowest = max(slowest, dt)
        if dt > max_case_seconds:
            failures.append({"case": i, "error": f"slow case: {dt:.2f} s"})
    return {"cases": n, "seed": seed, "outcomes": outcomes, "failures": failures,
            "slowest_case_s": slowest, "total_s": time.perf_counter() - t_all,
            "peak_rss_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-case-seconds", type=float, default=1.0)
    ap.add_argument("-o", "--output", default="results/fuzz_container.json")
    args = ap.parse_args(argv)
    res = fuzz(args.n, args.seed, args.max_case_seconds)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(res, indent=1) + "\n")
    print(f"{res['cases']} cases: {res['outcomes']}, {len(res['failures'])} failures, slowest "
          f"{res['slowest_case_s'] * 1e3:.1f} ms, peak RSS growth {res['peak_rss_growth_kib']} KiB")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
