"""``make demo``: code an embedded photo with the shipped codecs and report what came out.

The photo is scikit-image's ``astronaut`` (512 x 512, shipped inside the scikit-image wheel,
public domain, NASA). Files go to ``demo_out/`` (or ``-o DIR``): the original, each ``.ncz``
and its decoded PNG, plus JPEG at about the same size for comparison.
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from codec.io import encode_image_file, write_atomic
from codec.metrics import bpp, psnr


def _row(name: str, size: int, img: np.ndarray, rec: np.ndarray, t_enc: float, t_dec: float) -> str:
    exact = np.array_equal(img, rec)
    quality = "exact" if exact else f"{psnr(img, rec):6.2f} dB"
    return (f"{name:<24} {size:>8} B  {bpp(size, img.shape[0] * img.shape[1]):6.3f} bpp  "
            f"{quality:>9}  enc {t_enc:6.2f} s  dec {t_dec:6.2f} s")


def _timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", default="demo_out", help="output folder")
    args = ap.parse_args(argv)
    from skimage import data

    from codec.image import ImageCodec
    from codec.lossless import LosslessCodec

    img = np.ascontiguousarray(data.astronaut())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "original.png", encode_image_file(img), force=True)
    print(f"astronaut {img.shape[1]}x{img.shape[0]} -> {out}/")

    codec = ImageCodec()
    lines = []
    for q in np.linspace(0, codec.n_quality - 1, 3):
        blob, t_enc = _timed(codec.encode, img, quality=float(q))
        rec, t_dec = _timed(codec.decode, blob)
        write_atomic(out / f"q{q:.1f}.ncz", blob, force=True)
        write_atomic(out / f"q{q:.1f}.png", encode_image_file(rec), force=True)
        lines.append(_row(f"ncodec image q={q:.1f}", len(blob), img, rec, t_enc, t_dec))
        jq = _jpeg_quality_for(img, len(blob))
        buf = io.BytesIO()
        t = time.perf_counter()
        Image.fromarray(img).save(buf, format="JPEG", quality=jq)
        t_enc = time.perf_counter() - t
        jrec, t_dec = _timed(lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")), buf.getvalue())
        lines.append(_row(f"  JPEG q={jq} (same size)", buf.tell(), img, jrec, t_enc, t_dec))

    lossless = LosslessCodec()
    blob, t_enc = _timed(lossless.encode, img)
    rec, t_dec = _timed(lossless.decode, blob)
    write_atomic(out / "lossless.ncz", blob, force=True)
    lines.append(_row("ncodec lossless", len(blob), img, rec, t_enc, t_dec))
    png = encode_image_file(img)
    lines.append(_row("  PNG", len(png), img, img, 0.0, 0.0))
    print("\n".join(lines))
    if not np.array_equal(rec, img):
        print("lossless round trip FAILED")
        return 1
    return 0


def _jpeg_quality_for(img: np.ndarray, target_bytes: int) -> int:
    """The JPEG quality whose file size is closest to ``target_bytes``."""
    best = (None, 1)
    for q in range(2, 100, 2):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        d = abs(buf.tell() - target_bytes)
        if best[0] is None or d < best[0]:
            best = (d, q)
    return best[1]


if __name__ == "__main__":
    raise SystemExit(main())
