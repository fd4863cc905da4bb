"""The public API of ncodec: the codecs, media I/O, the Pillow plugin, errors.

``import codec`` is light (no torch): the codec classes load on first use::

    import codec
    data = codec.ImageCodec().encode(image, quality=3.5)   # numpy, PIL or torch in
    image = codec.ImageCodec().decode(data)                # numpy out (output="pil"/"torch")

* :class:`ImageCodec` (:mod:`codec.image`): the learned image codec.
* :class:`LosslessCodec` (:mod:`codec.lossless`): exact pixels.
* :class:`VideoEncoder` / :class:`VideoDecoder` (:mod:`codec.video`): the learned video codec.
* :mod:`codec.convert`: the numpy / Pillow / torch conversions every codec uses.
* :mod:`codec.io`: image files in and out, atomic writes, ``-`` for stdin/stdout.
* Importing ``codec`` registers the ``NCZ`` format with Pillow (:mod:`codec.pillow_plugin`):
  ``Image.open("photo.ncz")`` and ``im.save("photo.ncz", quality=3.5)`` work.

Every bad input raises :class:`CodecError` or :class:`FormatError` with a one-line message.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import pillow_plugin
from .errors import CodecError, FormatError

if TYPE_CHECKING:
    from .image import ImageCodec
    from .lossless import LosslessCodec
    from .video import VideoDecoder, VideoEncoder

#: attribute -> module that defines it (imported on first access: these load torch)
_LAZY = {
    "ImageCodec": "codec.image",
    "LosslessCodec": "codec.lossless",
    "VideoEncoder": "codec.video",
    "VideoDecoder": "codec.video",
}

__all__ = ["CodecError", "FormatError", "ImageCodec", "LosslessCodec", "VideoEncoder",
           "VideoDecoder"]

pillow_plugin.register()


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'codec' has no attribute {name!r}")
    try:
        module = importlib.import_module(_LAZY[name])
    except ModuleNotFoundError as e:
        if e.name != _LAZY[name]:
            raise
        raise AttributeError(f"codec.{name} is not available in this build "
                             f"({_LAZY[name]} is missing)") from None
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
