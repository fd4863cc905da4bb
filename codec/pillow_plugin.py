"""Pillow plugin: ``.ncz`` files open and save like any other image format.

``import codec`` registers it (or call :func:`register`)::

    import codec
    from PIL import Image

    im = Image.open("photo.ncz")    # reads the header only: im.size, im.mode, im.info
    im.load()                       # decodes the pixels (image or lossless stream)
    im.save("copy.ncz", quality=3.5)            # learned codec, quality -3..7 (bpp=, psnr=, effort=)
    im.save("exact.ncz", lossless=True)         # lossless codec (model="hclt-photo")

``Image.open`` parses only the signature and the ``HEAD`` chunk; the codecs (and torch) are
loaded when the pixels are first needed. ``im.verify()`` reads every chunk and checks its
CRC, the unit order and the tail without decoding. A corrupt file raises
:class:`bitstream.FormatError`; a file this build cannot decode, :class:`codec.CodecError`.
Modes: an image stream opens as ``RGB``; a lossless one as ``L`` or ``RGB``, as coded (a
lossless set of 28x28 images, :meth:`codec.LosslessCodec.encode_set`, as a multi-frame ``L``
image). A video
stream opens as a multi-frame ``RGB`` image (``n_frames``, ``seek``; 4:2:0 frames shown
through BT.601 limited-range conversion) when :mod:`codec.video` is present.
"""
from __future__ import annotations

import importlib
import io
import re
from functools import lru_cache
from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile

from bitstream.container import SIGNATURE, ColorFormat, ContainerReader, Header, StreamKind
from bitstream.errors import FormatError

from .convert import pil_to_array, to_array
from .errors import CodecError

__all__ = ["FORMAT", "EXTENSION", "MIME", "NczImageFile", "register", "decode_file"]

FORMAT = "NCZ"
EXTENSION = ".ncz"
MIME = "image/x-ncodec"
_MODES = {ColorFormat.GRAY: "L", ColorFormat.RGB: "RGB"}
_MODEL_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _accept(prefix: bytes) -> bool:
    return prefix[:len(SIGNATURE)] == SIGNATURE


@lru_cache(maxsize=8)
def _image_codec(model_id: str = "") -> Any:
    """The (cached) image codec for a model id: the shipped weights of that name when they
    exist, else the default model (whose digest check then names the mismatch)."""
    from .image import WEIGHTS_DIR, ImageCodec

    path = WEIGHTS_DIR / f"{model_id}.safetensors"
    if model_id and _MODEL_ID.fullmatch(model_id) and path.is_file():
        return ImageCodec(path)
    return ImageCodec()


@lru_cache(maxsize=4)
def _lossless_codec(model: str = "hclt-photo") -> Any:
    from .lossless import LosslessCodec

    return LosslessCodec(model)


@lru_cache(maxsize=2)
def _decode_set(data: bytes) -> np.ndarray:
    """All images of a lossless set (decoded once for all the frames Pillow asks for)."""
    return _lossless_codec().decode_set(data)


def decode_file(data: bytes, frame: int = 0) -> np.ndarray:
    """The ``H x W x C`` uint8 pixels of any ``.ncz`` file (image, lossless, or frame
    ``frame`` of a video or of a lossless image set), decoded by the codec its header
    names."""
    header = ContainerReader(data).header
    if header.kind == StreamKind.IMAGE:
        return _image_codec(header.model_id).decode(data)
    if header.kind == StreamKind.LOSSLESS:
        if "count" in header.params:  # a set of small images (LosslessCodec.encode_set)
            images = _decode_set(data)
            if not 0 <= frame < len(images):
                raise FormatError(f"the image set holds no image {frame}")
            return images[frame][:, :, None]
        return _lossless_codec().decode(data)
    try:
        video = importlib.import_module("codec.video")
    except ModuleNotFoundError:
        raise CodecError("this build of ncodec cannot decode video streams") from None
    dec = video.VideoDecoder(io.BytesIO(data))
    dec.seek(frame)  # the intra frame at or before it
    for i, f in enumerate(dec, start=dec.index):
        if i == frame:
            if isinstance(f, tuple):  # (Y, U, V) planes of 4:2:0 video: limited range, BT.601
                from .video_io import yuv420_to_rgb

                y, u, v = f
                return yuv420_to_rgb(y, u, v, full_range=False)[:dec.height, :dec.width]
            return to_array(f)
    raise FormatError(f"the video holds no frame {frame}")


class NczDecoder(ImageFile.PyDecoder):
    """Pillow decoder of one ``.ncz`` image or video frame (pulls the whole file)."""

    _pulls_fd = True

    def decode(self, buffer: Image.DecoderInput) -> tuple[int, int]:
        assert self.fd is not None
        frame = int(self.args[0]) if self.args else 0
        a = decode_file(self.fd.read(), frame)
        rawmode = "L" if a.shape[2] == 1 else "RGB"
        if rawmode != self.mode:
            raise FormatError(f"decoded {a.shape[2]} channels for a {self.mode} image")
        self.set_as_raw(np.ascontiguousarray(a).tobytes(), rawmode)
        return -1, 0


class NczImageFile(ImageFile.ImageFile):
    """An ``.ncz`` file opened by Pillow: header parsed on open, pixels decoded on load."""

    format = FORMAT
    format_description = "ncodec neural image"

    def _open(self) -> None:
        assert self.fp is not None
        header = ContainerReader(self.fp).header  # signature, version and HEAD chunk only
        if header.kind != StreamKind.VIDEO and header.color_format not in _MODES:
            raise CodecError(f"{ColorFormat(header.color_format).name} streams cannot be "
                             "opened as images")
        self.ncz_header: Header = header
        self._mode = _MODES.get(header.color_format, "RGB")
        if header.kind == StreamKind.VIDEO:  # odd-sized 4:2:0 video: the true size is a param
            self._size = (int(header.params.get("width", header.width)),
                          int(header.params.get("height", header.height)))
        else:
            self._size = (header.width, header.height)
        kind = StreamKind(header.kind).name.lower()
        self.info.update(kind=kind, model_id=header.model_id)
        if header.kind == StreamKind.IMAGE:
            self.info["quality"] = header.quality
        if header.kind == StreamKind.LOSSLESS:
            self.info["lossless"] = True
        count = header.params.get("count", 1) if header.kind == StreamKind.LOSSLESS else 1
        if header.kind == StreamKind.VIDEO:
            self.n_frames = header.frame_count
        else:  # a lossless image set is a multi-frame image too
            self.n_frames = count if isinstance(count, int) and count >= 1 else 1
        self.is_animated = self.n_frames > 1
        if header.kind == StreamKind.VIDEO and header.fps_num:
            self.info["duration"] = 1000.0 * header.fps_den / header.fps_num
        self._frame = 0
        if self.n_frames > 1:  # keep the file for the other frames (as Pillow's GIF does)
            self._close_exclusive_fp_after_loading = False
            self._ncz_fp = self.fp
        self._set_tile()

    def _set_tile(self) -> None:
        self.tile = [ImageFile._Tile(FORMAT, (0, 0) + self.size, 0, (self._frame,))]

    def seek(self, frame: int) -> None:
        if not self._seek_check(frame):
            return
        self._frame = frame
        self.fp = self._ncz_fp  # load() let go of it
        self._im = None  # decode the new frame on the next load
        self._set_tile()

    def tell(self) -> int:
        return self._frame

    def verify(self) -> None:
        """Check the whole container (every chunk's CRC, unit order, index, tail) without
        decoding; raises :class:`bitstream.FormatError` if anything is wrong. As for every
        Pillow format, reopen the file to use the image afterwards."""
        if self.fp is None:
            raise RuntimeError("verify must be called directly after open")
        self.fp.seek(0)
        for _ in ContainerReader(self.fp):
            pass
        super().verify()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """``im.save(..., format="NCZ")``: ``lossless=True`` (with ``model=``) for the lossless
    codec, else the learned codec with ``quality=`` / ``bpp=`` / ``psnr=`` / ``effort=``."""
    opts = dict(im.encoderinfo)
    a = pil_to_array(im)
    if opts.get("lossless"):
        data = _lossless_codec(opts.get("model", "hclt-photo")).encode(a)
    else:
        kw = {k: opts[k] for k in ("quality", "bpp", "psnr", "effort") if opts.get(k) is not None}
        data = _image_codec().encode(a, **kw)
    fp.write(data)


def register() -> None:
    """Register the ``NCZ`` format (open, save, ``.ncz``, MIME type) with Pillow; idempotent."""
    Image.register_open(FORMAT, NczImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
    Image.register_decoder(FORMAT, NczDecoder)
