"""Media I/O: images in and out through Pillow, atomic file writes, ``-`` for stdin/stdout."""
from __future__ import annotations

import io
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from bitstream.container import LIMITS

from .convert import array_to_pil, pil_to_array
from .errors import CodecError

__all__ = ["read_bytes", "write_atomic", "read_image", "encode_image_file", "write_image"]

_plugins_loaded = False


def _load_plugins() -> None:
    """Let Pillow read HEIC/AVIF and JPEG XL inputs too (optional plugins)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass
    try:
        import pillow_jxl  # noqa: F401  (registers the JPEG XL plugin on import)
    except ImportError:
        pass


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a file, or of stdin for ``-``; a missing file is a :class:`CodecError`."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CodecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CodecError(f"{path}: is a directory") from None
    except PermissionError:
        raise CodecError(f"{path}: permission denied") from None


def write_atomic(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename, so a reader never sees a
    half-written file; ``-`` writes to stdout. An existing file is kept unless ``force``."""
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(path)
    if path.is_dir():
        raise CodecError(f"{path}: is a directory")
    if path.exists() and not force:
        raise CodecError(f"{path}: already exists (use --force to overwrite)")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except FileNotFoundError:
        raise CodecError(f"{parent}: no such directory") from None
    except PermissionError:
        raise CodecError(f"{parent}: permission denied") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open(src: str | os.PathLike | bytes | BinaryIO) -> Image.Image:
    _load_plugins()
    if isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(src)
    elif not hasattr(src, "read"):
        src = io.BytesIO(read_bytes(src))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(src)
    except Image.UnidentifiedImageError:
        raise CodecError("cannot read the image: not a format Pillow recognises") from None
    except (Image.DecompressionBombWarning,
            Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise CodecError(f"cannot read the image: {e}") from None
    w, h = im.size
    if w > LIMITS["max_dimension"] or h > LIMITS["max_dimension"] or w * h > LIMITS["max_pixels"]:
        raise CodecError(f"image of {w}x{h} pixels exceeds the limits "
                         f"({LIMITS['max_dimension']} per side, {LIMITS['max_pixels']} pixels)")
    return im


def read_image(src: str | os.PathLike | bytes | BinaryIO) -> np.ndarray:
    """Decode an image file to an ``H x W x C`` array, EXIF orientation applied.

    8-bit inputs give ``uint8`` with C = 1 (grey), 3 (RGB) or 4 (RGBA: RGB + alpha);
    palette images are expanded, CMYK/YCbCr converted to RGB; 16-bit greyscale gives
    ``uint16`` with C = 1 (:func:`codec.convert.pil_to_array`). Other modes (32-bit integer
    or float) raise :class:`CodecError`.
    """
    im = _open(src)
    try:
        return pil_to_array(ImageOps.exif_transpose(im))
    except (OSError, SyntaxError, ValueError) as e:
        raise CodecError(f"cannot decode the image: {e}") from None


def _fmt_for(path: str | os.PathLike) -> str:
    ext = Path(str(path)).suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
            ".ppm": "PPM", ".pgm": "PPM", ".webp": "WEBP"}.get(ext, "PNG")


def encode_image_file(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode an ``H x W x C`` array (C in 1, 3, 4; uint8, or uint16 grey) as an image file.
    WebP is written lossless; JPEG (lossy) is allowed because the user asked for it."""
    im = array_to_pil(array)
    buf = io.BytesIO()
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_image(path: str | os.PathLike, array: np.ndarray, force: bool = False) -> None:
    """Write an image atomically; the format follows the extension (PNG by default)."""
    write_atomic(path, encode_image_file(array, _fmt_for(path)), force=force)
