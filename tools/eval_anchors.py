"""Compare an ``ncodec eval`` output folder with the measured anchors in ``../shared/anchors``.

``python -m tools.eval_anchors results/kodak`` (image anchors, ``kodak_anchors.json``) or
``python -m tools.eval_anchors results/video --video`` (``video_anchors.json``) writes
``anchor_check.json`` and ``anchor_check.md`` into the folder: for every codec and setting
both sides measured, the bpp difference (percent) and PSNR difference (dB), and whether all
lie within the tolerances (default 1 % bpp, 0.05 dB).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from codec.io import write_atomic

from .evaluate import json_text

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors"
#: eval codec name -> anchor key where they differ
IMAGE_KEYS = {"webp-lossless": "webp_lossless", "jxl-lossless": "jxl_lossless_e7",
              "jxl-lossless@9": "jxl_lossless_e9", "heic-lossless": "heic_lossless"}


def _rows(folder: Path, name: str) -> list[dict]:
    with open(folder / name, newline="") as f:
        return list(csv.DictReader(f))


def _mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def check_images(folder: Path, anchors: dict) -> list[dict]:
    """One row per (codec, setting) present in both: means over the anchor's images."""
    names = anchors["meta"]["images"]
    by = {}
    for r in _rows(folder, "per_image.csv"):
        by.setdefault((r["codec"], r["setting"]), {})[r["item"]] = r
    out = []
    for (codec, setting), items in sorted(by.items()):
        if not all(n in items for n in names):
            continue
        key = IMAGE_KEYS.get(codec, codec)
        bpp = _mean(float(items[n]["bpp"]) for n in names)
        if key in anchors["lossy"]:
            pts = [p for p in anchors["lossy"][key]["points"] if str(p["param"]) == setting]
            if not pts:
                continue
            a = pts[0]
            psnr = _mean(float(items[n]["psnr_rgb"]) for n in names)
            ms = [float(items[n]["ms_ssim_rgb"]) for n in names if items[n]["ms_ssim_rgb"]]
            out.append({"codec": codec, "setting": setting, "bpp": bpp, "anchor_bpp": a["bpp"],
                        "bpp_diff_pct": (bpp / a["bpp"] - 1) * 100, "psnr": psnr,
                        "anchor_psnr": a["psnr"], "psnr_diff_db": psnr - a["psnr"],
                        "msssim_diff": (_mean(ms) - a["msssim"]) if len(ms) == len(names)
                        else None})
        elif key in anchors["lossless"]:
            a = anchors["lossless"][key]
            out.append({"codec": codec, "setting": setting, "bpp": bpp, "anchor_bpp": a["bpp"],
                        "bpp_diff_pct": (bpp / a["bpp"] - 1) * 100, "psnr_diff_db": 0.0,
                        "exact": all(items[n]["exact"] == "True" for n in names)})
    return out


def check_video(folder: Path, anchors: dict) -> list[dict]:
    """One row per (clip, codec, CRF) present in both (clips matched by file name)."""
    clips = {Path(c["info"]["path"]).name: (k, c) for k, c in anchors["clips"].items()}
    out = []
    for r in _rows(folder, "per_clip.csv"):
        if r["item"] not in clips:
            continue
        clip, c = clips[r["item"]]
        pts = [p for p in c["codecs"].get(r["codec"], {}).get("points", [])
               if str(p["param"]) == r["setting"]]
        if not pts:
            continue
        a = pts[0]
        out.append({"clip": clip, "codec": r["codec"], "setting": r["setting"],
                    "bpp": float(r["bpp"]), "anchor_bpp": a["bpp"],
                    "bpp_diff_pct": (float(r["bpp"]) / a["bpp"] - 1) * 100,
                    "psnr_yuv": float(r["psnr_yuv"]), "anchor_psnr_yuv": a["psnr_yuv"],
                    "psnr_diff_db": float(r["psnr_yuv"]) - a["psnr_yuv"],
                    "psnr_rgb_diff_db": float(r["psnr_rgb"]) - a["psnr_rgb"]})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--video", action="store_true", help="compare with video_anchors.json")
    p.add_argument("--anchors", type=Path, default=ANCHORS)
    p.add_argument("--bpp-tol", type=float, default=1.0, help="percent")
    p.add_argument("--psnr-tol", type=float, default=0.05, help="dB")
    args = p.parse_args(argv)
    name = "video_anchors.json" if args.video else "kodak_anchors.json"
    anchors = json.loads((args.anchors / name).read_text())
    rows = (check_video if args.video else check_images)(args.folder, anchors)
    ok = all(abs(r["bpp_diff_pct"]) <= args.bpp_tol and abs(r["psnr_diff_db"]) <= args.psnr_tol
             for r in rows)
    codecs = sorted({r["codec"] for r in rows})
    lines = [f"Reproduction of `{name}` (tolerance {args.bpp_tol} % bpp, {args.psnr_tol} dB): "
             f"**{'all within' if ok else 'NOT all within'}** ({len(rows)} points)", "",
             "| codec | points | max abs bpp diff | max abs PSNR diff |", "|---|---|---|---|"]
    for c in codecs:
        rs = [r for r in rows if r["codec"] == c]
        lines.append(f"| {c} | {len(rs)} | {max(abs(r['bpp_diff_pct']) for r in rs):.3f} % | "
                     f"{max(abs(r['psnr_diff_db']) for r in rs):.4f} dB |")
    text = "\n".join(lines) + "\n"
    write_atomic(args.folder / "anchor_check.md", text.encode(), force=True)
    write_atomic(args.folder / "anchor_check.json",
                 json_text({"anchors": name, "within_tolerance": ok, "rows": rows}).encode(),
                 force=True)
    sys.stdout.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
