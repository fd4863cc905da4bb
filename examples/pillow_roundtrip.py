"""Pillow: ``.ncz`` is an image format like PNG or JPEG once ``codec`` is imported.

    python examples/pillow_roundtrip.py [INPUT_IMAGE] [--quality Q] [--out DIR]

Saves the image as ``.ncz`` with the learned codec and losslessly, opens both back (the size
is known before any pixel is decoded), verifies the CRCs and writes the decoded PNG.
Without an input it uses a crop of scikit-image's bundled astronaut photo.
"""
import argparse
import os
import tempfile

import numpy as np
from PIL import Image

import codec  # noqa: F401  (registers the NCZ format with Pillow)
from codec.metrics import psnr


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", nargs="?", help="any image Pillow reads")
    p.add_argument("--quality", type=float, default=3.5, help="0 (smallest) .. 7 (best)")
    p.add_argument("--out", default=tempfile.mkdtemp(prefix="ncz-"), help="output folder")
    args = p.parse_args(argv)
    if args.input:
        src = Image.open(args.input).convert("RGB")
    else:
        from skimage.data import astronaut

        src = Image.fromarray(astronaut()[90:154, 180:244])

    lossy = os.path.join(args.out, "photo.ncz")
    exact = os.path.join(args.out, "photo-lossless.ncz")
    src.save(lossy, quality=args.quality)          # the learned codec
    src.save(exact, lossless=True)                 # the lossless codec

    with Image.open(lossy) as im:                  # only the header is read here
        print(f"{lossy}: {im.format} {im.size} {im.mode} quality={im.info['quality']}")
        im.verify()                                # every chunk's CRC; reopen afterwards
    with Image.open(lossy) as im:
        im.save(os.path.join(args.out, "decoded.png"))
        bpp = os.path.getsize(lossy) * 8 / (im.width * im.height)
        print(f"  {bpp:.3f} bpp, PSNR {psnr(np.asarray(src), np.asarray(im)):.2f} dB")
    with Image.open(exact) as im:
        assert np.array_equal(np.asarray(im), np.asarray(src)), "lossless must be exact"
        print(f"{exact}: {os.path.getsize(exact) * 8 / (im.width * im.height):.3f} bpp, exact")


if __name__ == "__main__":
    main()
