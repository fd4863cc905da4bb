"""``ncodec bench``: encode/decode speed and peak memory of codecs on one input, JSON out.

Works over the adapters of :mod:`tools.eval_codecs` (ncodec's own codecs and the classic
ones). Per codec and setting: size and bpp, encode and decode wall time (median of
``--repeats`` after one warm-up call), throughput in megapixels per second, and peak memory
of each operation:

* ``*_peak_rss_mb``: growth of the process's peak resident set (Linux ``VmHWM``, reset
  through ``/proc/self/clear_refs`` before each operation) over the resident set before it;
  counts native allocations (torch, codec libraries), but not memory the process already
  holds from earlier work (run one codec per process for clean numbers). ``null`` where the
  kernel lacks it.
* ``*_peak_traced_mb``: peak of Python and numpy allocations (``tracemalloc``).

Memory is measured in a separate call from timing, so tracing does not slow the timings.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
import tracemalloc
from pathlib import Path

from codec.errors import CodecError
from codec.io import write_atomic
from codec.metrics import bpp

from .eval_codecs import get_codec
from .eval_media import VIDEO_EXTS, load_image, read_clip

__all__ = ["bench", "peak_memory", "register", "run"]


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory(fn) -> tuple[object, float | None, float]:
    """``(result, peak RSS growth MB or None, peak traced MB)`` of one call of ``fn``."""
    can_rss = _reset_peak_rss()
    before = _status_kb("VmRSS") if can_rss else None
    tracemalloc.start()
    try:
        result = fn()
        _, traced = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    peak = _status_kb("VmHWM") if can_rss else None
    rss = None if before is None or peak is None else max(peak - before, 0) / 1024
    return result, rss, traced / 2**20


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up: lazy imports, model loading, caches
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(adapter, src, settings=None, repeats: int = 3) -> list[dict]:
    """Benchmark one adapter on one input (image array or :class:`Video`) at its settings."""
    video = adapter.kind == "video"
    pixels = src.width * src.height * src.frames if video else src.shape[0] * src.shape[1]
    rows = []
    for s in settings or adapter.settings:
        data, enc_rss, enc_traced = peak_memory(lambda: adapter.encode(src, s))
        _, dec_rss, dec_traced = peak_memory(lambda: adapter.decode(data))
        enc_s = _median_time(lambda: adapter.encode(src, s), repeats)
        dec_s = _median_time(lambda: adapter.decode(data), repeats)
        rows.append({"codec": adapter.name, "setting": s, "bytes": len(data),
                     "bpp": bpp(len(data), pixels), "encode_s": enc_s, "decode_s": dec_s,
                     "encode_mpix_s": pixels / enc_s / 1e6, "decode_mpix_s": pixels / dec_s / 1e6,
                     "encode_peak_rss_mb": enc_rss, "decode_peak_rss_mb": dec_rss,
                     "encode_peak_traced_mb": enc_traced, "decode_peak_traced_mb": dec_traced})
    return rows


def register(subparsers) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser("bench", help="encode/decode speed and peak memory, JSON out",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("input", help="an image file, or a video file for video codecs")
    p.add_argument("-c", "--codecs", default="ncodec",
                   help="comma-separated codec names (default: ncodec)")
    p.add_argument("--settings", action="append", default=[], metavar="[CODEC=]V1,V2,...",
                   help="settings for every codec, or for one with CODEC= (repeatable; "
                        "default: each codec's own rate points)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
    p.add_argument("--frames", type=int, default=32, help="video: frames to code (default 32)")
    p.add_argument("-o", "--output", default="-", help="JSON file (default: stdout)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=run)


def run(args) -> int:
    """Entry point of ``ncodec bench``."""
    from .evaluate import json_text, parse_value

    path = Path(args.input)
    if not path.is_file():
        raise CodecError(f"{path}: no such file")
    is_video = path.suffix.lower() in VIDEO_EXTS
    src = read_clip(path, args.frames) if is_video else load_image(path)
    chosen = {}
    for spec in args.settings:
        name, sep, values = spec.rpartition("=")
        chosen[name if sep else None] = [parse_value(v) for v in values.split(",")]
    results = []
    for name in args.codecs.split(","):
        adapter = get_codec(name.strip())
        if (adapter.kind == "video") != is_video:
            raise CodecError(f"{adapter.name} is a{'' if is_video else 'n'} "
                             f"{adapter.kind} codec; {path} is not")
        settings = chosen.get(adapter.name, chosen.get(None))
        results += bench(adapter, src, settings, args.repeats)
    shape = {"width": src.width, "height": src.height, "frames": src.frames} if is_video else \
        {"width": src.shape[1], "height": src.shape[0]}
    doc = {"input": str(path), **shape, "repeats": args.repeats,
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
           "results": results}
    write_atomic(args.output, json_text(doc).encode(), force=args.force)
    return 0
