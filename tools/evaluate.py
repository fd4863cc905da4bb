"""``ncodec eval``: rate-distortion evaluation of ncodec and the classic codecs.

Input: a folder of images or video clips, one file, or a named set under
``../shared/datasets`` (``kodak``, ``video``, ...). Every codec runs at each of its settings
on every input; per input and setting it records the real file/bitstream size (bpp from
:func:`codec.metrics.bpp`), PSNR (RGB; for video also Y, U, V and (6Y+U+V)/8), MS-SSIM (RGB)
and encode/decode wall time (median of ``--repeats``). Results are cached per input and
setting under the cache folder, so an interrupted run resumes where it stopped.

Outputs in ``--out``: ``<codec>.json`` per codec (CompressAI format: ``name``,
``description``, ``results`` with ``psnr-rgb``, ``ms-ssim-rgb``, ``bpp``, ``encoding_time``,
``decoding_time``, one entry per setting, averaged over inputs), ``per_image.csv`` or
``per_clip.csv``, ``bd_rate.json`` (BD-rate of every codec against ``--reference``; with
several references, ``bd_rate_vs`` holds the table against each), ``rd.png``
and ``table.md`` (the README table), ``meta.json`` (versions, command, inputs).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from codec.errors import CodecError
from codec.io import write_atomic
from codec.metrics import bpp, ms_ssim, ms_ssim_db, psnr, psnr_yuv

from .bdrate import METHODS, bd_rate, quality_at_rate
from .eval_codecs import default_codecs, get_codec
from .eval_media import file_digest, load_image, read_clip, resolve_inputs, yuv420_to_rgb

__all__ = ["measure_image", "measure_video", "evaluate", "summarize", "bd_table",
           "write_outputs", "register", "run"]

IMAGE_METRICS = ("bpp", "psnr_rgb", "ms_ssim_rgb", "enc_s", "dec_s")
VIDEO_METRICS = ("bpp", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb", "ms_ssim_rgb",
                 "enc_s", "dec_s", "enc_fps", "dec_fps")


@contextlib.contextmanager
def _one_torch_thread():
    """Metrics run with one torch thread: on a busy machine, multi-threaded small convolutions
    (MS-SSIM) spin and run ~10x slower; the codecs under test keep their own threading."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _timed(fn, repeats: int):
    """(result of the first call, median wall time over ``repeats`` calls)."""
    times, result = [], None
    for i in range(max(1, repeats)):
        t = time.perf_counter()
        r = fn()
        times.append(time.perf_counter() - t)
        if i == 0:
            result = r
    return result, statistics.median(times)


def measure_image(adapter, setting, img: np.ndarray, repeats: int = 1,
                  with_msssim: bool = True) -> dict:
    """Encode + decode one image at one setting; the record of sizes, metrics and times."""
    data, enc_s = _timed(lambda: adapter.encode(img, setting), repeats)
    rec, dec_s = _timed(lambda: adapter.decode(data), repeats)
    rec = np.asarray(rec)
    if rec.shape != img.shape or rec.dtype != np.uint8:
        raise CodecError(f"{adapter.name}: decoded {rec.shape} {rec.dtype}, "
                         f"expected {img.shape} uint8")
    h, w = img.shape[:2]
    with _one_torch_thread():
        ms = ms_ssim(img, rec) if with_msssim else math.nan
    return {"width": w, "height": h, "bytes": len(data), "bpp": bpp(len(data), h * w),
            "psnr_rgb": psnr(img, rec), "ms_ssim_rgb": ms,
            "exact": bool(np.array_equal(img, rec)), "enc_s": enc_s, "dec_s": dec_s}


def measure_video(adapter, setting, video, ref_rgb: np.ndarray | None = None,
                  repeats: int = 1, with_msssim: bool = True) -> dict:
    """Encode + decode one clip at one setting; per-frame PSNRs averaged over frames.

    ``ref_rgb`` is the clip in RGB (:func:`tools.eval_media.yuv420_to_rgb`), computed once
    per clip by the caller; the decoded frames go through the same conversion."""
    data, enc_s = _timed(lambda: adapter.encode(video, setting), repeats)
    dec, dec_s = _timed(lambda: adapter.decode(data), repeats)
    if dec.frames != video.frames or dec.y.shape != video.y.shape:
        raise CodecError(f"{adapter.name}: decoded {dec.frames} frames of {dec.y.shape[1:]}, "
                         f"expected {video.frames} of {video.y.shape[1:]}")
    if ref_rgb is None:
        ref_rgb = yuv420_to_rgb(video.y, video.u, video.v, video.full_range)
    per = {k: [] for k in ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb", "ms_ssim_rgb")}
    for t in range(video.frames):
        p = psnr_yuv((video.y[t], video.u[t], video.v[t]), (dec.y[t], dec.u[t], dec.v[t]))
        for k in "yuv":
            per[f"psnr_{k}"].append(p[k])
        per["psnr_yuv"].append(p["yuv"])
        rgb = yuv420_to_rgb(dec.y[t], dec.u[t], dec.v[t], video.full_range)
        per["psnr_rgb"].append(psnr(ref_rgb[t], rgb))
        with _one_torch_thread():
            per["ms_ssim_rgb"].append(ms_ssim(ref_rgb[t], rgb) if with_msssim else math.nan)
    n = video.frames
    rec = {"width": video.width, "height": video.height, "frames": n, "bytes": len(data),
           "bpp": bpp(len(data), video.width * video.height * n),
           **{k: float(np.mean(v)) for k, v in per.items()},
           "enc_s": enc_s, "dec_s": dec_s, "enc_fps": n / enc_s, "dec_fps": n / dec_s,
           "per_frame": {k: [round(x, 4) for x in v] for k, v in per.items()
                         if not (k == "ms_ssim_rgb" and not with_msssim)}}
    return rec


class ResultCache:
    """One JSON file per (codec configuration, setting, input, options) under ``root``."""

    def __init__(self, root: Path | None):
        self.root = Path(root) if root else None

    def _path(self, adapter, setting, item: str, digest: str, options: dict) -> Path:
        key = json.dumps([adapter.signature(), repr(setting), digest, options], sort_keys=True)
        h = hashlib.sha256(key.encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{item}.{setting}")
        return self.root / adapter.name / f"{safe}.{h}.json"

    def get(self, *key) -> dict | None:
        if self.root is None:
            return None
        p = self._path(*key)
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def put(self, record: dict, *key) -> None:
        if self.root is not None:
            p = self._path(*key)
            p.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(p, json_text(record).encode(), force=True)


def _clean(x):
    """JSON-safe copy: non-finite floats become null (strict JSON has no inf/nan)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        return _clean(x.item())
    return x


def json_text(obj) -> str:
    """Strict JSON (non-finite floats as null), indented, newline-terminated."""
    return json.dumps(_clean(obj), indent=1, allow_nan=False) + "\n"


def _num(v):
    return math.nan if v is None else v


def evaluate(kind: str, files: list[Path], adapters: list, repeats: int = 1,
             cache: ResultCache | None = None, frames: int = 96, with_msssim: bool = True,
             progress: bool = True) -> list[dict]:
    """Run every adapter at every setting on every input; one record per (codec, setting,
    input), in that order, each with ``codec``, ``setting`` and ``item`` keys added."""
    from tqdm import tqdm

    cache = cache or ResultCache(None)
    options = {"frames": frames, "msssim": with_msssim} if kind == "video" else \
        {"msssim": with_msssim}
    total = len(files) * sum(len(a.settings) for a in adapters)
    names = [f.name for f in files]
    if len(set(names)) < len(names):  # same name in two folders: use relative paths
        root = os.path.commonpath([str(f.resolve()) for f in files])
        names = [os.path.relpath(f.resolve(), root) for f in files]
    records: dict[tuple, dict] = {}
    with tqdm(total=total, disable=not progress, unit="enc", desc="ncodec eval") as bar:
        for f, item in zip(files, names):
            digest, src, ref_rgb = file_digest(f), None, None
            for a in adapters:
                for s in a.settings:
                    key = (a, s, item, digest, options)
                    rec = cache.get(*key)
                    if rec is None:
                        if src is None:
                            src = load_image(f) if kind == "image" else read_clip(f, frames)
                            if kind == "video":
                                ref_rgb = yuv420_to_rgb(src.y, src.u, src.v, src.full_range)
                        bar.set_postfix_str(f"{a.name} {s} {item}")
                        rec = measure_image(a, s, src, repeats, with_msssim) if kind == "image" \
                            else measure_video(a, s, src, ref_rgb, repeats, with_msssim)
                        cache.put(rec, *key)
                    records[(a.name, repr(s), item)] = {"codec": a.name, "setting": s,
                                                        "item": item, **rec}
                    bar.update()
    return [records[(a.name, repr(s), item)] for a in adapters for s in a.settings
            for item in names]


def _mean(values) -> float:
    v = [_num(x) for x in values]
    return float(np.mean(v)) if v else math.nan


def summarize(records: list[dict], metrics: tuple) -> dict:
    """``{codec: {"points": [{setting, <metric means>, n}], "items": {item: [per setting]}}}``:
    metrics averaged over inputs per setting (PSNR: mean of per-input PSNRs)."""
    out: dict = {}
    for r in records:
        c = out.setdefault(r["codec"], {"points": {}, "items": {}})
        c["points"].setdefault(repr(r["setting"]), {"setting": r["setting"], "recs": []})["recs"].append(r)
        c["items"].setdefault(r["item"], []).append(r)
    for c in out.values():
        points = []
        for p in c["points"].values():
            recs = p.pop("recs")
            p.update({m: _mean(r.get(m) for r in recs) for m in metrics})
            p["exact"] = all(r.get("exact", False) for r in recs)
            p["n"] = len(recs)
            points.append(p)
        c["points"] = points
    return out


def _db(v: float) -> float:
    return ms_ssim_db(v) if math.isfinite(v) else math.nan


def bd_table(summary: dict, reference: str, qualities: tuple, rate_range, methods=METHODS,
             items: bool = False) -> dict:
    """BD-rate (%) of every lossy codec against ``reference``, per quality metric and method:
    ``{codec: {"<metric>_<method>": value}}``; MS-SSIM is compared in dB. With ``items``,
    one BD-rate per input (clip) and their mean (``"<metric>_<method>_mean"``) instead."""
    ref = summary[reference]

    def curve(entries, q):
        conv = _db if q == "ms_ssim_rgb" else float
        return [e["bpp"] for e in entries], [conv(_num(e[q])) for e in entries]

    def one(a, b, q, m):
        try:
            return bd_rate(*curve(a, q), *curve(b, q), method=m, rate_range=rate_range)
        except ValueError:
            return math.nan

    table = {}
    for name, c in summary.items():
        if all(p["exact"] for p in c["points"]):
            continue
        row = {}
        for q in qualities:
            for m in methods:
                if items:
                    per = {i: one(ref["items"][i], c["items"][i], q, m)
                           for i in c["items"] if i in ref["items"]}
                    row[f"{q}_{m}"] = per
                    row[f"{q}_{m}_mean"] = _mean(per.values())
                else:
                    row[f"{q}_{m}"] = one(ref["points"], c["points"], q, m)
        table[name] = row
    return table


# ------------------------------------------------------------------------------- outputs
def _compressai_json(name: str, description: str, points: list[dict], kind: str) -> dict:
    results = {"psnr-rgb": [p["psnr_rgb"] for p in points],
               "ms-ssim-rgb": [p["ms_ssim_rgb"] for p in points],
               "bpp": [p["bpp"] for p in points],
               "encoding_time": [p["enc_s"] for p in points],
               "decoding_time": [p["dec_s"] for p in points]}
    if kind == "video":
        for k in ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv"):
            results[k.replace("_", "-")] = [p[k] for p in points]
    results["setting"] = [p["setting"] for p in points]
    return {"name": name, "description": description, "results": results}


def _per_item(recs: list[dict], metrics: tuple) -> dict:
    """One input's records as ``{"setting": [...], metric: [...]}`` plus its size."""
    first = recs[0]
    return {**{k: first[k] for k in ("width", "height", "frames") if k in first},
            "setting": [r["setting"] for r in recs], "bytes": [r["bytes"] for r in recs],
            **{m: [r[m] for r in recs] for m in metrics}}


def _csv(records: list[dict], metrics: tuple) -> bytes:
    cols = ["codec", "setting", "item", "width", "height"] + \
        (["frames"] if "frames" in records[0] else []) + ["bytes", *metrics, "exact"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in records:
        w.writerow([("" if r.get(c) is None else
                     f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in cols])
    return buf.getvalue().encode()


def _fmt(v, spec: str, empty: str = "-") -> str:
    return empty if v is None or (isinstance(v, float) and not math.isfinite(v)) else \
        format(v, spec)


def _nearest(points: list[dict], target: float) -> dict:
    return min(points, key=lambda p: abs(math.log(p["bpp"] / target)) if p["bpp"] > 0 else 1e9)


def image_table(summary: dict, bd: dict, reference: str, method: str) -> str:
    """Markdown tables (lossy and lossless) for the README."""
    lines = [f"| codec | PSNR @0.25 | @0.5 | @1.0 bpp | MS-SSIM @0.5 | BD-rate PSNR | "
             f"BD-rate MS-SSIM | enc / dec ms @~0.5 bpp |", "|---|---|---|---|---|---|---|---|"]
    lossless = []
    for name, c in summary.items():
        pts = c["points"]
        if all(p["exact"] for p in pts):
            lossless.append((name, pts[0]))
            continue
        r, q = [p["bpp"] for p in pts], [p["psnr_rgb"] for p in pts]
        at = [quality_at_rate(r, q, t) for t in (0.25, 0.5, 1.0)]
        ms = quality_at_rate(r, [_num(p["ms_ssim_rgb"]) for p in pts], 0.5)
        near = _nearest(pts, 0.5)
        row = bd.get(name, {})
        lines.append(
            f"| {name} | {' | '.join(_fmt(a, '.2f') for a in at)} | "
            f"{_fmt(ms, '.4f')} | {_fmt(row.get(f'psnr_rgb_{method}'), '+.1f')} % | "
            f"{_fmt(row.get(f'ms_ssim_rgb_{method}'), '+.1f')} % | "
            f"{near['enc_s'] * 1e3:.1f} / {near['dec_s'] * 1e3:.1f} |")
    text = "\n".join(lines) + "\n"
    if lossless:
        text += "\n| lossless codec | bpp | bit-exact | enc / dec ms per image |\n|---|---|---|---|\n"
        for name, p in lossless:
            text += (f"| {name} | {p['bpp']:.3f} | {'yes' if p['exact'] else 'NO'} "
                     f"| {p['enc_s'] * 1e3:.1f} / {p['dec_s'] * 1e3:.1f} |\n")
    text += (f"\nBD-rate vs {reference} ({method} on log-rate; negative = fewer bits at equal "
             "quality). Times: wall clock on this machine, median of the repeats.\n")
    return text


def vs_table(vs: dict, kind: str, method: str) -> str:
    """Markdown matrix: BD-rate of every codec (rows) against every reference (columns)."""
    refs = list(vs)
    if kind == "image":
        label, keys = "PSNR / MS-SSIM", (f"psnr_rgb_{method}", f"ms_ssim_rgb_{method}")
    else:
        label, keys = "YUV-PSNR (mean over clips)", (f"psnr_yuv_{method}_mean",)
    lines = [f"\n| BD-rate {label} vs | {' | '.join(refs)} |", "|---" * (len(refs) + 1) + "|"]
    for name in vs[refs[0]]:
        cells = [" / ".join(_fmt(vs[r].get(name, {}).get(k), "+.1f") for k in keys) + " %"
                 for r in refs]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def video_table(summary: dict, bd: dict, reference: str, method: str) -> str:
    """Markdown table: per clip and codec, bpp / YUV-PSNR / encode fps ranges and BD-rate."""
    lines = ["| clip | codec | bpp | YUV-PSNR dB | RGB-PSNR dB | enc fps | "
             f"BD-rate YUV-PSNR vs {reference} | BD-rate RGB-PSNR |", "|---|---|---|---|---|---|---|---|"]
    items = sorted({i for c in summary.values() for i in c["items"]})
    for item in items:
        for name, c in summary.items():
            recs = c["items"].get(item)
            if not recs:
                continue
            rng = lambda k, f: f"{min(r[k] for r in recs):{f}}-{max(r[k] for r in recs):{f}}"  # noqa: E731
            fps = min(r["enc_fps"] for r in recs)  # learned codecs run under 1 fps here
            fps_f = ".2f" if fps < 1 else ".1f" if fps < 10 else ".0f"
            row = bd.get(name, {})
            by = lambda q: (row.get(f"{q}_{method}") or {}).get(item)  # noqa: E731
            lines.append(f"| {item} | {name} | {rng('bpp', '.3f')} | {rng('psnr_yuv', '.1f')} | "
                         f"{rng('psnr_rgb', '.1f')} | {rng('enc_fps', fps_f)} | "
                         f"{_fmt(by('psnr_yuv'), '+.1f')} % | {_fmt(by('psnr_rgb'), '+.1f')} % |")
    lines.append("")
    lines.append("| codec | mean BD-rate YUV-PSNR | mean BD-rate RGB-PSNR |")
    lines.append("|---|---|---|")
    for name, row in bd.items():
        lines.append(f"| {name} | {_fmt(row.get(f'psnr_yuv_{method}_mean'), '+.1f')} % | "
                     f"{_fmt(row.get(f'psnr_rgb_{method}_mean'), '+.1f')} % |")
    return "\n".join(lines) + (f"\n\nBD-rate vs {reference} per clip ({method} on log-rate, "
                               "over each pair's quality overlap); enc fps: wall clock here.\n")


def rd_plot(summary: dict, kind: str, title: str) -> bytes:
    """The RD plot as PNG bytes: PSNR and MS-SSIM (dB) vs bpp for images; YUV-PSNR vs bpp per
    clip for video. Lossless codecs are left out (a single point at infinite quality)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lossy = {n: c for n, c in summary.items() if not all(p["exact"] for p in c["points"])}
    if kind == "image":
        panels = [("psnr_rgb", "PSNR RGB (dB)", None), ("ms_ssim_rgb", "MS-SSIM RGB (dB)", None)]
    else:  # one panel per clip, titled with its name
        items = sorted({i for c in lossy.values() for i in c["items"]})
        panels = [("psnr_yuv", "YUV-PSNR (dB)", i) for i in items]
    cols = min(len(panels), 3)
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    for ax, (metric, label, item) in zip(axes.flat, panels):
        for name, c in lossy.items():
            pts = c["points"] if item is None else sorted(c["items"].get(item, []),
                                                          key=lambda r: r["bpp"])
            pts = sorted(pts, key=lambda p: p["bpp"])
            y = [_num(p[metric]) for p in pts]
            if metric == "ms_ssim_rgb":
                y = [_db(v) for v in y]
            ax.plot([p["bpp"] for p in pts], y, "o-", ms=3, label=name)
        ax.set_xlabel("bpp")
        ax.set_ylabel(label)
        if item is not None:
            ax.set_title(item, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return figure_png(fig, axes, len(panels), title, dpi=110)


def figure_png(fig, axes, used: int, title: str, dpi: int = 110) -> bytes:
    """Blank the unused panels, add the title and return the figure as PNG bytes (closed)."""
    import matplotlib.pyplot as plt

    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _versions() -> dict:
    import av
    import PIL
    import torch

    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "numpy": np.__version__, "torch": torch.__version__,
            "pillow": PIL.__version__, "pyav": av.__version__,
            "libavcodec": ".".join(map(str, av.library_versions["libavcodec"]))}


def write_outputs(out: Path, kind: str, records: list[dict], adapters: list, reference: str,
                  rate_range, method: str, meta: dict, more_refs: tuple = ()) -> dict:
    """Write every output file into ``out``; returns ``{"summary", "bd_rate"}``. BD-rates are
    against ``reference``, and in ``bd_rate_vs`` against each of ``more_refs`` too."""
    metrics = IMAGE_METRICS if kind == "image" else VIDEO_METRICS
    summary = summarize(records, metrics)
    out.mkdir(parents=True, exist_ok=True)
    for a in adapters:
        doc = _compressai_json(a.name, a.description, summary[a.name]["points"], kind)
        if kind == "video":  # clips differ in size: the per-clip curves are the real data
            doc["clips"] = {i: _per_item(recs, metrics)
                            for i, recs in summary[a.name]["items"].items()}
        write_atomic(out / f"{a.name}.json", json_text(doc).encode(), force=True)
    qualities = ("psnr_rgb", "ms_ssim_rgb") if kind == "image" else \
        ("psnr_yuv", "psnr_rgb", "psnr_y")
    vs = {r: bd_table(summary, r, qualities, rate_range, items=kind == "video")
          for r in (reference, *more_refs)
          if r in summary and not all(p["exact"] for p in summary[r]["points"])}
    bd = vs.get(reference, {})
    doc = {"reference": reference, "rate_range": rate_range, "methods": list(METHODS),
           "unit": "percent bits vs reference at equal quality (negative = fewer bits)",
           "ms_ssim": "compared in dB, -10 log10(1 - MS-SSIM)", "bd_rate": bd}
    if more_refs:
        doc["bd_rate_vs"] = vs
    write_atomic(out / "bd_rate.json", json_text(doc).encode(), force=True)
    name = "per_image.csv" if kind == "image" else "per_clip.csv"
    write_atomic(out / name, _csv(records, metrics), force=True)
    table = image_table(summary, bd, reference, method) if kind == "image" else \
        video_table(summary, bd, reference, method)
    if more_refs and vs:  # (no lossy reference: no matrix)
        table += vs_table(vs, kind, method)
    write_atomic(out / "table.md", table.encode(), force=True)
    if kind == "video":  # the panels name the clips
        ip = meta.get("intra_period", -1)
        title = (f"first {meta.get('frames')} frames, "
                 + ("one intra frame" if ip is None or ip < 0 else f"intra period {ip}"))
    else:
        title = " ".join(Path(i).name for i in meta.get("input", "").split())  # names, not paths
    write_atomic(out / "rd.png", rd_plot(summary, kind, title), force=True)
    write_atomic(out / "meta.json", json_text({**meta, "versions": _versions(), "codecs": {
        a.name: {"description": a.description, "settings": list(a.settings)} for a in adapters}
    }).encode(), force=True)
    return {"summary": summary, "bd_rate": bd}


# ----------------------------------------------------------------------------------- CLI
def apply_settings(adapters: list, specs: list[str]) -> None:
    """Apply ``--settings CODEC=V1,V2,...`` options to the selected adapters."""
    for spec in specs:
        name, sep, values = spec.partition("=")
        match = [a for a in adapters if a.name == name]
        if not sep or not match or not values:
            raise CodecError(f"--settings {spec!r}: expected CODEC=V1,V2,... for a selected codec")
        match[0].settings = tuple(parse_value(v) for v in values.split(","))


def parse_value(s: str):
    """A setting from the command line: int, else float, else the string."""
    for t in (int, float):
        try:
            return t(s)
        except ValueError:
            pass
    return s


def register(subparsers) -> None:
    """Add the ``eval`` subcommand."""
    p = subparsers.add_parser(
        "eval", help="rate-distortion evaluation against the classic codecs",
        description=__doc__.split("\n\n")[1])
    p.add_argument("input", nargs="*", help="folders of images or videos, files, or named "
                                            "sets under ../shared/datasets (kodak, video, ...)")
    p.add_argument("-c", "--codecs", help="comma-separated codec names, name@variant for a "
                   "preset/effort (default: all classic ones of the input's kind, plus "
                   "ncodec's own where available); `--codecs list` lists them")
    p.add_argument("-o", "--out", help="output folder (default: eval-<input name>)")
    p.add_argument("--reference", help="BD-rate reference codec (default: jpeg420 for images, "
                                       "x264 for video); a comma-separated list adds a table "
                                       "of BD-rates against each")
    p.add_argument("--bd-range", nargs=2, type=float, metavar=("LO", "HI"),
                   help="only points with bpp in [LO, HI] enter BD-rates "
                        "(default 0.1 2 for images, all for video)")
    p.add_argument("--bd-method", choices=METHODS, default="pchip",
                   help="BD-rate interpolation shown in the table (both are in bd_rate.json)")
    p.add_argument("--settings", action="append", default=[], metavar="CODEC=V1,V2,...",
                   help="override a codec's rate points (repeatable)")
    p.add_argument("--repeats", type=int, default=1, help="timing repeats (median)")
    p.add_argument("--limit", type=int, help="only the first N inputs")
    p.add_argument("--frames", type=int, default=96, help="video: frames per clip (default 96)")
    p.add_argument("--intra-period", type=int, default=-1,
                   help="video: frames between intra frames (-1: only the first, default)")
    p.add_argument("--no-msssim", action="store_true", help="skip MS-SSIM (faster)")
    p.add_argument("--cache", help="result cache folder (default: <out>/.cache)")
    p.add_argument("--no-cache", action="store_true", help="measure everything again")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    """Entry point of ``ncodec eval``."""
    from .eval_codecs import codec_names

    if args.codecs == "list":
        for kind in ("image", "video"):
            print(f"{kind}: {', '.join(codec_names(kind))}")
        return 0
    if not args.input:
        raise CodecError("no input given (a folder, file or named set such as kodak)")
    kind, files = resolve_inputs(args.input)
    if args.limit:
        files = files[:args.limit]
    names = args.codecs.split(",") if args.codecs else default_codecs(kind)
    adapters = [get_codec(n.strip(), intra_period=args.intra_period) for n in names if n.strip()]
    wrong = [a.name for a in adapters if a.kind != kind]
    if wrong:
        raise CodecError(f"{', '.join(wrong)}: not {kind} codec(s), and the input is {kind}")
    apply_settings(adapters, args.settings)
    refs = [r.strip() for r in args.reference.split(",") if r.strip()] if args.reference else []
    missing = [r for r in refs if r not in {a.name for a in adapters}]
    if missing:
        raise CodecError(f"reference {missing[0]!r} is not among the evaluated codecs")
    reference = refs[0] if refs else ("jpeg420" if kind == "image" else "x264")
    if reference not in [a.name for a in adapters]:
        reference = next((a.name for a in adapters if not a.lossless), adapters[0].name)
    rate_range = tuple(args.bd_range) if args.bd_range else ((0.1, 2.0) if kind == "image" else None)
    out = Path(args.out or f"eval-{Path(args.input[0]).name}")
    cache = ResultCache(None if args.no_cache else Path(args.cache) if args.cache else out / ".cache")
    t0 = time.perf_counter()
    records = evaluate(kind, files, adapters, args.repeats, cache, args.frames,
                       not args.no_msssim, progress=not args.quiet)
    meta = {"input": " ".join(args.input), "kind": kind, "items": [f.name for f in files],
            "command": "ncodec " + " ".join(sys.argv[1:]) if sys.argv else "",
            "repeats": args.repeats, "reference": reference, "rate_range": rate_range,
            "frames": args.frames if kind == "video" else None,
            "intra_period": args.intra_period if kind == "video" else None,
            "wall_s": time.perf_counter() - t0,
            "bpp": "file/bitstream bytes * 8 / pixels (x frames) via codec.metrics.bpp",
            "psnr": "8-bit, MSE over channels per image/frame, averaged over images/frames",
            "ms_ssim": "pytorch_msssim, data_range 255, RGB, averaged"}
    write_outputs(out, kind, records, adapters, reference, rate_range, args.bd_method, meta,
                  tuple(refs[1:]))
    sys.stdout.write((out / "table.md").read_text())
    print(f"results in {out}/", file=sys.stderr)
    return 0
