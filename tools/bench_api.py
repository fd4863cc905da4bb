"""Overhead of the Python API (``ImageCodec.encode`` / ``decode`` with numpy, PIL and torch
images) over the raw model path, on the Kodak images; JSON out.

    python -m tools.bench_api [--kodak DIR] [--images N] [--repeats R] [--quality Q]

The *raw model path* is what a caller of :mod:`models.image` must do at least: the image as
a padded float tensor -> ``analysis`` -> ``compress_latent`` into a rANS encoder -> payload
bytes; and payload -> ``decompress_latent`` -> ``synthesis`` -> float tensor. The API adds
input conversion and checks (:mod:`codec.convert`), the container (header, CRCs, weights
digest, symbol checksum) and output conversion (8-bit rounding, PIL image or tensor). Per
image, every operation is timed ``--repeats`` times (median), after one warm-up image; the
report gives the median over images of the times and of the per-image overhead (API minus
raw), in ms. Because end-to-end differences of a few ms drown in the noise of a loaded CPU,
the extra steps are also timed on their own (``components_ms``: median of 20 calls each).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bitstream import RansDecoder, RansEncoder, unpack
from codec.convert import from_array
from codec.image import PAD, ImageCodec
from codec.io import write_atomic

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"
FORMS = ("numpy", "pil", "torch")


def _ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def raw_encode(ic: ImageCodec, a: np.ndarray, q: float) -> bytes:
    """The raw model path of an encoder: image -> padded tensor -> latent -> rANS payload."""
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0
    h, w = a.shape[:2]
    x = torch.nn.functional.pad(x, (0, (-w) % PAD, 0, (-h) % PAD), mode="replicate")
    enc = RansEncoder()
    with torch.no_grad():
        ic.model.compress_latent(ic.model.analysis(x, q), enc, ic.tables)
    return enc.flush()


def raw_decode(ic: ImageCodec, payload: bytes, h: int, w: int, q: float) -> torch.Tensor:
    """The raw model path of a decoder: rANS payload -> latent -> float image tensor."""
    dec = RansDecoder(payload)
    with torch.no_grad():
        r = ic.model.decompress_latent(dec, ic.tables, (h + (-h) % PAD) // 16, (w + (-w) % PAD) // 16)
        dec.finish()
        return ic.model.synthesis(r["y_rec"], q)[:, :, :h, :w]


def _inputs(a: np.ndarray) -> dict[str, Any]:
    return {"numpy": a, "pil": Image.fromarray(a),
            "torch": torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0}


def bench_image(ic: ImageCodec, a: np.ndarray, q: float, repeats: int) -> dict[str, Any]:
    """Times (ms) of the raw path and of the API with every input / output form on one image."""
    h, w = a.shape[:2]
    q = float(np.float32(q))
    data = ic.encode(a, quality=q)
    payload = raw_encode(ic, a, q)
    if unpack(data)[1][0].payload != payload:
        raise RuntimeError("the raw path does not produce the API's payload")
    inputs = _inputs(a)
    enc = {"raw": _ms(lambda: raw_encode(ic, a, q), repeats)}
    enc.update({f: _ms(lambda: ic.encode(inputs[f], quality=q), repeats) for f in FORMS})
    dec = {"raw": _ms(lambda: raw_decode(ic, payload, h, w, q), repeats)}
    dec.update({f: _ms(lambda: ic.decode(data, output=f), repeats) for f in FORMS})
    return {"bytes": len(data), "encode": enc, "decode": dec}


def components(ic: ImageCodec, a: np.ndarray, q: float, calls: int = 20) -> dict[str, float]:
    """The API's extra steps timed on their own (ms, median of ``calls``)."""
    h, w = a.shape[:2]
    q = float(np.float32(q))
    data = ic.encode(a, quality=q)
    unit = unpack(data)[1][0]
    x_hat = raw_decode(ic, unit.payload, h, w, q)
    inputs = _inputs(a)
    out: dict[str, float] = {f"input_{f}": _ms(lambda: ic._check_image(inputs[f]), calls)
                             for f in FORMS}
    out["container_pack"] = _ms(lambda: ic._container(unit.payload, unit.checksum, h, w, q), calls)
    out["container_unpack"] = _ms(lambda: unpack(data), calls)
    out["output_uint8"] = _ms(lambda: ic._to_image(x_hat, h, w), calls)
    u8 = ic._to_image(x_hat, h, w)
    for f in ("pil", "torch"):
        out[f"output_{f}_from_uint8"] = _ms(lambda: from_array(u8, f), calls)
    return out


def _median_of(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], float]) -> float:
    return round(statistics.median(key(r) for r in rows), 3)


def run(kodak: Path, images: int, repeats: int, quality: float) -> dict[str, Any]:
    files = sorted(kodak.glob("*.png"))[:images]
    if not files:
        raise SystemExit(f"no Kodak images in {kodak}")
    ic = ImageCodec()
    load = os.getloadavg()
    arrays = [np.array(Image.open(f).convert("RGB")) for f in files]
    bench_image(ic, arrays[0], quality, 1)  # warm-up (first-call costs of torch and numba)
    rows = []
    for f, a in zip(files, arrays):
        r = bench_image(ic, a, quality, repeats)
        r["image"] = f.name
        rows.append(r)
        print(f"{f.name}: encode raw {r['encode']['raw']:.0f} ms, numpy {r['encode']['numpy']:.0f} ms;"
              f" decode raw {r['decode']['raw']:.0f} ms, numpy {r['decode']['numpy']:.0f} ms", flush=True)
    comp = components(ic, arrays[0], quality)
    result: dict[str, Any] = {
        "what": "ImageCodec API vs raw model path (tools/bench_api.py docstring)",
        "images": [r["image"] for r in rows], "size": f"{arrays[0].shape[1]}x{arrays[0].shape[0]}",
        "quality": quality, "repeats": repeats, "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_version()}, "
                   f"torch {torch.__version__}",
        "load_average": {"start": [round(v, 2) for v in load],
                         "end": [round(v, 2) for v in os.getloadavg()]},
    }
    for op in ("encode", "decode"):
        result[f"{op}_ms"] = {k: _median_of(rows, lambda r, k=k: r[op][k]) for k in ("raw",) + FORMS}
        result[f"{op}_overhead_ms"] = {
            f: _median_of(rows, lambda r, f=f: r[op][f] - r[op]["raw"]) for f in FORMS}
        result[f"{op}_overhead_pct"] = {
            f: _median_of(rows, lambda r, f=f: 100.0 * (r[op][f] / r[op]["raw"] - 1.0)) for f in FORMS}
    result["components_ms"] = {k: round(v, 3) for k, v in comp.items()}
    result["per_image"] = rows
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--quality", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default); 1 gives stable timings on a busy CPU, "
                        "where a 2-thread pool waits on descheduled workers")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "api_overhead.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args.kodak, args.images, args.repeats, args.quality)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, (json.dumps(result, indent=1) + "\n").encode(), force=True)
    summary = {k: v for k, v in result.items() if k.endswith(("_ms", "_pct"))}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
