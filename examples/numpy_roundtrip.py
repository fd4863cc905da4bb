"""numpy (and torch) arrays in, arrays out, with the Python API.

    python examples/numpy_roundtrip.py [INPUT_IMAGE]

Encodes an ``H x W x 3`` uint8 array at two qualities, decodes it
back to numpy, Pillow and torch, and codes it losslessly. Without an input it uses a crop of
scikit-image's bundled astronaut photo.
"""
import sys

import numpy as np

import codec
from codec.io import read_image
from codec.metrics import bpp, psnr


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        image = read_image(argv[0])                # H x W x C uint8, EXIF orientation applied
    else:
        from skimage.data import astronaut

        image = astronaut()[90:154, 180:244]
    h, w = image.shape[:2]

    ic = codec.ImageCodec()                        # the shipped model (loads torch)
    for q in (1.0, 4.0):
        data = ic.encode(image, quality=q)         # bytes: a complete .ncz file
        out = ic.decode(data)                      # H x W x 3 uint8
        print(f"quality {q}: {len(data)} bytes, {bpp(len(data), h * w):.3f} bpp, "
              f"PSNR {psnr(image, out):.2f} dB")
    # rate control: ic.encode(image, bpp=0.8) or ic.encode(image, psnr=32) search the quality

    pil = ic.decode(data, output="pil")            # PIL.Image, mode RGB
    tensor = ic.decode(data, output="torch")       # 1 x 3 x H x W float32 in [0, 1]
    print(f"as PIL: {pil.mode} {pil.size}; as torch: {tuple(tensor.shape)} {tensor.dtype}")
    assert ic.encode(tensor, quality=2) == ic.encode(np.asarray(pil), quality=2)

    exact = codec.LosslessCodec().encode(image)
    assert np.array_equal(codec.LosslessCodec().decode(exact), image)
    print(f"lossless: {bpp(len(exact), h * w):.3f} bpp, exact")


if __name__ == "__main__":
    main()
